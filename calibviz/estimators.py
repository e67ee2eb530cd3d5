"""Better estimators from the same sums (issue 16 §3, §4): smooth ECE, top-label and
class-wise ECE.  (The debiased calibration error is the ``dce`` metric of
:mod:`calibviz.metrics`, in every table.)

**Smooth ECE** (Błasiok & Nakkiran 2023, the ``relplot`` package): the residuals ``p − y`` are
smoothed with a reflected Gaussian kernel of bandwidth ``σ`` over the confidence axis, the
error is the density-weighted mean absolute smoothed residual, and ``σ`` is chosen
self-consistently (the smallest ``σ`` of a bisection with ``smECE(σ) <= σ``).  The procedure —
grid sizes, the linear split of each point onto the grid, the reflection at 0 and 1, the
bisection — follows ``relplot.smECE`` step by step, so the numbers agree with it.  Here the
points are not voxels but, per fine bin, its positive and its negative voxels as two weighted
points at their mean confidences (``Σp·y/Σy`` and ``(Σp − Σp·y)/(n − Σy)``): every fine bin's
counts and residual sums are kept exactly, and only the spread of confidences inside a fine
bin is lost.  That matters most in the first and last fine bins: relplot's grid weighs a
point at exactly 0 (or 1) once and one a grid step (1/1000 for ``σ >= 0.01``) inside twice (its
reflection), so *where* voxels sit inside [0, 1/F] counts.  Measured against ``relplot.smECE``
on the voxels themselves (``tests/test_estimators.py``): with 600 fine bins within 4e-4 (worst:
segmentation-like maps with most voxels near 0), with 3000 within 3e-5; with 20 to 200 bins
errors of 2e-3 occur.  Use ``--fine-bins 600`` or more.

**Top-label ECE** (the classification literature, torchmetrics, netcal): one binary problem
whose confidence is the largest class probability and whose outcome is ``argmax == label``;
its sums are an ordinary :class:`BinStats` row (``top_label_stats``, or kept while channels
stream), and the marginal formulas apply unchanged.  **Class-wise ECE**: the mean over classes
of the marginal (one-vs-rest) ECEs.
"""

from __future__ import annotations

import numpy as np

from .metrics import ece, one_stats
from .stats import TOP_LABEL, BinStats

_SMOOTH_EPS = 1e-4  # added to the smoothed density (relplot's BaseKernelMixin.smooth)
_SIGMA_FLOOR = 1e-3  # bandwidths below this are accepted at once (relplot's smECE eps)
_REFINE = 10  # bisection steps (relplot's search_param)
_MESH = 200  # least number of points the error is evaluated at (relplot's smECE_mesh_pts)


def _points(stats: BinStats, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(positions, counts, residual sums) of the positive and negative voxels of each
    non-empty fine bin of one class."""
    n = stats.count[index].astype(np.float64)
    sum_p, sum_y, sum_py = stats.sum_p[index], stats.sum_y[index], stats.sum_py[index]
    n_neg = n - sum_y
    positions, counts, residuals = [], [], []
    for weight, sum_conf, residual in ((sum_y, sum_py, sum_py - sum_y),
                                       (n_neg, sum_p - sum_py, sum_p - sum_py)):
        keep = weight > 0
        positions.append(np.clip(sum_conf[keep] / weight[keep], 0.0, 1.0))
        counts.append(weight[keep])
        residuals.append(residual[keep])
    return np.concatenate(positions), np.concatenate(counts), np.concatenate(residuals)


def _smoothed(positions, weights, sigma: float, x_eval: np.ndarray) -> np.ndarray:
    """Weights spread linearly onto a grid, convolved with a Gaussian reflected at 0 and 1,
    read at ``x_eval`` by linear interpolation (relplot's ReflectedGaussianKernel.apply)."""
    size = max(2000, round(20 / sigma)) // 2 + 1
    scaled = positions * (size - 1)
    cell = np.clip(scaled.astype(np.int64), 0, size - 2)
    frac = scaled - cell
    grid = np.zeros(size)
    np.add.at(grid, cell, (1 - frac) * weights)
    np.add.at(grid, cell + 1, frac * weights)
    t = np.linspace(0, 1, size)
    kernel = np.exp(-(t - 0.5) ** 2 / (2 * sigma**2)) / (np.sqrt(2 * np.pi) * sigma)
    extended = np.concatenate([grid[::-1][:-1], grid, grid[::-1][1:]])
    smooth = np.convolve(extended, kernel, "valid")[size // 2: size // 2 + size]
    index = np.clip((x_eval * (size - 1)).astype(np.int64), 0, size - 2)
    step = 1 / (size - 1)
    rest = (x_eval - index * step) / step
    return smooth[index] * (1 - rest) + smooth[index + 1] * rest


def _smooth_ece_at(positions, counts, residuals, sigma: float) -> float:
    x_eval = np.linspace(0, 1, max(round(10 / sigma), _MESH))
    smoothed = _smoothed(positions, residuals, sigma, x_eval)
    density = _smoothed(positions, counts, sigma, x_eval) + _SMOOTH_EPS
    return float(np.sum(np.abs(smoothed / density) * density) / np.sum(density))


def smooth_ece(stats: BinStats, class_=0, *, sigma: float | None = None,
               return_width: bool = False):
    """Smooth ECE of one class (name or index) from (fine) hard-binned statistics; NaN
    without voxels.  ``sigma``: a fixed bandwidth instead of the self-consistent one;
    ``return_width``: return ``(value, sigma)``.

    >>> from calibviz import bin_image
    >>> s = bin_image(np.linspace(0.01, 0.99, 99), np.arange(99) % 2 == 0, n_bins=600)
    >>> round(smooth_ece(s), 3)  # relplot.smECE on these voxels: 0.2088
    0.209
    """
    stats = one_stats(stats, "smooth_ece")
    if stats.binning != "hard":
        raise ValueError("smooth ECE needs hard-binned statistics (voxel counts per bin)")
    index = stats.class_index(class_)
    points = _points(stats, index)
    if points[1].sum() <= 0:
        return (np.nan, np.nan) if return_width else np.nan
    if sigma is None:
        def too_small(alpha: float) -> bool:
            return alpha < _SIGMA_FLOOR or alpha < _smooth_ece_at(*points, alpha)

        sigma = 1.0
        if not too_small(1.0):
            high, low = 1.0, 0.0
            for _ in range(_REFINE):
                middle = (high + low) / 2
                if too_small(middle):
                    low = middle
                else:
                    high = middle
            sigma = high
    value = _smooth_ece_at(*points, float(sigma))
    return (value, float(sigma)) if return_width else value


# ------------------------------------------------------------------ top-label, class-wise
def top_label_stats(probs: np.ndarray, labels: np.ndarray, *, n_bins: int = 20,
                    classes=None, mask=None, closure: str = "right") -> BinStats:
    """One ``top-label`` row from a whole probability map ``(C, *spatial)``: confidence the
    largest probability, outcome ``argmax == label`` (ties: the first class, as
    ``np.argmax``; label value of channel ``c``: ``classes[c]``, default ``c``).  Streaming
    code keeps the running max and argmax instead and bins the same row."""
    from .binning import bin_image

    probs = np.asarray(probs)
    values = np.arange(probs.shape[0]) if classes is None else np.asarray(classes)
    confidence = probs.max(axis=0)
    correct = values[probs.argmax(axis=0)] == np.asarray(labels)
    return bin_image(confidence[None], correct[None], n_bins=n_bins, mask=mask,
                     closure=closure, class_names=[TOP_LABEL])


def top_label_ece(stats: BinStats, row=TOP_LABEL) -> float:
    """ECE of the top-label row (by name, or the only row): the marginal formula on a row
    whose confidence is the max probability and whose outcome is ``argmax == label``."""
    stats = one_stats(stats, "top_label_ece")
    if row == TOP_LABEL and TOP_LABEL not in stats.class_names and stats.n_classes == 1:
        row = 0
    return float(ece(stats)[stats.class_index(row)])


def classwise_ece(stats: BinStats, classes=None) -> float:
    """Class-wise ECE: the mean over ``classes`` (default all, a ``top-label`` row left out)
    of the marginal one-vs-rest ECEs, NaN classes skipped; NaN when none has a value."""
    stats = one_stats(stats, "classwise_ece")
    if classes is None:
        classes = [n for n in stats.class_names if n != TOP_LABEL]
    values = ece(stats)[[stats.class_index(c) for c in classes]]
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


def dataset_classwise_ece(stats, *, absent: str | None = None) -> float:
    """Class-wise ECE of a dataset: per image the mean over its classes (not a ``top-label``
    row) of the marginal ECEs, then the mean over images (NaN skipped at both steps).
    ``absent=None``: a Results' own policy, else ``"include"``."""
    import warnings

    from .aggregate import absent_policy, per_image_metrics

    absent = absent_policy(stats, absent)
    stats = list(getattr(stats, "stats", stats))
    if not stats:
        return float("nan")
    values = per_image_metrics(stats, absent=absent)["ece"][:, stats[0].class_rows]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows
        return float(np.nanmean(np.nanmean(values, axis=1)))


__all__ = ["TOP_LABEL", "classwise_ece", "dataset_classwise_ece", "smooth_ece",
           "top_label_ece", "top_label_stats"]
