"""Paired comparison of models on the same images (spec §10): is a model better calibrated
than the baseline, by how much, and how sure.

Inputs are results folders (or :class:`calibviz.Results`, what ``evaluate_folder`` returns):
a calibviz run (``stats.npz`` and/or ``per_image.csv``, whose conventions the ``run.json``
beside it records) or a folder in the reference layout (``macro_{ace,ece,mce}_raw.csv``,
``mean_dice_raw.csv``: ``filename, <classes…>, mean`` one row per image). Images are
paired by case id (file extensions stripped), classes by name.

Per metric and class (and ``class = "mean"``, the per-image class mean that the paper
tests), each row holds (columns :data:`~calibviz.run_values.COLUMNS`):

* ``n``: paired images (NaN pairs dropped); ``mean_baseline``, ``mean_model``: the means
  (metric units); ``mean_diff``: model − baseline (metric units);
* ``ci_low``, ``ci_high``: its paired image-bootstrap percentile interval, NaN for fewer than
  two paired images or when the interval did not contain ``mean_diff`` (``ci_note`` says
  which; rules in :func:`calibviz.intervals.honest_interval`);
* ``ttest_p`` (the paper's paired t-test), ``wilcoxon_p`` (signed-rank), and both
  Holm-adjusted over all rows of one model-vs-baseline comparison (``*_holm``);
* ``pct_change_mean``, ``pct_change_std`` — **percent**: the paper's per-image change
  ``(model − baseline) / baseline · 100``, mean and population std over the
  ``pct_change_n`` images with a non-zero baseline (−21.7 means 21.7 % lower);
* ``rel_change_of_means`` — **a fraction, not percent**: ``(mean_model − mean_baseline) /
  mean_baseline`` (−0.217 means 21.7 % lower); differs from ``pct_change_mean / 100``
  because a mean of ratios is not a ratio of means.

When both runs kept their bins, :attr:`Comparison.micro` adds the micro (pooled-sums)
metrics per class with an image-bootstrap interval of their difference (same interval
rules). :attr:`Comparison.notes` says what the tables cannot: conventions that could not be
checked, very few paired images, intervals discarded.

>>> import numpy as np
>>> holm([0.01, 0.04, np.nan, 0.03]).round(2).tolist()
[0.03, 0.06, nan, 0.06]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .aggregate import class_mean
from .bootstrap import (
    SUM_METRICS,
    SumArrays,
    bootstrap_samples,
    check_settings,
    metrics_from_sums,
    percentile_interval,
)
from .intervals import MIN_IMAGES, discard_note, honest_interval, images_per_class
from .paired import holm, paired_tests, percent_change
from .run_values import (
    CLASS_MEAN,
    COLUMNS,
    DISPLAY_NAMES,
    MICRO_COLUMNS,
    UNPAIRED_COLUMNS,
    RunValues,
    _as_run,
    _default_names,
)
from .stats import TOP_LABEL

#: Below this many paired images a comparison says its intervals and tests rest on few images.
FEW_PAIRS = 5


# --------------------------------------------------------------------------- compare
@dataclass(frozen=True, eq=False)
class Comparison:
    """Result of :func:`compare_runs`.

    table : one row per (model, metric, class) with :data:`COLUMNS`
    micro : one row per (model, metric, class) with :data:`MICRO_COLUMNS` (empty when a
        side has no bins)
    unpaired : cases found in only one run of a comparison: ``model, case, only_in``
    runs : the baseline first, then every other model
    notes : lines to show with the tables: conventions that could not be checked, very few
        paired images, intervals discarded because they did not contain their estimate
    """

    table: pd.DataFrame
    micro: pd.DataFrame
    unpaired: pd.DataFrame
    runs: tuple[RunValues, ...]
    settings: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()

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
    notes: tuple[str, ...] = ()

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
        hint = ""
        if set(base.class_names) ^ set(model.class_names) == {TOP_LABEL}:
            with_row = base if TOP_LABEL in base.class_names else model
            hint = (f"; only {with_row.where()} has the {TOP_LABEL} row: evaluate both "
                    "with --top-label, or both without it")
        raise ValueError(
            f"different classes: {base.where()} has {list(base.class_names)}, "
            f"{model.where()} has {list(model.class_names)}{hint}"
        )
    notes = _check_conventions(base, model)
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
        class_order=np.array(order, dtype=np.int64), metrics=metrics, notes=notes,
    )


def _check_conventions(base: RunValues, model: RunValues) -> tuple[str, ...]:
    """``ValueError`` when the two runs' recorded conventions (bins, closure, binning,
    empty_weight of soft binning, absent policy) differ; the notes for a run whose
    conventions are not recorded (they cannot be checked)."""
    unknown = [r for r in (base, model) if not r.conventions]
    if unknown:
        return tuple(f"{r.where()}: "
                     + ("a reference-layout folder" if r.kind == "reference"
                        else "no stats.npz or run.json")
                     + " records no bin conventions, so bins, closure, binning and absent "
                     "policy were not checked against the other run" for r in unknown)
    a, b = base.conventions, model.conventions
    problems = []

    def differ(key: str) -> bool:
        return key in a and key in b and a[key] != b[key]

    if differ("n_bins"):
        problems.append(f"bins {a['n_bins']} vs {b['n_bins']}")
    elif base.stats is not None and model.stats is not None and \
            not np.array_equal(base.stats[0].edges, model.stats[0].edges):
        problems.append("different bin edges (input precision)")
    if differ("closure"):
        problems.append(f"closure {a['closure']!r} vs {b['closure']!r}")
    if differ("binning"):
        problems.append(f"binning {a['binning']!r} vs {b['binning']!r}")
    elif a.get("binning") == "soft" and differ("empty_weight"):
        problems.append(f"empty_weight {a['empty_weight']} vs {b['empty_weight']}")
    if differ("absent"):
        problems.append(f"absent policy {a['absent']!r} vs {b['absent']!r}")
    if problems:
        raise ValueError(f"different bin conventions between {base.where()} and "
                         f"{model.where()}: " + "; ".join(problems))
    return ()


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
                  confidence: float) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
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
    notes = list(pair.notes)
    if len(pair.cases) < FEW_PAIRS:
        notes.append(f"{pair.model.name} vs {pair.base.name}: only {len(pair.cases)} paired "
                     "image(s): the intervals and tests rest on very few images"
                     + (" (one image: no interval, no test)" if len(pair.cases) < 2 else ""))
    table = _with_intervals(table, "mean_diff", percentile_interval(means, confidence),
                            table["n"].to_numpy(), notes)
    table["ttest_p_holm"] = holm(table["ttest_p"])
    table["wilcoxon_p_holm"] = holm(table["wilcoxon_p"])
    table = table[list(COLUMNS)]
    micro = _micro_table(pair, stacks, micro_metrics, micro_boot, confidence, notes)
    return table, micro, notes


def _with_intervals(table: pd.DataFrame, estimate: str, interval, n_images,
                    notes: list[str]) -> pd.DataFrame:
    """``table`` with ``ci_low``, ``ci_high`` and ``ci_note`` from the percentile
    ``interval`` of its ``estimate`` column made honest
    (:func:`~calibviz.intervals.honest_interval`); a discarded interval adds a note."""
    value = table[estimate].to_numpy(np.float64)
    low, high, discarded = honest_interval(value, *interval, n_images)
    table["ci_low"], table["ci_high"] = low, high
    why = np.where(np.asarray(n_images) < MIN_IMAGES, f"fewer than {MIN_IMAGES} images", "")
    table["ci_note"] = np.broadcast_to(why, value.shape).astype(object)
    for i in np.flatnonzero(discarded):
        row = table.iloc[i]
        notes.append(discard_note(
            f"{row['model']} vs {row['baseline']}: {estimate} of {row['metric']}, "
            f"{row['class']}", value[i], interval[0][i], interval[1][i]))
        table.iloc[i, table.columns.get_loc("ci_note")] = (
            f"discarded [{interval[0][i]:.4g}, {interval[1][i]:.4g}]: does not contain "
            f"the {estimate}")
    return table


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
                 samples: list[dict[str, np.ndarray]], confidence: float,
                 notes: list[str]) -> pd.DataFrame:
    if not stacks:
        return pd.DataFrame(columns=list(MICRO_COLUMNS))
    observed = [metrics_from_sums(s.total(), metrics) for s in stacks]
    carried = images_per_class(*stacks)
    rows, lows, highs, n_images = [], [], [], []
    for metric in metrics:
        low, high = percentile_interval(samples[1][metric] - samples[0][metric], confidence)
        for c, name in enumerate(pair.classes):
            a, b = float(observed[0][metric][c]), float(observed[1][metric][c])
            rows.append({"metric": metric, "class": name, "model": pair.model.name,
                         "baseline": pair.base.name, "micro_baseline": a, "micro_model": b,
                         "micro_diff": b - a})
            lows.append(low[c])
            highs.append(high[c])
            n_images.append(carried[c])
    table = pd.DataFrame(rows)
    table = _with_intervals(table, "micro_diff", (np.array(lows), np.array(highs)),
                            np.array(n_images), notes)
    return table[list(MICRO_COLUMNS)]


def compare_runs(base, *others, names: Sequence[str] | None = None,
                 n_bootstrap: int = 10000, seed: int | None = 0, confidence: float = 0.95,
                 absent: str | None = None) -> Comparison:
    """Compare every model in ``others`` with the baseline ``base`` (folders,
    :class:`calibviz.Results` or :class:`RunValues`). ``names``: one label per run, baseline
    first (default: folder names, or a Results' ``name`` / prediction folder). ``absent``:
    recompute calibviz runs with this absent-class policy (default: the one each run used;
    runs that differ are an error; a per_image.csv run cannot be recomputed). Bootstrap
    resamples are the same for every model (same ``seed``). Raises ``ValueError`` (naming
    the folders) for fewer than two runs, no common case, different classes or bin
    conventions (from stats.npz, or the run.json beside a per_image.csv); ``TypeError``
    for a run of another type."""
    check_settings(n_bootstrap, confidence, seed)
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
    tables, micros, unpaired, notes = [], [], [], []
    for pair in pairs:
        table, micro, found = _compare_pair(pair, n_bootstrap=n_bootstrap, seed=seed,
                                            confidence=confidence)
        notes += [n for n in found if n not in notes]
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
        notes=tuple(notes),
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
