"""Any bin count from one pass: coarsening fine bins, equal-mass bins and bin-count sweeps
(issue 16 §2).

Bin sums are additive, so statistics kept at a fine resolution ``F`` answer every coarser
``B`` dividing ``F``: bin ``k`` of ``B`` holds exactly the fine bins ``k·F/B … (k+1)·F/B − 1``.

**When coarsening equals a direct run.**  Hard binning only.  A voxel's bin is decided by the
edges ``k/B`` rounded to the input's precision (:func:`calibviz.bin_edges`: the float64 quotient
``k/B``, then rounded to float16/float32 for such maps).  The fine edge ``k' = k·F/B`` is the
float64 quotient ``k'/F`` of two exact integers, and IEEE division is correctly rounded, so
``fl64(k'/F) = fl64(k/B)`` — the same float64 number — and its rounding to float32 or float16
is then the same too.  Hence every voxel lands in the same coarse bin, in every precision
(float16, float32, float64, integer-stored maps), under both closures: ``count``, ``Σy`` (sums
of 0/1, exact) and the confusion counts are identical to the last bit.  (Building float32
edges as ``k·fl32(1/F)`` or in float32 arithmetic would break this; calibviz never does.)
``Σp``, ``Σp²`` and ``Σp·y`` hold the same addends in a different association (a direct run
adds voxel by voxel, the coarsening adds fine-bin subtotals), so they agree to rounding
(relative ~1e-16 per addition) and are bit-identical whenever those float64 additions are
exact, e.g. for dyadic probabilities (``j/2**m`` with few enough voxels) — see
``tests/test_sweep.py``.  Soft binning cannot be coarsened: a voxel's weight is split between
the two nearest *fine* bin centres, which are not coarse centres.

>>> import numpy as np
>>> from calibviz import bin_image
>>> fine = bin_image(np.array([0.05, 0.3, 0.7]), np.array([False, True, True]), n_bins=10)
>>> coarsen(fine, 2).count.tolist()
[[2, 1]]
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .aggregate import _as_list, absent_policy, included
from .metrics import debiased_ce, gap_metrics
from .stats import BinStats

#: The bin counts swept by default (all divide 600, the recommended fine resolution).
DEFAULT_SWEEP_BINS = (5, 10, 15, 20, 30, 50, 100)
#: The recommended fine resolution: divisible by 5, 10, 15, 20, 25, 30, 40, 50, 60, 75, 100, …
FINE_BINS = 600
#: Metrics of a sweep, in table order (``*_em``: on equal-mass bins).
SWEEP_METRICS = ("ece", "ace", "mce", "dce", "ece_em", "ace_em", "mce_em")
CLASS_MEAN = "mean"
_BINNED = ("count", "sum_p", "sum_y", "sum_p2", "sum_py")


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def check_divides(n_fine: int, n_bins: int, binning: str = "hard") -> int:
    """``n_bins`` as an int; ``ValueError`` (one line) unless hard-binned statistics with
    ``n_fine`` bins can be coarsened exactly to it."""
    if binning != "hard":
        raise ValueError(
            "soft-binned statistics cannot be coarsened exactly (each voxel's weight is split "
            "between the two nearest fine bin centres, which are not coarse centres); "
            "re-run with --binning hard or with --bins B")
    if int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"the number of bins must be a positive integer, got {n_bins!r}")
    n_bins = int(n_bins)
    if n_fine % n_bins:
        raise ValueError(
            f"{n_bins} bins do not divide the run's {n_fine} fine bins (possible: "
            f"{', '.join(map(str, divisors(n_fine)))}); {fine_bins_hint(n_fine, [n_bins])}")
    return n_bins


def fine_bins_hint(n_fine: int, wanted) -> str:
    """What to re-run evaluate with so that ``wanted`` bin counts divide the fine bins: the
    least common multiple of the run's bins and them, when it is within
    :data:`~calibviz.options.MAX_BINS`."""
    from .options import MAX_BINS

    needed = math.lcm(n_fine, *map(int, wanted))
    if needed > MAX_BINS:
        return (f"no --fine-bins up to {MAX_BINS:,} is a multiple of {n_fine} and of "
                f"{', '.join(map(str, wanted))}")
    return f"re-run evaluate with --fine-bins {needed}"


def coarsen(stats: BinStats, n_bins: int) -> BinStats:
    """The statistics of ``n_bins`` equal-width bins from finer ones (exact; see the module
    text for when they equal a direct run to the last bit)."""
    n_bins = check_divides(stats.n_bins, n_bins, stats.binning)
    if n_bins == stats.n_bins:
        return stats
    shape = (stats.n_classes, n_bins, stats.n_bins // n_bins)
    fields = {name: getattr(stats, name).reshape(shape).sum(axis=-1) for name in _BINNED}
    return stats.replace(**fields, edges=None)


def default_bins(n_fine: int) -> tuple[list[int], list[int]]:
    """``(used, left_out)``: the :data:`DEFAULT_SWEEP_BINS` that divide ``n_fine`` and those
    that do not; when none does, ``used`` is every divisor of ``n_fine`` above 1 (or
    ``[n_fine]``)."""
    used = [b for b in DEFAULT_SWEEP_BINS if n_fine % b == 0]
    left_out = [b for b in DEFAULT_SWEEP_BINS if n_fine % b]
    if not used:
        used = [d for d in divisors(n_fine) if d > 1] or [n_fine]
    return used, left_out


#: Option keys that differ between a run's ``stats.npz`` and its ``stats_fine.npz``.
_BIN_OPTIONS = ("n_bins", "fine_bins")


def _some(cases) -> str:
    shown = ", ".join(cases[:3]) + (", …" if len(cases) > 3 else "")
    return f"{len(cases)} cases ({shown})" if cases else "no case"


def fine_mismatch(fine, run) -> str | None:
    """Why the fine statistics ``fine`` (a :class:`~calibviz.results.Results` from
    ``stats_fine.npz``) are not those of the run ``run`` (its ``stats.npz``), or None when
    they are: the same cases, classes, convention and options, and coarsened to the run's
    bins they give the run's statistics (counts exactly, sums to rounding)."""
    if fine.cases != run.cases:
        return f"it lists {_some(fine.cases)}, stats.npz {_some(run.cases)}"
    if not run.stats:
        return None
    a, b = fine.stats[0], run.stats[0]
    if a.class_names != b.class_names:
        return f"its classes are {', '.join(a.class_names)}; stats.npz has " \
               f"{', '.join(b.class_names)}"
    if (a.closure, a.binning) != (b.closure, b.binning):
        return (f"it has {a.binning} {a.closure}-closed bins; stats.npz {b.binning} "
                f"{b.closure}-closed")
    recorded = run.options.get("fine_bins")
    if a.n_bins % b.n_bins or (recorded is not None and recorded != a.n_bins):
        return (f"it has {a.n_bins} bins; the run has {b.n_bins}"
                + (f" from {recorded} fine bins" if recorded is not None else ""))
    options = {k: v for k, v in fine.options.items() if k not in _BIN_OPTIONS}
    wanted = {k: v for k, v in run.options.items() if k not in _BIN_OPTIONS}
    differ = sorted(k for k in set(options) | set(wanted) if options.get(k) != wanted.get(k))
    if differ:
        shown = "; ".join(f"{k}: {options.get(k)!r} there, {wanted.get(k)!r} in stats.npz"
                          for k in differ[:3])
        return f"the options differ ({shown}{'; …' if len(differ) > 3 else ''})"
    for case, fine_stats, stats in zip(run.cases, fine.stats, run.stats):
        coarse = coarsen(fine_stats, b.n_bins)
        exact = all(np.array_equal(getattr(coarse, n), getattr(stats, n))
                    for n in ("count", "tp", "fp", "fn", "tn"))
        if not exact or not coarse.equals(stats, rtol=1e-9, atol=1e-9):
            return f"its sums do not add up to the run's statistics (case {case})"
    return None


# --------------------------------------------------------------------------- equal mass
def _equal_mass_starts(count: np.ndarray, n_bins: int) -> np.ndarray:
    """int64 ``[R, n_bins]``: the fine bin where each equal-mass bin starts, for fine counts
    ``[R, F]``.  A fine bin goes whole to the equal-mass bin in which the median rank of its
    voxels falls (rank ``r`` of ``T`` belongs to bin ``floor(r·B/T)``, Nixon et al. 2019); an
    empty fine bin goes with the rank just above it.  Integer arithmetic throughout."""
    count = np.asarray(count, dtype=np.int64)
    rows, n_fine = count.shape
    cum = np.zeros((rows, n_fine + 1), dtype=np.int64)
    np.cumsum(count, axis=1, out=cum[:, 1:])
    total = cum[:, -1:]
    before, after = cum[:, :-1], cum[:, 1:]
    twice_rank = np.where(count > 0, before + after - 1, 2 * before)
    index = (n_bins * twice_rank) // np.maximum(2 * total, 1)
    index = np.clip(index, 0, n_bins - 1)
    per_bin = np.bincount((index + n_bins * np.arange(rows)[:, None]).ravel(),
                          minlength=rows * n_bins).reshape(rows, n_bins)
    starts = np.zeros((rows, n_bins), dtype=np.int64)
    np.cumsum(per_bin[:, :-1], axis=1, out=starts[:, 1:])
    return starts


def _regroup(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """``[R, B]`` sums of ``values`` ``[R, F]`` over the fine bins ``starts[:, j]`` up to the
    next start (exact sequential sums; empty groups 0)."""
    rows, n_fine = values.shape
    padded = np.zeros((rows, n_fine + 1), dtype=values.dtype)
    padded[:, :n_fine] = values
    flat = (starts + (n_fine + 1) * np.arange(rows)[:, None]).ravel()
    out = np.add.reduceat(padded.ravel(), flat).reshape(starts.shape)
    stops = np.concatenate([starts[:, 1:], np.full((rows, 1), n_fine)], axis=1)
    return np.where(stops > starts, out, 0)


@dataclass(frozen=True, eq=False)
class EqualMass:
    """Equal-mass bins of one :class:`BinStats` (or pooled images).

    stats : the sums of each equal-mass bin as a ``BinStats`` (its ``edges`` are the
        nominal ``k/B`` of the type, **not** the bins' boundaries: use ``boundaries``)
    boundaries : float64 ``[C, B + 1]`` the bins' confidence boundaries (fine edges);
        an empty equal-mass bin has two equal boundaries
    """

    stats: BinStats
    boundaries: np.ndarray


def equal_mass(stats: BinStats, n_bins: int) -> EqualMass:
    """``n_bins`` bins of as equal voxel counts as the fine resolution allows (a fine bin is
    never split), from hard-binned fine statistics."""
    check_divides(stats.n_bins, 1, stats.binning)  # hard binning only
    if int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"the number of bins must be a positive integer, got {n_bins!r}")
    n_bins = int(n_bins)
    starts = _equal_mass_starts(stats.count, n_bins)
    fields = {name: _regroup(getattr(stats, name), starts) for name in _BINNED}
    bounds = np.concatenate([starts, np.full((stats.n_classes, 1), stats.n_bins)], axis=1)
    return EqualMass(stats.replace(**fields, edges=None), bounds / stats.n_bins)


def _gap_and_debiased(count, sum_p, sum_y) -> dict[str, np.ndarray]:
    nonempty = count > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.where(nonempty, sum_p / np.where(nonempty, count, 1), np.nan)
        freq = np.where(nonempty, sum_y / np.where(nonempty, count, 1), np.nan)
    ece_, ace_, mce_ = gap_metrics(conf, freq, count, nonempty)
    return {"ece": ece_, "ace": ace_, "mce": mce_,
            "dce": debiased_ce(count, sum_p, sum_y, nonempty)}


def ece_em(stats: BinStats, n_bins: int = 15) -> np.ndarray:
    """ECE on ``n_bins`` equal-mass bins, float64 ``[C]``."""
    return _em_metrics(stats, n_bins)["ece_em"]


def ace_em(stats: BinStats, n_bins: int = 15) -> np.ndarray:
    """ACE on ``n_bins`` equal-mass bins, float64 ``[C]``."""
    return _em_metrics(stats, n_bins)["ace_em"]


def mce_em(stats: BinStats, n_bins: int = 15) -> np.ndarray:
    """MCE on ``n_bins`` equal-mass bins, float64 ``[C]``."""
    return _em_metrics(stats, n_bins)["mce_em"]


def _em_metrics(stats: BinStats, n_bins: int) -> dict[str, np.ndarray]:
    em = equal_mass(stats, n_bins).stats
    values = _gap_and_debiased(em.count, em.sum_p, em.sum_y)
    return {f"{name}_em": values[name] for name in ("ece", "ace", "mce")}


def _metrics_at(count, sum_p, sum_y, n_bins: int) -> dict[str, np.ndarray]:
    """Every sweep metric at ``n_bins`` from fine arrays ``[R, F]``: ``{name: [R]}``."""
    rows, n_fine = count.shape
    shape = (rows, n_bins, n_fine // n_bins)
    out = _gap_and_debiased(count.reshape(shape).sum(-1), sum_p.reshape(shape).sum(-1),
                            sum_y.reshape(shape).sum(-1))
    starts = _equal_mass_starts(count, n_bins)
    em = _gap_and_debiased(*(_regroup(v, starts) for v in (count, sum_p, sum_y)))
    out.update({f"{name}_em": em[name] for name in ("ece", "ace", "mce")})
    return out


# --------------------------------------------------------------------------- the sweep
def sweep_values(
    stats_list: Iterable[BinStats], bins: Sequence[int] = DEFAULT_SWEEP_BINS, *,
    absent: str | None = None, chunk: int = 128,
) -> tuple[dict, dict, tuple[str, ...]]:
    """``(per_image, micro, class_names)``: ``per_image[(metric, B)]`` float64 ``[N, C]``
    (NaN where the absent policy leaves an image's class out) and ``micro[(metric, B)]``
    float64 ``[C]`` on the pooled sums.  Images are processed ``chunk`` at a time.
    ``absent=None``: a Results' own policy, else ``"include"``."""
    absent = absent_policy(stats_list, absent)
    stats = _as_list(stats_list)
    first = stats[0]
    bins = [check_divides(first.n_bins, b, first.binning) for b in bins]
    keep = np.stack([included(s, absent) for s in stats])
    n_images, n_classes, n_fine = len(stats), first.n_classes, first.n_bins
    pooled = {name: np.zeros((n_classes, n_fine)) for name in ("count", "sum_p", "sum_y")}
    pooled["count"] = pooled["count"].astype(np.int64)
    per_image = {(m, b): np.empty((n_images, n_classes)) for m in SWEEP_METRICS for b in bins}
    for lo in range(0, n_images, chunk):
        part = stats[lo:lo + chunk]
        arrays = {name: np.stack([getattr(s, name) for s in part]) for name in pooled}
        part_keep = keep[lo:lo + chunk]
        for name, value in arrays.items():
            pooled[name] += np.where(part_keep[..., None], value, 0).sum(axis=0)
        flat = [arrays[n].reshape(-1, n_fine) for n in ("count", "sum_p", "sum_y")]
        for b in bins:
            for metric, value in _metrics_at(*flat, b).items():
                values = value.reshape(len(part), n_classes)
                per_image[metric, b][lo:lo + len(part)] = np.where(part_keep, values, np.nan)
    micro = {}
    for b in bins:
        for metric, value in _metrics_at(pooled["count"], pooled["sum_p"], pooled["sum_y"],
                                          b).items():
            micro[metric, b] = value
    return per_image, micro, first.class_names


def _nanmean(values: np.ndarray, axis: int):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=axis)


def sweep_table(
    stats_list: Iterable[BinStats], bins: Sequence[int] = DEFAULT_SWEEP_BINS, *,
    absent: str | None = None,
):
    """pandas DataFrame with columns ``metric, class, bins, macro, micro``: for every sweep
    metric (:data:`SWEEP_METRICS`), class (and ``mean``, the per-image class mean) and bin
    count, the mean over images (macro) and the value of the pooled sums (micro; for
    ``mean``, the mean of the classes' micro values), as in ``summary.csv``.  The fine
    statistics must be hard-binned with a bin count that every ``B`` divides."""
    import pandas as pd

    per_image, micro, names = sweep_values(stats_list, bins, absent=absent)
    rows = []
    for metric in SWEEP_METRICS:
        for c, name in enumerate((*names, CLASS_MEAN)):
            for b in dict.fromkeys(int(b) for b in bins):
                values, pooled = per_image[metric, b], micro[metric, b]
                if name == CLASS_MEAN:
                    macro = _nanmean(_nanmean(values, axis=1), axis=0)
                    micro_value = _nanmean(pooled, axis=0)
                else:
                    macro, micro_value = _nanmean(values[:, c], axis=0), pooled[c]
                rows.append({"metric": metric, "class": name, "bins": b,
                             "macro": float(macro), "micro": float(micro_value)})
    return pd.DataFrame(rows, columns=["metric", "class", "bins", "macro", "micro"])


def equal_mass_table(stats_list: Iterable[BinStats], bins: Sequence[int] = DEFAULT_SWEEP_BINS,
                     *, absent: str | None = None):
    """pandas DataFrame ``class, bins, boundaries``: the equal-mass boundaries of the pooled
    (micro) statistics, space-separated confidence values."""
    import pandas as pd

    from .aggregate import pool

    pooled = pool(_as_list(stats_list), absent=absent_policy(stats_list, absent))
    rows = []
    for b in dict.fromkeys(int(b) for b in bins):
        bounds = equal_mass(pooled, b).boundaries
        for c, name in enumerate(pooled.class_names):
            rows.append({"class": name, "bins": b,
                         "boundaries": " ".join(f"{v:.6g}" for v in bounds[c])})
    return pd.DataFrame(rows, columns=["class", "bins", "boundaries"])


def sweep_figure(table, *, preset=None, classes: Sequence[str] | None = None):
    """A figure with one panel per metric of ``table`` (:func:`sweep_table`): each against
    the number of bins, macro (solid) and micro (dashed) of the class mean in black and of
    each class in colour."""
    from .viz.figures import figure_legend, outer_labels, panel_grid
    from .viz.presets import get_preset

    preset = get_preset(preset)
    metrics = list(dict.fromkeys(table["metric"]))
    names = list(dict.fromkeys(table["class"])) if classes is None else [*classes, CLASS_MEAN]
    figure, panels, _ = panel_grid(len(metrics), preset, histogram=False)
    colours = {n: f"C{i % 10}" for i, n in enumerate(n for n in names if n != CLASS_MEAN)}
    colours[CLASS_MEAN] = "black"
    handles = {}
    for (ax, _), metric in zip(panels, metrics):
        part = table[table["metric"] == metric]
        for name in names:
            rows = part[part["class"] == name].sort_values("bins")
            width = 2.0 if name == CLASS_MEAN else 1.0
            (line,) = ax.plot(rows["bins"], rows["macro"], "-o", color=colours[name],
                              lw=width, ms=2.5)
            ax.plot(rows["bins"], rows["micro"], "--", color=colours[name], lw=width)
            handles.setdefault(name, line)
        ax.set_xscale("log")
        ticks = sorted(set(part["bins"]))
        ax.set_xticks(ticks, [str(b) for b in ticks], minor=False)
        ax.minorticks_off()
        ax.set_title(metric.upper().replace("_EM", " (equal mass)"))
        ax.set_xlabel("number of bins")
        ax.set_ylabel("value (solid: macro, dashed: micro)")
        ax.set_ylim(bottom=0)
    outer_labels(figure, panels, preset.columns(len(metrics)))
    labels = ["class mean" if n == CLASS_MEAN else n for n in handles]
    figure_legend(figure, list(handles.values()), labels)
    return figure


__all__ = [
    "DEFAULT_SWEEP_BINS", "FINE_BINS", "SWEEP_METRICS", "EqualMass", "ace_em",
    "check_divides", "coarsen", "default_bins", "equal_mass", "equal_mass_table", "ece_em",
    "fine_mismatch", "mce_em", "sweep_figure", "sweep_table", "sweep_values",
]
