"""Paired statistics of two models' per-image values: the t-test and Wilcoxon signed-rank
test, Holm's correction, and the paper's relative change."""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats as scipy_stats


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


