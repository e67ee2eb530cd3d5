"""The reference implementation's result files, as pandas tables (no file is written here).

The paper's evaluation (Barfoot et al. 2025) writes, per run folder, the files below with
MONAI's ``write_metrics_reports``; the authors' statistics scripts read them with
``pd.read_csv(path)["mean"]``.  :func:`reference_tables` returns
``{file name: (DataFrame, header)}``; the caller writes each with
``table.to_csv(folder / name, index=False, header=header)`` (or its own atomic writer).

Layout (``C`` classes named ``<class…>``, by default ``class0 … class{C-1}`` as MONAI does;
every file is comma-separated):

``macro_ece_raw.csv``, ``macro_ace_raw.csv``, ``macro_mce_raw.csv``, ``mean_dice_raw.csv``
    Header ``filename,<class…>,mean``; one row per image: the image's file name with its
    extension (``case_001.nii.gz``; directories dropped), the per-class values, and ``mean``
    = the NaN-skipping mean over the classes.  One ``mean`` column: the authors' own files
    have ``filename,class0,class1,class2,mean,mean`` (MONAI's writer appends ``"mean"`` to
    the label list it reuses for every metric); pandas reads theirs as ``mean``, ``mean.1``
    with ``mean`` the real one, so ``["mean"]`` gives the same numbers for both.  Values are
    written at full precision (MONAI rounds float64 values to 4 decimals, which loses ECE
    values of order 1e-4).
``macro_*_summary.csv``, ``mean_dice_summary.csv``
    Header ``class,mean,median,max,min,90percentile,std,notnans``; one row per class and a
    last row ``mean`` summarising the per-image class means; NaN-skipping statistics,
    population std (``ddof=0``), rounded to 4 decimals; ``notnans`` an integer.
``micro_ece_raw.csv``, ``micro_ace_raw.csv``, ``micro_mce_raw.csv``
    The raw layout with a single row: ``filename`` = ``pooled``, the per-class micro values
    (pooled over all images with the reference's rule, see
    :func:`calibviz.aggregate.reference_pooled_curve`), and their NaN-skipping ``mean``.
    (MONAI given no image names would write ``0`` in place of ``pooled``.)
``micro_*_summary.csv``
    The summary layout of that one row: mean = median = max = min = 90percentile = the value,
    std 0, notnans 1 (0 where the value is NaN).
``missing_classes_raw.csv`` / ``missing_classes_summary.csv``
    The raw layout with 1 where the class has no ground-truth voxel in the image, else 0
    (integers); ``mean`` = the fraction of classes missing from that image.  The summary's
    ``mean`` is the fraction of images missing each class.
``metrics.csv`` (no header)
    Seven lines ``name,value``: ``macro_ece``, ``macro_ace``, ``macro_mce`` (the mean over
    images of the per-image class means, the summaries' ``mean``/``mean`` cell, unrounded),
    ``micro_ece``, ``micro_ace``, ``micro_mce`` (the NaN-skipping mean over classes of the
    reference-pooled micro values), then ``missing_classes,"[False, True, …]"``: per class,
    whether **any** image misses it (Python's ``str`` of a list of bools).  That value holds
    commas, so it is quoted by the CSV rules and the file reads as two columns with
    ``pd.read_csv(path, header=None)``; MONAI writes it unquoted, which pandas cannot parse
    when there are two or more classes.

calibviz's own ``summary.csv`` keeps the count-weighted micro values; only these files use
the reference's pooling, because that is what they claim to hold.  The per-image values given
should follow the reference's absent-class rule (``absent="include"``) to reproduce its
numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import PurePath

import numpy as np
import pandas as pd

from .aggregate import _quiet_nanmean, summarize

__all__ = ["METRIC_FILES", "REFERENCE_SUMMARY_COLUMNS", "reference_tables"]

#: Per-image metric name → file stem (``<stem>_raw.csv``, ``<stem>_summary.csv``).
METRIC_FILES = {
    "ece": "macro_ece",
    "ace": "macro_ace",
    "mce": "macro_mce",
    "dice": "mean_dice",
}
REQUIRED = ("ece", "ace", "mce")
MICRO_ROW = "pooled"
CLASS_MEAN = "mean"
#: calibviz statistic → the reference's summary column, in the reference's order.
REFERENCE_SUMMARY_COLUMNS = {
    "mean": "mean",
    "median": "median",
    "max": "max",
    "min": "min",
    "p90": "90percentile",
    "std": "std",
    "notnans": "notnans",
}
DECIMALS = 4


def _file_name(path) -> str:
    return PurePath(str(path)).name


def _row_mean(values: np.ndarray) -> np.ndarray:
    with _quiet_nanmean():
        return np.nanmean(np.asarray(values, dtype=np.float64), axis=1)


def _raw(names: Sequence[str], class_names: Sequence[str], values: np.ndarray) -> pd.DataFrame:
    table = pd.DataFrame(values, columns=list(class_names))
    table.insert(0, "filename", list(names))
    table[CLASS_MEAN] = _row_mean(values)
    return table


def _summary(class_names: Sequence[str], values: np.ndarray) -> pd.DataFrame:
    with_mean = np.column_stack([np.asarray(values, dtype=np.float64), _row_mean(values)])
    stats = summarize(with_mean)
    table = pd.DataFrame({"class": [*class_names, CLASS_MEAN]})
    for ours, theirs in REFERENCE_SUMMARY_COLUMNS.items():
        table[theirs] = np.round(stats[ours], DECIMALS)
    table["notnans"] = stats["notnans"].astype(np.int64)
    return table


def reference_tables(
    case_files: Sequence,
    class_names: Sequence[str] | None,
    per_image: Mapping[str, np.ndarray],
    micro_reference: Mapping[str, np.ndarray],
    absent_flags: np.ndarray,
) -> dict[str, tuple[pd.DataFrame, bool]]:
    """The reference's files as ``{file name: (table, write the header?)}`` (layout above).

    Parameters
    ----------
    case_files : one file name or path per image (only the name with its extension is kept).
    class_names : ``C`` column names, or None for ``class0 … class{C-1}`` (MONAI's default,
        which the authors' files carry).
    per_image : ``{"ece", "ace", "mce"[, "dice"]: float [n_images, C]}`` per-image values
        (e.g. :func:`calibviz.per_image_metrics`); other keys (``brier``) are ignored, and
        without ``dice`` no Dice files are made.
    micro_reference : ``{"ece", "ace", "mce": float [C]}`` micro values with the reference's
        pooling, ``micro_metrics(stats, pooling="reference")``.
    absent_flags : bool ``[n_images, C]``: the class has no ground-truth voxel in the image.
    """
    names = [_file_name(f) for f in case_files]
    absent_flags = np.asarray(absent_flags, dtype=bool)
    missing = [m for m in REQUIRED if m not in per_image or m not in micro_reference]
    if missing:
        raise ValueError(f"per_image and micro_reference need {', '.join(missing)}: missing")
    n_images, n_classes = np.shape(per_image["ece"])
    if class_names is None:
        class_names = [f"class{c}" for c in range(n_classes)]
    class_names = [str(c) for c in class_names]
    if len(class_names) != n_classes:
        raise ValueError(f"{len(class_names)} class names given for {n_classes} classes")
    expected = (len(names), n_classes)
    arrays = {m: np.asarray(v, dtype=np.float64) for m, v in per_image.items()
              if m in METRIC_FILES}
    for label, array in [*arrays.items(), ("absent_flags", absent_flags)]:
        if array.shape != expected:
            raise ValueError(
                f"{label} has shape {array.shape}; expected (n_images, C) = {expected}"
            )
    micro = {m: np.asarray(micro_reference[m], dtype=np.float64).reshape(-1) for m in REQUIRED}
    for metric, values in micro.items():
        if values.shape != (n_classes,):
            raise ValueError(f"micro_reference[{metric!r}] has shape {values.shape}; "
                             f"expected ({n_classes},)")

    tables: dict[str, tuple[pd.DataFrame, bool]] = {}
    for metric, stem in METRIC_FILES.items():
        if metric not in arrays:
            continue
        tables[f"{stem}_raw.csv"] = (_raw(names, class_names, arrays[metric]), True)
        tables[f"{stem}_summary.csv"] = (_summary(class_names, arrays[metric]), True)
    for metric in REQUIRED:
        row = micro[metric][None, :]
        tables[f"micro_{metric}_raw.csv"] = (_raw([MICRO_ROW], class_names, row), True)
        tables[f"micro_{metric}_summary.csv"] = (_summary(class_names, row), True)
    flags = absent_flags.astype(np.int64)
    raw_missing = _raw(names, class_names, flags)
    tables["missing_classes_raw.csv"] = (raw_missing, True)
    tables["missing_classes_summary.csv"] = (_summary(class_names, flags), True)

    lines: list[tuple[str, object]] = []
    for metric in REQUIRED:
        with _quiet_nanmean():
            value = np.nanmean(_row_mean(arrays[metric])) if n_images else np.nan
        lines.append((f"macro_{metric}", float(value)))
    for metric in REQUIRED:
        with _quiet_nanmean():
            lines.append((f"micro_{metric}", float(np.nanmean(micro[metric]))))
    lines.append(("missing_classes", str([bool(v) for v in absent_flags.any(axis=0)])))
    tables["metrics.csv"] = (pd.DataFrame(lines, columns=["name", "value"]), False)
    return tables
