"""Slow, plainly written reference implementations (the test oracle).

Nothing here shares code with calibviz: bins are found with ``np.searchsorted`` on edges
built independently, sums are Python-level loops over classes and bins.
"""

from __future__ import annotations

import numpy as np


def edges(n_bins: int, dtype) -> np.ndarray:
    """k/B rounded to the input precision (float64 for integers)."""
    dtype = np.dtype(dtype)
    values = np.array([k / n_bins for k in range(n_bins + 1)])
    if dtype.kind == "f":
        return values.astype(dtype).astype(np.float64)
    return values


def to_probability(values: np.ndarray, scale=None) -> np.ndarray:
    values = np.asarray(values)
    if values.dtype.kind in "iu":
        divisor = 255.0 if scale is None else round(1 / scale)
        return values.astype(np.float64) / divisor
    return values.astype(np.float64)


def hard_bin_index(p: np.ndarray, e: np.ndarray, closure: str) -> np.ndarray:
    side = "left" if closure == "right" else "right"
    return np.searchsorted(e[1:-1], p, side=side)


def outcomes(labels, classes=None, regions=None, n_classes=1):
    """list of bool arrays, one per class."""
    labels = np.asarray(labels)
    if labels.dtype == bool and classes is None and regions is None:
        return [labels[c] for c in range(n_classes)]
    if regions is not None:
        return [np.isin(labels, list(r)) for r in regions]
    if classes is None:
        classes = range(n_classes)
    return [labels == v for v in classes]


def naive_bin(
    probs, labels, *, n_bins=20, classes=None, regions=None, mask=None, ignore_label=None,
    closure="right", binning="hard", scale=None,
):
    """dict of arrays like BinStats: count, sum_p, sum_y, sum_p2, sum_py [C,B]; tp..tn [C]."""
    probs = np.asarray(probs)
    labels = np.asarray(labels)
    e = edges(n_bins, probs.dtype)
    n_classes = probs.shape[0]
    ys = outcomes(labels, classes, regions, n_classes)
    keep = np.ones(probs.shape[1:], dtype=bool)
    if mask is not None:
        keep &= np.asarray(mask)
    if ignore_label is not None:
        keep &= labels != ignore_label
    names = ("count", "sum_p", "sum_y", "sum_p2", "sum_py")
    out = {k: np.zeros((n_classes, n_bins)) for k in names}
    for k in ("tp", "fp", "fn", "tn"):
        out[k] = np.zeros(n_classes, dtype=np.int64)
    centres = (np.arange(n_bins) + 0.5) / n_bins
    for c in range(n_classes):
        p = np.clip(to_probability(probs[c], scale)[keep], 0.0, 1.0)
        y = ys[c][keep].astype(np.float64)
        pred = p >= 0.5  # the threshold rule (MONAI AsDiscrete(threshold=0.5))
        out["tp"][c] = np.sum(pred & (y == 1))
        out["fp"][c] = np.sum(pred & (y == 0))
        out["fn"][c] = np.sum(~pred & (y == 1))
        out["tn"][c] = np.sum(~pred & (y == 0))
        if binning == "hard":
            index = hard_bin_index(p, e, closure)
            for b in range(n_bins):
                sel = index == b
                out["count"][c, b] = sel.sum()
                out["sum_p"][c, b] = p[sel].sum()
                out["sum_y"][c, b] = y[sel].sum()
                out["sum_p2"][c, b] = (p[sel] ** 2).sum()
                out["sum_py"][c, b] = (p[sel] * y[sel]).sum()
        else:
            for b in range(n_bins):
                # triangular weight around each centre, flat beyond the outer centres
                w = np.clip(1.0 - np.abs(p - centres[b]) * n_bins, 0.0, 1.0)
                if b == 0:
                    w = np.where(p <= centres[0], 1.0, w)
                if b == n_bins - 1:
                    w = np.where(p >= centres[-1], 1.0, w)
                out["count"][c, b] = w.sum()
                out["sum_p"][c, b] = (w * p).sum()
                out["sum_y"][c, b] = (w * y).sum()
                out["sum_p2"][c, b] = (w * p * p).sum()
                out["sum_py"][c, b] = (w * p * y).sum()
    return out


def naive_errors(sums, empty_weight=None):
    """(ece, ace, mce, brier) per class from naive sums, with plain loops."""
    n_classes, n_bins = sums["count"].shape
    result = {k: np.full(n_classes, np.nan) for k in ("ece", "ace", "mce", "brier")}
    for c in range(n_classes):
        gaps, weights = [], []
        for b in range(n_bins):
            n = sums["count"][c, b]
            empty = n < empty_weight if empty_weight is not None else n == 0
            if empty:
                continue
            gaps.append(abs(sums["sum_p"][c, b] / n - sums["sum_y"][c, b] / n))
            weights.append(n)
        if gaps:
            result["ece"][c] = sum(g * w for g, w in zip(gaps, weights)) / sum(weights)
            result["ace"][c] = sum(gaps) / len(gaps)
            result["mce"][c] = max(gaps)
        total = sums["count"][c].sum()
        if total > 0:
            result["brier"][c] = (
                sums["sum_p2"][c].sum() - 2 * sums["sum_py"][c].sum() + sums["sum_y"][c].sum()
            ) / total
    return result


def _binned_errors(p, y, index, n_bins) -> dict:
    """ECE/ACE/MCE of voxels ``p``, ``y`` assigned to bins ``index`` (plain loop)."""
    gaps, counts = [], []
    for b in range(n_bins):
        sel = index == b
        if sel.any():
            gaps.append(abs(p[sel].mean() - y[sel].mean()))
            counts.append(sel.sum())
    gaps, counts = np.array(gaps), np.array(counts)
    return {"ece": float((gaps * counts).sum() / counts.sum()), "ace": float(gaps.mean()),
            "mce": float(gaps.max())}


def naive_voxel_errors(p, y, n_bins, closure="right"):
    """ECE/ACE/MCE straight from voxel lists (no sufficient statistics)."""
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    index = hard_bin_index(p, edges(n_bins, np.float64), closure)
    return {
        **_binned_errors(p, y, index, n_bins),
        "brier": float(np.mean((p - y) ** 2)),
    }


def naive_dice(p, y):
    pred = np.asarray(p) > 0.5
    y = np.asarray(y).astype(bool)
    denominator = pred.sum() + y.sum()
    if denominator == 0:
        return np.nan
    return 2 * (pred & y).sum() / denominator


def naive_reliability_histogram(frequencies, n_bins, closure="right"):
    """frequencies: [n_images][B] lists with None/NaN for empty bins → int [B_freq, B_conf]."""
    e = edges(n_bins, np.float64)
    grid = np.zeros((n_bins, n_bins), dtype=np.int64)
    for image in frequencies:
        for col, f in enumerate(image):
            if f is None or np.isnan(f):
                continue
            row = hard_bin_index(np.array([f]), e, closure)[0]
            grid[row, col] += 1
    return grid


def naive_frequency_row(sum_y, n, n_bins, closure="right"):
    """Frequency bin (row) of ``f = sum_y / n`` with exact fractions and a plain loop:
    right-closed ``r/B < f <= (r+1)/B`` (f = 0 in row 0), left ``r/B <= f < (r+1)/B``
    (f = 1 in the last row)."""
    from fractions import Fraction

    f = Fraction(int(sum_y), int(n))
    for r in range(n_bins):
        low, high = Fraction(r, n_bins), Fraction(r + 1, n_bins)
        if closure == "right" and (low < f <= high or (r == 0 and f == 0)):
            return r
        if closure == "left" and (low <= f < high or (r == n_bins - 1 and f == 1)):
            return r
    raise ValueError(f"frequency {f} outside [0, 1]")


# ------------------------------------------------------------------ issue 16: ROI, sweeps
def naive_boundary_distance(mask, spacing):
    """Distance (mm) of every voxel to the nearest voxel on the other side of ``mask``, by
    brute force over all pairs (small volumes only); inf when there is none."""
    mask = np.asarray(mask, dtype=bool)
    coords = np.indices(mask.shape).reshape(mask.ndim, -1).T * np.asarray(spacing, float)
    flat = mask.ravel()
    out = np.full(flat.shape, np.inf)
    for i in range(flat.size):
        other = coords[flat != flat[i]]
        if len(other):
            out[i] = np.sqrt(((other - coords[i]) ** 2).sum(axis=1)).min()
    return out.reshape(mask.shape)


def naive_band(truth, seg, mm, spacing):
    near = naive_boundary_distance(truth, spacing) <= mm
    return near | (naive_boundary_distance(seg, spacing) <= mm)


def naive_box(truth, seg, mm, spacing):
    """Voxels whose per-axis distance (in mm, as index difference × spacing) to the bounding
    box of truth ∪ seg is at most mm on every axis."""
    union = np.asarray(truth, bool) | np.asarray(seg, bool)
    out = np.zeros(union.shape, dtype=bool)
    if not union.any():
        return out
    points = np.argwhere(union)
    low, high = points.min(axis=0), points.max(axis=0)
    for index in np.ndindex(union.shape):
        inside = True
        for axis, i in enumerate(index):
            gap = max(low[axis] - i, i - high[axis], 0)
            inside &= gap * float(spacing[axis]) <= mm
        out[index] = inside
    return out


def naive_debiased_ce(count, sum_p, sum_y):
    """Debiased calibration error per class by plain loops: per bin
    (ȳ−p̄)² − ȳ(1−ȳ)/(n−1) (n = 1: the first term alone), count-weighted, clipped at 0,
    square root; NaN without voxels."""
    count = np.asarray(count, float)
    out = np.full(count.shape[0], np.nan)
    for c in range(count.shape[0]):
        total, acc = 0.0, 0.0
        for b in range(count.shape[1]):
            n = count[c, b]
            if n <= 0:
                continue
            p_bar, y_bar = sum_p[c, b] / n, sum_y[c, b] / n
            term = (y_bar - p_bar) ** 2
            if n > 1:
                term -= y_bar * (1 - y_bar) / (n - 1)
            acc += n * term
            total += n
        if total > 0:
            out[c] = np.sqrt(max(acc / total, 0.0))
    return out


def naive_equal_mass(p, y, n_bins):
    """ECE/ACE/MCE on equal-mass bins of voxel lists (Nixon et al.): sort by confidence,
    voxel of rank r goes to bin floor(r·B/N) (no ties in the fine-statistics sense)."""
    order = np.argsort(p, kind="stable")
    p, y = np.asarray(p, float)[order], np.asarray(y, float)[order]
    index = (np.arange(len(p)) * n_bins) // len(p)
    return _binned_errors(p, y, index, n_bins)


def naive_top_label(probs, labels, classes=None):
    """(confidence, correct) per voxel by plain loops: the largest probability and whether
    the first class reaching it carries the voxel's label."""
    probs = np.asarray(probs, dtype=np.float64).reshape(len(probs), -1)
    labels = np.asarray(labels).ravel()
    values = list(range(len(probs))) if classes is None else list(classes)
    confidence, correct = np.empty(labels.size), np.empty(labels.size, dtype=bool)
    for v in range(labels.size):
        best = 0
        for c in range(1, len(probs)):
            if probs[c, v] > probs[best, v]:
                best = c
        confidence[v] = probs[best, v]
        correct[v] = values[best] == labels[v]
    return confidence, correct
