"""Paired comparison of models on the same images (spec §10): is a model better calibrated
than the baseline, by how much, and how sure.

Inputs are results folders: a calibviz run (``stats.npz`` and/or ``per_image.csv``) or a
folder in the reference layout (``macro_{ace,ece,mce}_raw.csv``, ``mean_dice_raw.csv``:
``filename, <classes…>, mean`` one row per image). Images are paired by case id (file
extensions stripped), classes by name.

Per metric and class (and ``class = "mean"``, the per-image class mean that the paper
tests), each row holds: ``n`` paired images (NaN pairs dropped), the means, the mean
difference (model − baseline) with a paired image-bootstrap percentile interval, the paired
t-test (the paper's) and the Wilcoxon signed-rank test, both Holm-adjusted over all rows of
one model-vs-baseline comparison, the paper's per-image percentage change (mean and
population std over images with a non-zero baseline) and the relative change of the means.
When both runs kept their bins, :attr:`Comparison.micro` adds the micro (pooled-sums)
metrics per class with an image-bootstrap interval of their difference.

>>> import numpy as np
>>> holm([0.01, 0.04, np.nan, 0.03]).round(2).tolist()
[0.03, 0.06, nan, 0.06]
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from .aggregate import class_mean, per_image_metrics
from .bootstrap import (
    SUM_METRICS,
    SumArrays,
    bootstrap_samples,
    check_settings,
    metrics_from_sums,
    percentile_interval,
)
from .metrics import METRICS
from .stats import BinStats

CLASS_MEAN = "mean"
COLUMNS = (
    "metric", "class", "model", "baseline", "n", "mean_baseline", "mean_model", "mean_diff",
    "ci_low", "ci_high", "ttest_p", "wilcoxon_p", "ttest_p_holm", "wilcoxon_p_holm",
    "pct_change_mean", "pct_change_std", "pct_change_n", "rel_change_of_means",
)
MICRO_COLUMNS = (
    "metric", "class", "model", "baseline", "micro_baseline", "micro_model", "micro_diff",
    "ci_low", "ci_high",
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
DISPLAY_NAMES = {"ece": "ECE", "ace": "ACE", "mce": "MCE", "brier": "Brier", "dice": "Dice"}


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
        values = {m: np.column_stack([v, class_mean(v)]) for m, v in per_image.items()}
        return cls(name=name, kind="calibviz", case_ids=tuple(strip_case(c) for c in case_ids),
                   class_names=stats[0].class_names, values=values, stats=stats,
                   absent=absent, source=source)


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
    from .results import load_results

    folder = Path(path)
    name = name or folder.name or str(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder (expected a results folder from "
                         "`calibviz evaluate` or one in the reference layout)")
    if (folder / "stats.npz").is_file():
        results = load_results(folder / "stats.npz")
        policy = absent or results.options.get("absent", "include")
        return RunValues.from_stats(name, results.cases, results.stats, absent=policy,
                                    source=folder)
    if (folder / "per_image.csv").is_file():
        return _load_per_image_csv(folder, name)
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


def _load_per_image_csv(folder: Path, name: str) -> RunValues:
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
    values = {}
    for metric in metrics:
        wide = table.pivot(index="case", columns="class", values=metric)
        wide = wide.reindex(index=list(cases), columns=list(classes)).to_numpy(np.float64)
        values[metric] = np.column_stack([wide, class_mean(wide)])
    # per_image.csv does not record the absent policy: absent stays None
    return RunValues(name=name, kind="calibviz", case_ids=cases, class_names=classes,
                     values=values, stats=None, source=folder)


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
    try:
        values = table[[*classes, CLASS_MEAN]].apply(pd.to_numeric).to_numpy(np.float64)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{path}: non-numeric value ({error})") from None
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
    if isinstance(run, RunValues):
        if name is not None and name != run.name:
            return replace(run, name=name)
        return run
    if isinstance(run, str | os.PathLike):
        return load_run(run, name=name, absent=absent)
    raise TypeError(f"expected a results folder path or RunValues, got {type(run).__name__}")


def _default_names(runs: Sequence) -> list[str | None]:
    """Folder names; a clash is resolved with the parent folder, then a number."""
    names = []
    for run in runs:
        if isinstance(run, RunValues):
            names.append(run.name)
        else:
            names.append(Path(run).resolve().name or str(run))
    if len(set(names)) < len(names):
        names = [run.name if isinstance(run, RunValues) else
                 "/".join(Path(run).resolve().parts[-2:]) for run in runs]
    if len(set(names)) < len(names):
        names = [f"{n}#{i}" for i, n in enumerate(names)]
    return names


# --------------------------------------------------------------------------- statistics
def holm(p_values) -> np.ndarray:
    """Holm step-down adjusted p-values of one family; NaN entries are not part of the
    family and stay NaN. ``p_(i)`` sorted ascending over ``m`` finite values becomes
    ``max_{j<=i} min(1, (m − j + 1) p_(j))``."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = finite.size
    if m == 0:
        return out
    order = finite[np.argsort(p[finite], kind="stable")]
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adjusted
    return out


def paired_tests(model: np.ndarray, baseline: np.ndarray) -> tuple[float, float]:
    """``(ttest_rel p, wilcoxon p)`` of paired finite values; NaN when fewer than 2 pairs,
    Wilcoxon p = 1 when every difference is 0 (no warning escapes)."""
    model = np.asarray(model, dtype=np.float64)
    baseline = np.asarray(baseline, dtype=np.float64)
    if model.size < 2:
        return math.nan, math.nan
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        t_p = float(scipy_stats.ttest_rel(model, baseline).pvalue)
        if np.all(model - baseline == 0):
            w_p = 1.0
        else:
            try:
                w_p = float(scipy_stats.wilcoxon(model, baseline).pvalue)
            except ValueError:  # older SciPy: too few non-zero differences
                w_p = math.nan
    return t_p, w_p


def percent_change(model: np.ndarray, baseline: np.ndarray) -> tuple[float, float, int]:
    """The paper's relative change: per image ``(model − baseline)/baseline · 100`` over
    images with a non-zero baseline; ``(mean, population std, count)``.

    >>> percent_change(np.array([1.5, 1.0, 3.0]), np.array([1.0, 2.0, 0.0]))
    (0.0, 50.0, 2)
    """
    keep = baseline != 0
    n = int(keep.sum())
    if n == 0:
        return math.nan, math.nan, 0
    change = (model[keep] - baseline[keep]) / baseline[keep] * 100
    return float(np.mean(change)), float(np.std(change)), n


# --------------------------------------------------------------------------- compare
@dataclass(frozen=True, eq=False)
class Comparison:
    """Result of :func:`compare_runs`.

    table : one row per (model, metric, class) with :data:`COLUMNS`
    micro : one row per (model, metric, class) with :data:`MICRO_COLUMNS` (empty when a
        side has no bins)
    unpaired : cases found in only one run of a comparison: ``model, case, only_in``
    runs : the baseline first, then every other model
    """

    table: pd.DataFrame
    micro: pd.DataFrame
    unpaired: pd.DataFrame
    runs: tuple[RunValues, ...]
    settings: dict = field(default_factory=dict)

    @property
    def baseline(self) -> RunValues:
        return self.runs[0]

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.runs[1:])

    def differences(self, model: str | None = None, metric: str = "ace") -> pd.DataFrame:
        """Per-image paired differences (model − baseline) of one metric: index = paired
        case ids, columns = classes and ``mean`` (NaN where a side is NaN)."""
        other = self._run(model)
        pair = _pair(self.baseline, other)
        if metric not in pair.metrics:
            raise ValueError(f"metric {metric!r} is not available on both sides; "
                             f"available: {', '.join(pair.metrics)}")
        base, mod = pair.values(metric)
        return pd.DataFrame(mod - base, index=pd.Index(pair.cases, name="case"),
                            columns=[*pair.classes, CLASS_MEAN])

    def _run(self, model: str | None) -> RunValues:
        if model is None:
            return self.runs[1]
        for run in self.runs[1:]:
            if run.name == model:
                return run
        raise ValueError(f"no model {model!r}; models: {', '.join(self.models)}")


@dataclass(frozen=True)
class _Pair:
    """Two runs aligned on their common cases and the baseline's class order."""

    base: RunValues
    model: RunValues
    cases: tuple[str, ...]
    base_index: np.ndarray
    model_index: np.ndarray
    class_order: np.ndarray  # model's column of each baseline class (+ mean last)
    metrics: tuple[str, ...]

    @property
    def classes(self) -> tuple[str, ...]:
        return self.base.class_names

    def values(self, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """float64 ``[n_paired, C + 1]`` baseline and model values."""
        base = self.base.values[metric][self.base_index]
        model = self.model.values[metric][self.model_index][:, self.class_order]
        reordered = not np.array_equal(self.class_order, np.arange(self.class_order.size))
        if reordered and not self.model.mean_from_file:
            # the same summation order as the baseline's class mean: equal values stay equal
            model[:, -1] = class_mean(model[:, :-1])
        return base, model

    @property
    def has_bins(self) -> bool:
        return self.base.stats is not None and self.model.stats is not None


def _pair(base: RunValues, model: RunValues) -> _Pair:
    if set(base.class_names) != set(model.class_names):
        raise ValueError(
            f"different classes: {base.where()} has {list(base.class_names)}, "
            f"{model.where()} has {list(model.class_names)}"
        )
    if base.stats is not None and model.stats is not None:
        _check_conventions(base, model)
    model_positions = {c: i for i, c in enumerate(model.case_ids)}
    common = [c for c in base.case_ids if c in model_positions]
    if not common:
        raise ValueError(f"no common case between {base.where()} "
                         f"({len(base.case_ids)} cases) and {model.where()} "
                         f"({len(model.case_ids)} cases)")
    base_positions = {c: i for i, c in enumerate(base.case_ids)}
    order = [model.class_names.index(c) for c in base.class_names] + [len(model.class_names)]
    metrics = tuple(m for m in base.values if m in model.values)
    if not metrics:
        raise ValueError(f"no metric in common between {base.where()} ({', '.join(base.values)})"
                         f" and {model.where()} ({', '.join(model.values)})")
    return _Pair(
        base=base, model=model, cases=tuple(common),
        base_index=np.array([base_positions[c] for c in common], dtype=np.int64),
        model_index=np.array([model_positions[c] for c in common], dtype=np.int64),
        class_order=np.array(order, dtype=np.int64), metrics=metrics,
    )


def _check_conventions(base: RunValues, model: RunValues) -> None:
    a, b = base.stats[0], model.stats[0]
    problems = []
    if a.n_bins != b.n_bins or not np.array_equal(a.edges, b.edges):
        problems.append(f"bins {a.n_bins} vs {b.n_bins}" if a.n_bins != b.n_bins
                        else "different bin edges (input precision)")
    if a.closure != b.closure:
        problems.append(f"closure {a.closure!r} vs {b.closure!r}")
    if a.binning != b.binning:
        problems.append(f"binning {a.binning!r} vs {b.binning!r}")
    elif a.binning == "soft" and a.empty_weight != b.empty_weight:
        problems.append(f"empty_weight {a.empty_weight} vs {b.empty_weight}")
    if base.absent != model.absent:
        problems.append(f"absent policy {base.absent!r} vs {model.absent!r}")
    if problems:
        raise ValueError(f"different bin conventions between {base.where()} and "
                         f"{model.where()}: " + "; ".join(problems))


def _row_statistics(base: np.ndarray, model: np.ndarray) -> dict:
    ok = np.isfinite(base) & np.isfinite(model)
    a, b = base[ok], model[ok]
    n = int(ok.sum())
    nan = math.nan
    mean_a = float(a.mean()) if n else nan
    mean_b = float(b.mean()) if n else nan
    t_p, w_p = paired_tests(b, a)
    pct_mean, pct_std, pct_n = percent_change(b, a)
    return {
        "n": n, "mean_baseline": mean_a, "mean_model": mean_b,
        "mean_diff": float((b - a).mean()) if n else nan,
        "ttest_p": t_p, "wilcoxon_p": w_p,
        "pct_change_mean": pct_mean, "pct_change_std": pct_std, "pct_change_n": pct_n,
        "rel_change_of_means": (mean_b - mean_a) / mean_a if n and mean_a != 0 else nan,
    }


def _compare_pair(pair: _Pair, *, n_bootstrap: int, seed: int | None,
                  confidence: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    columns = [*pair.classes, CLASS_MEAN]
    rows, differences = [], []
    for metric in pair.metrics:
        base, model = pair.values(metric)
        differences.append(model - base)
        for c, name in enumerate(columns):
            row = {"metric": metric, "class": name, "model": pair.model.name,
                   "baseline": pair.base.name}
            row.update(_row_statistics(base[:, c], model[:, c]))
            rows.append(row)
    table = pd.DataFrame(rows)
    stacks, micro_metrics = _micro_inputs(pair)
    # one set of resamples for the mean differences and the micro differences
    means, micro_boot = bootstrap_samples(
        n_bootstrap, seed, values=np.concatenate(differences, axis=1), stacks=stacks,
        names=micro_metrics)
    low, high = percentile_interval(means, confidence)
    no_pairs = table["n"].to_numpy() == 0
    table["ci_low"] = np.where(no_pairs, np.nan, low)
    table["ci_high"] = np.where(no_pairs, np.nan, high)
    table["ttest_p_holm"] = holm(table["ttest_p"])
    table["wilcoxon_p_holm"] = holm(table["wilcoxon_p"])
    table = table[list(COLUMNS)]
    micro = _micro_table(pair, stacks, micro_metrics, micro_boot, confidence)
    return table, micro


def _micro_inputs(pair: _Pair) -> tuple[list[SumArrays], list[str]]:
    """The per-image sums of both runs on the paired cases (baseline class order)."""
    if not pair.has_bins:
        return [], []
    base_stats = [pair.base.stats[i] for i in pair.base_index]
    model_class = pair.class_order[:-1]
    model_stats = [pair.model.stats[i] for i in pair.model_index]
    if not np.array_equal(model_class, np.arange(len(model_class))):
        model_stats = [s.select(model_class.tolist()) for s in model_stats]
    stacks = [SumArrays.stack(base_stats, absent=pair.base.absent or "include"),
              SumArrays.stack(model_stats, absent=pair.model.absent or "include")]
    return stacks, [m for m in pair.metrics if m in SUM_METRICS]


def _micro_table(pair: _Pair, stacks: list[SumArrays], metrics: list[str],
                 samples: list[dict[str, np.ndarray]], confidence: float) -> pd.DataFrame:
    if not stacks:
        return pd.DataFrame(columns=list(MICRO_COLUMNS))
    observed = [metrics_from_sums(s.total(), metrics) for s in stacks]
    rows = []
    for metric in metrics:
        low, high = percentile_interval(samples[1][metric] - samples[0][metric], confidence)
        for c, name in enumerate(pair.classes):
            a, b = float(observed[0][metric][c]), float(observed[1][metric][c])
            rows.append({"metric": metric, "class": name, "model": pair.model.name,
                         "baseline": pair.base.name, "micro_baseline": a, "micro_model": b,
                         "micro_diff": b - a, "ci_low": float(low[c]),
                         "ci_high": float(high[c])})
    return pd.DataFrame(rows, columns=list(MICRO_COLUMNS))


def compare_runs(base, *others, names: Sequence[str] | None = None,
                 n_bootstrap: int = 10000, seed: int | None = 0, confidence: float = 0.95,
                 absent: str | None = None) -> Comparison:
    """Compare every model in ``others`` with the baseline ``base`` (folders or
    :class:`RunValues`). ``names``: one label per run, baseline first (default: folder
    names). ``absent``: recompute calibviz runs with this absent-class policy (default: the
    one each run used; runs that differ are an error). Bootstrap resamples are the same for
    every model (same ``seed``). Raises ``ValueError`` (naming the folders) for fewer than
    two runs, no common case, different classes or bin conventions."""
    check_settings(n_bootstrap, confidence)
    runs_in = (base, *others)
    if len(runs_in) < 2:
        where = base if not isinstance(base, RunValues) else base.where()
        raise ValueError(f"compare needs a baseline and at least one other results folder; "
                         f"got only {where}")
    if names is not None:
        names = [str(n) for n in names]
        if len(names) != len(runs_in):
            raise ValueError(f"{len(names)} names given for {len(runs_in)} results folders")
        if len(set(names)) != len(names):
            raise ValueError(f"names must differ from each other, got {names}")
    else:
        names = _default_names(runs_in)
    runs = tuple(_as_run(r, n, absent) for r, n in zip(runs_in, names, strict=True))
    pairs = [_pair(runs[0], other) for other in runs[1:]]  # every input error before work
    tables, micros, unpaired = [], [], []
    for pair in pairs:
        table, micro = _compare_pair(pair, n_bootstrap=n_bootstrap, seed=seed,
                                     confidence=confidence)
        tables.append(table)
        if len(micro):
            micros.append(micro)
        common = set(pair.cases)
        for run in (pair.base, pair.model):
            unpaired.extend({"model": pair.model.name, "case": c, "only_in": run.name}
                            for c in run.case_ids if c not in common)
    micro = (pd.concat(micros, ignore_index=True) if micros
             else pd.DataFrame(columns=list(MICRO_COLUMNS)))
    return Comparison(
        table=pd.concat(tables, ignore_index=True), micro=micro,
        unpaired=pd.DataFrame(unpaired, columns=list(UNPAIRED_COLUMNS)), runs=runs,
        settings={"n_bootstrap": n_bootstrap, "seed": seed, "confidence": confidence},
    )


def compare(base, *others, names: Sequence[str] | None = None, n_bootstrap: int = 10000,
            seed: int | None = 0, confidence: float = 0.95,
            absent: str | None = None) -> pd.DataFrame:
    """The comparison table of :func:`compare_runs` (columns :data:`COLUMNS`); use
    :func:`compare_runs` for the micro table and the unpaired cases as well."""
    return compare_runs(base, *others, names=names, n_bootstrap=n_bootstrap, seed=seed,
                        confidence=confidence, absent=absent).table


# --------------------------------------------------------------------------- verdict
def format_p(p: float) -> str:
    """``p < 0.001`` or ``p = 0.02`` (two significant digits).

    >>> format_p(0.0004), format_p(0.0213), format_p(0.41)
    ('p < 0.001', 'p = 0.021', 'p = 0.41')
    """
    if not math.isfinite(p):
        return "p = n/a"
    return "p < 0.001" if p < 0.001 else f"p = {float(f'{p:.2g}'):g}"


def verdict(row, alpha: float = 0.05, *, method: bool = True) -> str:
    """One-line verdict for one row of the comparison table, from the Holm-adjusted
    Wilcoxon p-value (``method=False`` leaves out the "Wilcoxon, Holm" note).

    >>> verdict({"metric": "ace", "mean_diff": -0.01, "wilcoxon_p_holm": 1e-5, "n": 20})
    'lower ACE, p < 0.001 (Wilcoxon, Holm)'
    >>> verdict({"metric": "ace", "mean_diff": 0.002, "wilcoxon_p_holm": 0.41, "n": 20})
    'no evidence of a difference in ACE (p = 0.41, Wilcoxon, Holm)'
    """
    metric = DISPLAY_NAMES.get(str(row["metric"]), str(row["metric"]))
    p = float(row["wilcoxon_p_holm"])
    n = int(row["n"])
    if n == 0:
        return f"no paired values of {metric}"
    if not math.isfinite(p):
        return f"too few pairs to test {metric} (n = {n})"
    if p >= alpha:
        note = ", Wilcoxon, Holm" if method else ""
        return f"no evidence of a difference in {metric} ({format_p(p)}{note})"
    direction = "lower" if float(row["mean_diff"]) < 0 else "higher"
    return f"{direction} {metric}, {format_p(p)}" + (" (Wilcoxon, Holm)" if method else "")
