"""The per-image values of a results folder, for comparing models: a calibviz run
(``stats.npz`` or ``per_image.csv``) or a folder in the reference implementation's layout
(``macro_*_raw.csv``, ``mean_dice_raw.csv``: per-image values, no bins)."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from .aggregate import per_image_metrics, with_class_mean
from .metrics import METRICS
from .stats import BinStats

CLASS_MEAN = "mean"
#: Columns of the comparison table (``comparison.csv``); see :mod:`calibviz.comparison` for
#: each one's meaning and unit: ``pct_change_*`` are percent, ``rel_change_of_means`` is a
#: fraction; ``ci_note`` says why an interval is blank.
COLUMNS = (
    "metric", "class", "model", "baseline", "n", "mean_baseline", "mean_model", "mean_diff",
    "ci_low", "ci_high", "ttest_p", "wilcoxon_p", "ttest_p_holm", "wilcoxon_p_holm",
    "pct_change_mean", "pct_change_std", "pct_change_n", "rel_change_of_means", "ci_note",
)
MICRO_COLUMNS = (
    "metric", "class", "model", "baseline", "micro_baseline", "micro_model", "micro_diff",
    "ci_low", "ci_high", "ci_note",
)
UNPAIRED_COLUMNS = ("model", "case", "only_in")
#: Reference-layout file of each metric (first name found wins).
REFERENCE_FILES = {
    "ece": ("macro_ece_raw.csv", "ece_raw.csv"),
    "ace": ("macro_ace_raw.csv", "ace_raw.csv"),
    "mce": ("macro_mce_raw.csv", "mce_raw.csv"),
    "dice": ("mean_dice_raw.csv", "dice_raw.csv"),
}
CASE_EXTENSIONS = (".nii.gz", ".nii", ".npz", ".npy", ".mha", ".nrrd")
DISPLAY_NAMES = {"ece": "ECE", "ace": "ACE", "mce": "MCE", "brier": "Brier", "dice": "Dice",
                 "dce": "dCE"}


# --------------------------------------------------------------------------- inputs
@dataclass(frozen=True, eq=False)
class RunValues:
    """Per-image values of one model.

    name : label used in tables; kind : ``"calibviz"`` or ``"reference"``
    case_ids : n case ids (extensions stripped); class_names : C class names
    values : ``{metric: float64 [n, C + 1]}``, the last column the per-image class mean
    stats : per-image :class:`BinStats` in case order, or ``None`` (no bins kept)
    absent : the absent-class policy the values were computed with (calibviz runs)
    source : the folder it was read from, if any
    mean_from_file : the class-mean column was read (reference layout), not computed here
    conventions : what the values were computed with, as far as known: ``{"n_bins",
        "closure", "binning", "empty_weight", "absent"}`` (from the BinStats, or the
        ``run.json`` beside a ``per_image.csv``); ``None`` when nothing records them
    """

    name: str
    kind: str
    case_ids: tuple[str, ...]
    class_names: tuple[str, ...]
    values: dict[str, np.ndarray]
    stats: tuple[BinStats, ...] | None = None
    absent: str | None = None
    source: Path | None = None
    mean_from_file: bool = False
    conventions: dict | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "case_ids", tuple(str(c) for c in self.case_ids))
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        seen: set[str] = set()
        twice = sorted({c for c in self.case_ids if c in seen or seen.add(c)})
        if twice:
            raise ValueError(f"{self.where()}: case id(s) listed more than once (after "
                             f"removing file extensions): {', '.join(twice[:5])}")
        shape = (len(self.case_ids), len(self.class_names) + 1)
        for metric, values in self.values.items():
            if np.shape(values) != shape:
                raise ValueError(f"{self.where()}: {metric} values have shape "
                                 f"{np.shape(values)}, expected {shape} (cases, classes + mean)")
        if self.stats is not None and len(self.stats) != len(self.case_ids):
            raise ValueError(f"{self.where()}: {len(self.stats)} BinStats for "
                             f"{len(self.case_ids)} cases")
        if self.conventions is None and self.stats:
            first = self.stats[0]
            found = {"n_bins": first.n_bins, "closure": first.closure,
                     "binning": first.binning, "empty_weight": first.empty_weight}
            if self.absent is not None:
                found["absent"] = self.absent
            object.__setattr__(self, "conventions", found)

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(self.values)

    @property
    def per_image(self) -> pd.DataFrame:
        """Tidy table: one row per case, class (and ``mean``) and metric: columns
        ``case, class, metric, value``."""
        columns = [*self.class_names, CLASS_MEAN]
        frames = []
        for metric, values in self.values.items():
            wide = pd.DataFrame(values, index=pd.Index(self.case_ids, name="case"),
                                columns=pd.Index(columns, name="class"))
            long = wide.stack(future_stack=True).rename("value").reset_index()
            long.insert(2, "metric", metric)
            frames.append(long)
        return pd.concat(frames, ignore_index=True)

    def where(self) -> str:
        return str(self.source) if self.source is not None else f"run {self.name!r}"

    @classmethod
    def from_stats(cls, name: str, case_ids: Sequence[str], stats: Sequence[BinStats], *,
                   absent: str = "include", source: Path | None = None) -> RunValues:
        """Values of every registered metric from per-image BinStats."""
        stats = tuple(stats)
        if not stats:
            raise ValueError(f"{source or name}: the run holds no image")
        per_image = per_image_metrics(stats, absent=absent)
        names = stats[0].class_names
        values = {m: with_class_mean(v, names) for m, v in per_image.items()}
        return cls(name=name, kind="calibviz", case_ids=tuple(strip_case(c) for c in case_ids),
                   class_names=stats[0].class_names, values=values, stats=stats,
                   absent=absent, source=source)

    @classmethod
    def from_results(cls, results, name: str, *, absent: str | None = None) -> RunValues:
        """Values of a :class:`calibviz.Results` (what ``evaluate_folder`` returns), with its
        run's absent policy unless ``absent`` is given."""
        if not results.stats:
            raise ValueError(f"run {name!r}: the Results hold no evaluated case")
        policy = absent or results.options.get("absent", "include")
        return cls.from_stats(name, results.cases, results.stats, absent=policy)


def strip_case(name: str) -> str:
    """Case id of a file name: directory and known extensions removed.

    >>> strip_case("sub-01/case_007.nii.gz"), strip_case("case_007.npz"), strip_case("a.b")
    ('case_007', 'case_007', 'a.b')
    """
    name = re.split(r"[\\/]", str(name).strip())[-1]
    for extension in CASE_EXTENSIONS:
        if name.lower().endswith(extension):
            return name[: -len(extension)]
    return name


def load_run(path: str | os.PathLike, *, name: str | None = None,
             absent: str | None = None) -> RunValues:
    """Read a results folder: a calibviz run (``stats.npz``, else ``per_image.csv``) or the
    reference layout. ``absent`` recomputes a calibviz run's values with that policy (default:
    the policy the run used). Raises ``ValueError`` naming the folder otherwise."""
    from .store import check_finished, load_results

    folder = Path(path)
    name = name or folder.name or str(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder (expected a results folder from "
                         "`calibviz evaluate` or one in the reference layout)")
    check_finished(folder)
    if (folder / "stats.npz").is_file():
        results = load_results(folder / "stats.npz")
        policy = absent or results.options.get("absent", "include")
        return RunValues.from_stats(name, results.cases, results.stats, absent=policy,
                                    source=folder)
    if (folder / "per_image.csv").is_file():
        return _load_per_image_csv(folder, name, absent)
    found = {m: next((folder / f for f in files if (folder / f).is_file()), None)
             for m, files in REFERENCE_FILES.items()}
    if any(found.values()):
        return _load_reference(folder, name, {m: p for m, p in found.items() if p})
    raise ValueError(
        f"{folder}: not a results folder (expected stats.npz or per_image.csv from `calibviz "
        "evaluate`, or the reference layout's macro_ace_raw.csv / macro_ece_raw.csv / "
        "macro_mce_raw.csv / mean_dice_raw.csv)"
    )


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise ValueError(f"{path}: not a readable CSV ({error})") from None


def _numeric(table: pd.DataFrame, columns: list[str], path: Path) -> np.ndarray:
    """float64 ``[rows, len(columns)]`` of those columns; empty cells are NaN. ``ValueError``
    naming the file, column, line and value for the first cell that is not a number."""
    out = np.empty((len(table), len(columns)))
    for j, column in enumerate(columns):
        raw = table[column]
        numbers = pd.to_numeric(raw, errors="coerce")
        bad = numbers.isna() & raw.notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(f"{path}: column {column!r} holds {str(raw.iloc[row])[:40]!r} on "
                             f"line {row + 2}; expected a number")
        out[:, j] = numbers.to_numpy(np.float64)
    return out


def _load_per_image_csv(folder: Path, name: str, absent: str | None = None) -> RunValues:
    path = folder / "per_image.csv"
    table = _read_csv(path)
    missing = {"case", "class"} - set(table.columns)
    metrics = [m for m in METRICS if m in table.columns]
    if missing or not metrics:
        raise ValueError(f"{path}: expected columns case, class and metrics "
                         f"({', '.join(METRICS)}); found {', '.join(map(str, table.columns))}")
    table["case"] = table["case"].astype(str).map(strip_case)
    table["class"] = table["class"].astype(str)
    if table.duplicated(["case", "class"]).any():
        raise ValueError(f"{path}: a case and class appear more than once")
    cases = tuple(pd.unique(table["case"]))
    classes = tuple(pd.unique(table["class"]))
    table[metrics] = _numeric(table, metrics, path)
    values = {}
    for metric in metrics:
        wide = table.pivot(index="case", columns="class", values=metric)
        wide = wide.reindex(index=list(cases), columns=list(classes)).to_numpy(np.float64)
        values[metric] = with_class_mean(wide, classes)
    # per_image.csv does not record the conventions; run.json beside it (if any) does
    conventions = recorded_conventions(folder, classes)
    recorded = (conventions or {}).get("absent")
    if absent is not None and recorded is not None and absent != recorded:
        raise ValueError(f"{path}: the values were computed with absent policy {recorded!r} "
                         f"(run.json); recomputing them with {absent!r} needs the run's "
                         "stats.npz")
    return RunValues(name=name, kind="calibviz", case_ids=cases, class_names=classes,
                     values=values, stats=None, source=folder, absent=recorded,
                     conventions=conventions)


#: The run.json options that say how a run's values were computed.
CONVENTION_OPTIONS = ("n_bins", "closure", "binning", "empty_weight", "absent")


def recorded_conventions(folder: Path, classes: Sequence[str]) -> dict | None:
    """The conventions (:data:`CONVENTION_OPTIONS`) that ``folder/run.json`` records, or
    ``None`` without a readable run.json. ``ValueError`` when run.json names other classes
    than ``classes`` (the per_image.csv beside it)."""
    import json

    path = folder / "run.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    options = data.get("options") if isinstance(data, dict) else None
    if not isinstance(options, dict):
        return None
    listed = data.get("classes")
    if isinstance(listed, list) and listed and set(map(str, listed)) != set(classes):
        raise ValueError(f"{path} lists the classes {[str(c) for c in listed]} but "
                         f"{folder / 'per_image.csv'} holds {list(classes)}")
    found = {k: options[k] for k in CONVENTION_OPTIONS if options.get(k) is not None}
    return found or None


def _read_reference_file(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """(case ids, class names, float64 [n, C + 1]) of one ``*_raw.csv``; the last column
    is the file's own (first) ``mean`` column, as the paper tested it."""
    table = _read_csv(path)
    columns = [str(c) for c in table.columns]
    if not columns or columns[0] != "filename" or CLASS_MEAN not in columns:
        raise ValueError(f"{path}: expected the header filename,<classes…>,mean; found "
                         f"{','.join(columns)}")
    end = columns.index(CLASS_MEAN)
    classes = columns[1:end]
    if not classes:
        raise ValueError(f"{path}: no class column between filename and mean")
    cases = [strip_case(c) for c in table["filename"].astype(str)]
    duplicated = sorted({c for c in cases if cases.count(c) > 1})
    if duplicated:
        raise ValueError(f"{path}: case(s) listed more than once: {', '.join(duplicated[:5])}")
    values = _numeric(table, [*classes, CLASS_MEAN], path)
    return cases, classes, values


def _load_reference(folder: Path, name: str, files: dict[str, Path]) -> RunValues:
    read = {m: _read_reference_file(p) for m, p in files.items()}
    first_metric = next(iter(read))
    classes = read[first_metric][1]
    for metric, (_, other, _) in read.items():
        if other != classes:
            raise ValueError(f"{folder}: {files[metric].name} has classes {other} but "
                             f"{files[first_metric].name} has {classes}")
    cases: list[str] = []
    for case_ids, _, _ in read.values():
        cases.extend(c for c in case_ids if c not in set(cases))
    index = {c: i for i, c in enumerate(cases)}
    values = {}
    for metric, (case_ids, _, array) in read.items():
        full = np.full((len(cases), len(classes) + 1), np.nan)
        full[[index[c] for c in case_ids]] = array
        values[metric] = full
    ordered = {m: values[m] for m in METRICS if m in values}
    return RunValues(name=name, kind="reference", case_ids=tuple(cases),
                     class_names=tuple(classes), values=ordered, source=folder,
                     mean_from_file=True)


def _as_run(run, name: str | None, absent: str | None) -> RunValues:
    from .results import Results

    if isinstance(run, RunValues):
        if name is not None and name != run.name:
            return replace(run, name=name)
        return run
    if isinstance(run, Results):
        return RunValues.from_results(run, name or "run", absent=absent)
    if isinstance(run, str | os.PathLike):
        return load_run(run, name=name, absent=absent)
    raise TypeError(f"expected a results folder (path), a calibviz.Results or a RunValues; "
                    f"got {type(run).__name__}")


def _run_label(run, position: int) -> str:
    """The default name of one run of a comparison."""
    from .results import Results

    if isinstance(run, RunValues):
        return run.name
    if isinstance(run, Results):
        options = run.options
        return str(options.get("name") or Path(str(options.get("pred_dir") or "")).name
                   or f"run{position + 1}")
    if isinstance(run, str | os.PathLike):
        return Path(run).resolve().name or str(run)
    raise TypeError(f"expected a results folder (path), a calibviz.Results or a RunValues; "
                    f"got {type(run).__name__} as run {position + 1}")


def _default_names(runs: Sequence) -> list[str | None]:
    """Folder names; a clash is resolved with the parent folder, then a number."""
    names = [_run_label(run, i) for i, run in enumerate(runs)]
    if len(set(names)) < len(names):
        names = ["/".join(Path(run).resolve().parts[-2:]) if isinstance(run, str | os.PathLike)
                 else _run_label(run, i) for i, run in enumerate(runs)]
    if len(set(names)) < len(names):
        names = [f"{n}#{i}" for i, n in enumerate(names)]
    return names


