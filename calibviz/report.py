"""Tables (pandas) and report files: per-image and summary CSVs, the reference layout,
problems, and atomic writing so a reader never sees half a file."""

from __future__ import annotations

import json
import os
import platform
import warnings
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from .aggregate import (
    absent_policy,
    class_mean,
    macro_summary,
    micro_metrics,
    per_image_metrics,
    with_class_mean,
)
from .bootstrap import (
    SUM_METRICS,
    SumArrays,
    macro_mean_percentiles,
    micro_samples,
    percentile_interval,
)
from .intervals import discard_note, honest_interval, images_per_class
from .metrics import METRICS
from .nnunet_summary import summary_json
from .reference_layout import reference_tables as reference_layout_tables
from .results import Results
from .store import STATS_FILE, save_results, write_atomic

CLASS_MEAN = "mean"  # the name of the per-image class-mean row in summaries
STATISTICS = ("mean", "median", "max", "min", "p90", "std", "notnans")


# --------------------------------------------------------------------------- writing
def write_csv(path: str | os.PathLike, table: pd.DataFrame, *, header: bool = True) -> Path:
    return write_atomic(path, table.to_csv(index=False, header=header, float_format="%.10g"))


def write_json(path: str | os.PathLike, data) -> Path:
    return write_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


# --------------------------------------------------------------------------- tables
def per_image_table(results: Results, *, absent: str | None = None) -> pd.DataFrame:
    """One row per image and class: case, class, n_voxels, n_truth, every metric, absent.
    ``absent=None``: the run's own policy (``results.options["absent"]``), else include."""
    absent = absent_policy(results, absent)
    if not results.stats:
        return pd.DataFrame(columns=["case", "class", "n_voxels", "n_truth", *METRICS, "absent"])
    metrics = per_image_metrics(results.stats, absent=absent)
    rows = []
    for i, (case, stats) in enumerate(zip(results.cases, results.stats)):
        for c, name in enumerate(stats.class_names):
            row = {
                "case": case,
                "class": name,
                "n_voxels": int(stats.n_voxels[c]),
                "n_truth": int(stats.n_truth[c]),
            }
            row.update({metric: float(values[i, c]) for metric, values in metrics.items()})
            row["absent"] = bool(stats.absent[c])
            row["n_clipped"] = int(stats.n_clipped[c])
            rows.append(row)
    return pd.DataFrame(rows)


def summary_table(results: Results, *, absent: str | None = None, n_bootstrap: int = 0,
                  seed: int = 0) -> pd.DataFrame:
    """Per metric and class (plus the per-image class mean): macro statistics, the micro
    (pooled-sums) value and, with ``n_bootstrap`` resamples of the images, 95 % bootstrap
    intervals of the macro mean (``ci_low``, ``ci_high``) and of the micro value
    (``micro_ci_low``, ``micro_ci_high``); NaN when ``n_bootstrap`` is 0, when fewer than two
    images carry the value, or when the interval did not contain its value (see
    :func:`summary_notes`; rules in :func:`calibviz.intervals.honest_interval`). Columns:
    metric, class, mean, median, max, min, p90, std, notnans, micro, ci_low, ci_high,
    micro_ci_low, micro_ci_high. ``absent=None``: the run's own policy, else include."""
    return summary_notes(results, absent=absent, n_bootstrap=n_bootstrap, seed=seed)[0]


def summary_notes(results: Results, *, absent: str | None = None, n_bootstrap: int = 0,
                  seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    """:func:`summary_table` and one line per interval it discarded because the interval
    did not contain its value (metric, class, value, the interval, the reason)."""
    absent = absent_policy(results, absent)
    per_image = per_image_metrics(results.stats, absent=absent)
    macro = macro_summary(results.stats, absent=absent)
    micro = micro_metrics(results.stats, absent=absent)
    micro_ci, micro_n = _micro_intervals(results, absent, n_bootstrap, seed)
    names = [*results.class_names, CLASS_MEAN]
    rows, notes = [], []
    for metric, stats in macro.items():
        columns = with_class_mean(per_image[metric], results.class_names)
        raw = macro_mean_percentiles(columns, n_bootstrap, seed)
        low, high, dropped = honest_interval(stats["mean"], *raw,
                                             np.isfinite(columns).sum(axis=0))
        micro_values = np.append(micro[metric], class_mean(micro[metric],
                                                           results.class_names))
        micro_raw = micro_ci.get(metric, (np.full(len(names), np.nan),) * 2)
        micro_low, micro_high, micro_dropped = honest_interval(micro_values, *micro_raw,
                                                               micro_n)
        for c, name in enumerate(names):
            row = {"metric": metric, "class": name}
            row.update({s: float(stats[s][c]) for s in STATISTICS})
            row.update(micro=float(micro_values[c]), ci_low=float(low[c]),
                       ci_high=float(high[c]), micro_ci_low=float(micro_low[c]),
                       micro_ci_high=float(micro_high[c]))
            rows.append(row)
            for kind, gone, value, interval in (
                    ("mean", dropped[c], stats["mean"][c], raw),
                    ("micro", micro_dropped[c], micro_values[c], micro_raw)):
                if gone:
                    where = "the class mean" if name == CLASS_MEAN else name
                    notes.append(discard_note(f"summary.csv {kind} {metric} of {where}",
                                              value, interval[0][c], interval[1][c]))
    table = pd.DataFrame(rows)
    table["notnans"] = table["notnans"].astype(int)
    return table, notes


def _nanmean(values: np.ndarray, axis=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=axis)


def _micro_intervals(results: Results, absent: str, n_bootstrap: int, seed: int
                     ) -> tuple[dict, np.ndarray | int]:
    """``({metric: (low [C + 1], high [C + 1])}, images [C + 1])``: per class and for the
    class mean of the micro values, images resampled and their sums added (no voxel read
    again), as percentile intervals; and the images each value rests on."""
    if not n_bootstrap:
        return {}, 0
    stack = SumArrays.stack(list(results.stats), absent=absent)
    samples = micro_samples([stack], SUM_METRICS, n_bootstrap, seed)[0]
    carried = images_per_class(stack)
    out = {}
    for metric, values in samples.items():
        with_mean = with_class_mean(values, results.class_names)
        out[metric] = percentile_interval(with_mean)
    any_class = int((stack.count.sum(axis=-1) > 0).any(axis=1).sum())
    return out, np.append(carried, any_class)


def problems_table(problems: Iterable) -> pd.DataFrame:
    rows = [
        {"case": p.case, "file": p.file, "severity": p.severity, "message": p.message}
        for p in problems
    ]
    return pd.DataFrame(rows, columns=["case", "file", "severity", "message"])


# --------------------------------------------------------------- reference layout
def reference_tables(results: Results, *, absent: str | None = None) -> dict:
    """The reference implementation's files (``macro_*_raw.csv`` … ``metrics.csv``, see
    :mod:`calibviz.reference_layout`) as ``{file name: (table, header)}``: what the authors'
    statistics scripts read. Images are named by their prediction file when the run knows
    it, classes by their names (a ``top-label`` row is left out). ``absent=None``: the
    run's own policy, else include."""
    absent = absent_policy(results, absent)
    results = results.classes_only()
    files = results.options.get("prediction_files") or {}
    return reference_layout_tables(
        [files.get(case, case) for case in results.cases], results.class_names,
        per_image_metrics(results.stats, absent=absent),
        micro_metrics(results.stats, absent=absent, pooling="reference"),
        np.stack([s.absent for s in results.stats]),
    )


# --------------------------------------------------------------------------- a run's files
def write_reports(results: Results, out_dir: Path, *, csv_style: str = "tidy",
                  n_bootstrap: int = 0, seed: int = 0,
                  problems: list | None = None) -> list[Path]:
    """``stats.npz``, ``per_image.csv``, ``summary.csv`` (and the reference layout with
    ``csv_style="reference"``) of a run; nothing when no case was evaluated. A summary
    interval discarded for not containing its value is appended to ``problems`` as a
    warning of summary.csv."""
    if not results.stats:
        return []
    absent = results.options.get("absent", "include")
    summary, notes = summary_notes(results, absent=absent, n_bootstrap=n_bootstrap, seed=seed)
    files = [
        save_results(out_dir / STATS_FILE, results),
        write_csv(out_dir / "per_image.csv", per_image_table(results, absent=absent)),
        write_csv(out_dir / "summary.csv", summary),
    ]
    if problems is not None:
        from .io import Problem

        problems.extend(Problem("", str(files[-1]), note, "warning") for note in notes)
        problems.extend(Problem("", str(files[1]), note, "warning")
                        for note in formula_notes(results))
    files.append(write_json(out_dir / "summary.json", summary_json(results)))
    if csv_style == "reference":
        for name, (table, header) in reference_tables(results, absent=absent).items():
            files.append(write_csv(out_dir / name, table, header=header))
    return files


#: What a spreadsheet takes a cell beginning with for a formula (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def formula_notes(results: Results) -> list[str]:
    """One line per case id or class name that a spreadsheet would read as a formula when
    it opens the CSVs (written as they are: the ids must match the files they name)."""
    names = [("case id", c) for c in results.cases]
    names += [("class name", c) for c in results.class_names]
    return [f"{kind} {name!r} begins with {name[0]!r}: Excel and LibreOffice read such a CSV "
            "cell as a formula; import the CSVs as text" for kind, name in names
            if name.startswith(FORMULA_STARTS)]


def write_problems(problems: Iterable, out_dir: Path) -> Path:
    return write_csv(out_dir / "problems.csv", problems_table(problems))


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in ("calibviz", "numpy", "numba", "nibabel", "pandas", "matplotlib", "scipy"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    versions["python"] = platform.python_version()
    return versions


def write_run_json(report, started: datetime) -> Path:
    """``run.json``: options, versions, times, counts, problems and the figures drawn of a
    :class:`calibviz.run.RunReport`."""
    results = report.results
    data = {
        "options": results.options,
        "versions": _versions(),
        "started": started.isoformat(),
        "finished": datetime.now(UTC).isoformat(),
        "cases_ok": len(results),
        "cases_skipped": len(results.skipped),
        "cases_resumed": report.n_resumed,
        "absent_pairs": results.n_absent,
        "images_dropped": results.n_dropped,
        "classes": list(results.class_names),
        "timings_seconds": report.timings,
        "errors": [p.message for p in results.errors],
        "warnings": [p.message for p in results.warnings],
        "figures": _figure_summary(report.figures),
    }
    return write_json(report.out_dir / "run.json", data)


def _figure_summary(figures: dict | None):
    if figures is None:
        return None
    return {key: (str(value) if isinstance(value, Path) else value)
            for key, value in figures.items()
            if isinstance(value, int | str | float | Path | type(None))}
