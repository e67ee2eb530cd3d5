"""Calibration and segmentation metrics as pure functions of :class:`BinStats` (spec §3, §9).

Every function takes one ``BinStats`` and returns float64 ``[C]`` (one value per class).
``METRICS`` maps each per-image metric name to its function: every table and report is
built from it, so adding a metric here adds it everywhere.

>>> import numpy as np
>>> from calibviz import bin_image
>>> stats = bin_image(np.array([[0.7, 0.3], [0.1, 0.9]]), np.array([[1, 0], [0, 1]]), n_bins=5,
...                   classes=[1])
>>> float(ece(stats)[0]), float(ace(stats)[0]), float(mce(stats)[0])
(0.2, 0.2, 0.3)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .stats import TOP_LABEL, BinStats


def one_stats(stats, name: str) -> BinStats:
    """``stats`` if it is a :class:`BinStats`, else ``TypeError`` naming what to pass."""
    if isinstance(stats, BinStats):
        return stats
    found = type(stats).__name__
    if isinstance(stats, (list, tuple)):
        raise TypeError(f"{name}() expects one BinStats, got a {found}; pool several with "
                        f"{name}(calibviz.pool(stats)) (micro), or call {name}() on each")
    if found == "Results":
        raise TypeError(f"{name}() expects one BinStats, got a Results; use results.stats[i] "
                        "for one image, calibviz.pool(results) for the pooled bins, or "
                        "calibviz.micro_metrics(results) / calibviz.macro_summary(results)")
    raise TypeError(f"{name}() expects one BinStats, got {found}")


def calibration_gaps(stats: BinStats) -> np.ndarray:
    """float64 ``[C, B]`` ``|mean confidence − frequency|`` per bin; NaN for empty bins."""
    stats = one_stats(stats, "calibration_gaps")
    return np.abs(stats.mean_confidence - stats.frequency)


def _bin_weights(stats: BinStats) -> np.ndarray:
    """float64 ``[C, B]`` voxel counts (soft weights) of non-empty bins, 0 elsewhere."""
    return np.where(stats.nonempty, stats.count, 0).astype(np.float64)


def gap_metrics(mean_confidence, frequency, count, nonempty
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ECE, ACE and MCE from per-bin arrays (bins on the last axis), each float64 of the
    leading shape (a scalar array for one class); NaN where no bin holds data.

    ``mean_confidence``, ``frequency``: float ``[..., B]``; ``count``: voxels (soft weights)
    per bin; ``nonempty``: bool ``[..., B]`` bins that hold data (others are left out).

    >>> [float(v) for v in gap_metrics([0.1, 0.5], [0.3, 0.5], [2, 2], [True, True])]
    [0.1, 0.1, 0.2]
    """
    nonempty = np.asarray(nonempty, dtype=bool)
    gaps = np.where(nonempty, np.abs(np.asarray(mean_confidence) - np.asarray(frequency)), 0.0)
    weights = np.where(nonempty, count, 0).astype(np.float64)
    total = weights.sum(axis=-1)
    n_nonempty = nonempty.sum(axis=-1)
    ece_ = np.full(total.shape, np.nan)
    np.divide((weights * gaps).sum(axis=-1), total, out=ece_, where=total > 0)
    ace_ = np.full(total.shape, np.nan)
    np.divide(gaps.sum(axis=-1), n_nonempty, out=ace_, where=n_nonempty > 0)
    mce_ = np.asarray(np.where(nonempty, gaps, -np.inf).max(axis=-1), dtype=np.float64)
    mce_[~np.isfinite(mce_)] = np.nan
    return ece_, ace_, mce_


def _gap_metrics(stats: BinStats, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    stats = one_stats(stats, name)
    return gap_metrics(stats.mean_confidence, stats.frequency, stats.count, stats.nonempty)


def ece(stats: BinStats) -> np.ndarray:
    """Expected calibration error ``Σ n_k d_k / Σ n_k`` per class; NaN without voxels."""
    return _gap_metrics(stats, "ece")[0]


def ace(stats: BinStats) -> np.ndarray:
    """Average calibration error: mean gap over non-empty bins (the paper's headline metric)."""
    return _gap_metrics(stats, "ace")[1]


def mce(stats: BinStats) -> np.ndarray:
    """Maximum calibration error: largest gap over non-empty bins."""
    return _gap_metrics(stats, "mce")[2]


def brier(stats: BinStats) -> np.ndarray:
    """Brier score ``(Σp² − 2Σp·y + Σy) / Σn`` per class (y is 0/1 so ``Σy² = Σy``)."""
    stats = one_stats(stats, "brier")
    total = stats.count.sum(axis=1).astype(np.float64)
    numerator = (stats.sum_p2 - 2 * stats.sum_py + stats.sum_y).sum(axis=1)
    out = np.full(stats.n_classes, np.nan)
    np.divide(numerator, total, out=out, where=total > 0)
    return out


def brier_decomposition(stats: BinStats) -> dict[str, np.ndarray]:
    """Murphy's decomposition of the Brier score from binned sums, float64 ``[C]`` each.

    ``brier = reliability − resolution + uncertainty + within_bin_variance
    − 2·within_bin_covariance`` holds exactly (Stephenson et al. 2008): the last two terms
    are the part binning hides, and they come straight from ``Σp²`` and ``Σp·y``.
    Empty bins (``W = 0``, or ``W < empty_weight`` when soft) are left out of every term.
    """
    stats = one_stats(stats, "brier_decomposition")
    n = _bin_weights(stats)
    total = n.sum(axis=1)
    keep = stats.nonempty
    sum_p = np.where(keep, stats.sum_p, 0.0)
    sum_y = np.where(keep, stats.sum_y, 0.0)
    sum_p2 = np.where(keep, stats.sum_p2, 0.0)
    sum_py = np.where(keep, stats.sum_py, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        p_bar = np.where(keep, sum_p / np.where(keep, n, 1), 0.0)
        y_bar = np.where(keep, sum_y / np.where(keep, n, 1), 0.0)
        base_rate = sum_y.sum(axis=1) / total
        terms = {
            "reliability": (n * (p_bar - y_bar) ** 2).sum(axis=1) / total,
            "resolution": (n * (y_bar - base_rate[:, None]) ** 2).sum(axis=1) / total,
            "uncertainty": base_rate * (1 - base_rate),
            "within_bin_variance": (sum_p2 - n * p_bar**2).sum(axis=1) / total,
            "within_bin_covariance": (sum_py - n * p_bar * y_bar).sum(axis=1) / total,
        }
    return {name: np.where(total > 0, value, np.nan) for name, value in terms.items()}


def debiased_ce(count, sum_p, sum_y, nonempty) -> np.ndarray:
    """Debiased calibration error from per-bin arrays (bins on the last axis), float64 of the
    leading shape; NaN where no bin holds data (Kumar, Liang & Ma 2019).

    Per non-empty bin ``(ȳ − p̄)² − ȳ(1 − ȳ)/(n − 1)`` (bins with ``n <= 1`` contribute
    ``(ȳ − p̄)²`` alone), averaged with weights ``n``; the mean is clipped at 0 and its square
    root returned.  Needs ``count``, ``Σp`` and ``Σy`` only (``Σy² = Σy`` for 0/1 outcomes).
    With soft binning ``n`` is the soft weight ``W`` (a bin with ``W <= 1`` is not corrected).

    >>> round(float(debiased_ce([4], [2.0], [3.0], [True])), 6)
    0.0
    """
    nonempty = np.asarray(nonempty, dtype=bool)
    n = np.where(nonempty, count, 0).astype(np.float64)
    safe = np.where(nonempty, n, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        p_bar = np.where(nonempty, np.asarray(sum_p) / safe, 0.0)
        y_bar = np.where(nonempty, np.asarray(sum_y) / safe, 0.0)
        correction = np.where(n > 1, y_bar * (1 - y_bar) / np.where(n > 1, n - 1, 1.0), 0.0)
    terms = np.where(nonempty, (y_bar - p_bar) ** 2 - correction, 0.0)
    total = n.sum(axis=-1)
    out = np.full(total.shape, np.nan)
    np.divide((n * terms).sum(axis=-1), total, out=out, where=total > 0)
    return np.sqrt(np.maximum(out, 0.0), where=np.isfinite(out), out=out)


def dce(stats: BinStats) -> np.ndarray:
    """Debiased calibration error per class (see :func:`debiased_ce`); NaN without voxels."""
    stats = one_stats(stats, "dce")
    return debiased_ce(stats.count, stats.sum_p, stats.sum_y, stats.nonempty)


def dice(stats: BinStats) -> np.ndarray:
    """Dice of each channel thresholded at ``p >= 0.5``; NaN when truth and prediction are
    empty (and for a ``top-label`` row, which is no segmentation)."""
    stats = one_stats(stats, "dice")
    tp = stats.tp.astype(np.float64)
    denominator = 2 * tp + stats.fp + stats.fn
    out = np.full(stats.n_classes, np.nan)
    np.divide(2 * tp, denominator, out=out, where=denominator > 0)
    out[[n == TOP_LABEL for n in stats.class_names]] = np.nan
    return out


MetricFunction = Callable[[BinStats], np.ndarray]

#: The per-image calibration and segmentation metrics, in report order.
METRICS: dict[str, MetricFunction] = {
    "ece": ece,
    "ace": ace,
    "mce": mce,
    "dce": dce,
    "brier": brier,
    "dice": dice,
}

#: Metrics that are calibration errors computed from bins (Dice is the one that is not; every
#: metric, Dice too, is NaN for an image–class pair the absent policy leaves out).
CALIBRATION_METRICS = ("ece", "ace", "mce", "dce", "brier")
