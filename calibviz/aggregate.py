"""Dataset level: pooling (micro), macro summaries over images, the absent-class policy and
the dataset reliability histogram (spec §4, §5, §7)."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from contextlib import contextmanager

import numpy as np

from .metrics import CALIBRATION_METRICS, METRICS, gap_metrics
from .options import ABSENT_POLICIES, check_choice
from .stats import BinStats, ReliabilityHistogram

POOLINGS = ("sum", "reference")


def _check_policy(absent: str) -> str:
    return check_choice("absent", absent, ABSENT_POLICIES)


def _as_list(stats: Iterable[BinStats]) -> list[BinStats]:
    stats = list(stats)
    if not stats:
        raise ValueError("no images to aggregate (the list of BinStats is empty)")
    for other in stats[1:]:
        stats[0].compatible_with(other)
    return stats


def included(stats: BinStats, absent: str = "include") -> np.ndarray:
    """bool ``[C]``: which classes of this image take part under the absent policy."""
    if _check_policy(absent) == "exclude":
        return ~stats.absent
    return np.ones(stats.n_classes, dtype=bool)


def pool(stats: Iterable[BinStats], *, absent: str = "include") -> BinStats:
    """Micro pooling: the per-bin sums of all images added (classes absent from an image
    are left out when ``absent="exclude"``).

    >>> import numpy as np
    >>> from calibviz import bin_image, ece
    >>> a = bin_image(np.full(8, 0.9), np.ones(8, int), n_bins=10)
    >>> b = bin_image(np.full(2, 0.9), np.zeros(2, int), n_bins=10)
    >>> round(float(ece(pool([a, b]))[0]), 6)
    0.1
    """
    stats = _as_list(stats)
    _check_policy(absent)
    total = BinStats.zeros(
        stats[0].n_classes, stats[0].edges, class_names=stats[0].class_names,
        closure=stats[0].closure, binning=stats[0].binning,
        empty_weight=stats[0].empty_weight,
    )
    for image in stats:
        keep = included(image, absent)
        total = total + (image if keep.all() else image.mask_classes(keep))
    return total


def reference_pooled_curve(
    stats: Iterable[BinStats], *, absent: str = "include"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The reference implementation's micro pooling, for reproducing its numbers only.

    Returns ``(mean_confidence, frequency, count)`` ``[C, B]`` where confidence and frequency
    are *unweighted* means over images of the per-image bin means (images without data in a
    bin skipped) and count is the summed voxel count. calibviz's own micro values use
    :func:`pool` (count-weighted) instead.
    """
    stats = _as_list(stats)
    _check_policy(absent)
    conf = np.stack([s.mean_confidence for s in stats])
    freq = np.stack([s.frequency for s in stats])
    count = np.stack([s.count for s in stats]).astype(np.float64)
    if absent == "exclude":
        drop = np.stack([~included(s, absent) for s in stats])[:, :, None]
        conf = np.where(drop, np.nan, conf)
        freq = np.where(drop, np.nan, freq)
        count = np.where(drop, 0.0, count)
    with np.errstate(invalid="ignore"), _quiet_nanmean():
        return np.nanmean(conf, axis=0), np.nanmean(freq, axis=0), count.sum(axis=0)


@contextmanager
def _quiet_nanmean():
    """Silence 'Mean of empty slice' from nan-reductions over all-NaN bins (they stay NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def micro_metrics(
    stats: Iterable[BinStats], *, absent: str = "include", pooling: str = "sum"
) -> dict[str, np.ndarray]:
    """Metrics of the pooled bins, ``{name: float64 [C]}``.

    ``pooling="sum"`` (default) adds the sufficient statistics; ``"reference"`` reproduces the
    reference implementation's unweighted-confidence pooling (ECE, ACE, MCE only).
    """
    check_choice("pooling", pooling, POOLINGS)
    stats = _as_list(stats)
    if pooling == "sum":
        pooled = pool(stats, absent=absent)
        return {name: function(pooled) for name, function in METRICS.items()}
    conf, freq, count = reference_pooled_curve(stats, absent=absent)
    values = gap_metrics(conf, freq, count, np.isfinite(conf - freq))
    return dict(zip(("ece", "ace", "mce"), values, strict=True))


def per_image_metrics(
    stats: Sequence[BinStats], *, absent: str = "include"
) -> dict[str, np.ndarray]:
    """``{name: float64 [n_images, C]}`` of every registered metric.

    With ``absent="exclude"`` the calibration metrics of classes absent from an image's
    ground truth are NaN (Dice keeps its own rule: NaN only when truth and prediction
    are both empty).
    """
    stats = _as_list(stats)
    _check_policy(absent)
    out = {name: np.stack([fn(s) for s in stats]) for name, fn in METRICS.items()}
    if absent == "exclude":
        drop = np.stack([s.absent for s in stats])
        for name in CALIBRATION_METRICS:
            out[name] = np.where(drop, np.nan, out[name])
    return out


def mean_over_classes(
    stats: Sequence[BinStats], metric: str = "ace", *, absent: str = "include"
) -> np.ndarray:
    """float64 ``[n_images]``: each image's ``metric`` averaged over its classes (NaN classes
    skipped; absent classes skipped when ``absent="exclude"``); NaN when no class has a value.
    Used to pick the worst cases."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    return class_mean(per_image_metrics(stats, absent=absent)[metric])


def summarize(values: np.ndarray) -> dict[str, np.ndarray]:
    """Macro statistics over images (axis 0) ignoring NaN: mean, median, max, min, 90th
    percentile, population std and the non-NaN count. ``values`` float ``[n_images, ...]``."""
    values = np.asarray(values, dtype=np.float64)
    notnans = np.isfinite(values).sum(axis=0)
    with _quiet_nanmean(), np.errstate(invalid="ignore"):
        return {
            "mean": np.nanmean(values, axis=0),
            "median": np.nanmedian(values, axis=0),
            "max": np.nanmax(values, axis=0) if values.size else np.nan,
            "min": np.nanmin(values, axis=0) if values.size else np.nan,
            "p90": np.nanpercentile(values, 90, axis=0),
            "std": np.nanstd(values, axis=0, ddof=0),
            "notnans": notnans.astype(np.float64),
        }


def class_mean(values: np.ndarray) -> np.ndarray:
    """float64 ``[n_images]``: per-image mean over classes, ignoring NaN classes."""
    values = np.asarray(values, dtype=np.float64)
    with _quiet_nanmean():
        return np.nanmean(values, axis=1)


def macro_summary(
    stats: Sequence[BinStats], *, absent: str = "include"
) -> dict[str, dict[str, np.ndarray]]:
    """``{metric: {statistic: float64 [C + 1]}}`` where the last entry summarises the
    per-image class mean."""
    per_image = per_image_metrics(stats, absent=absent)
    out = {}
    for name, values in per_image.items():
        with_mean = np.column_stack([values, class_mean(values)])
        out[name] = summarize(with_mean)
    return out


def _frequency_rows(frequency: np.ndarray, edges: np.ndarray, closure: str) -> np.ndarray:
    """Frequency bin (row) of each value with the same closure rule as the confidence bins."""
    inner = edges[1:-1]
    side = "left" if closure == "right" else "right"
    return np.searchsorted(inner, frequency, side=side)


def reliability_histogram(
    stats: Iterable[BinStats], *, absent: str = "include"
) -> ReliabilityHistogram:
    """The dataset reliability histogram (spec §7) of a list of per-image ``BinStats``.

    Each image adds one count per non-empty confidence bin (column) of each class, in the
    row of its observed frequency there. Adding images one by one and summing the
    histograms (``h1 + h2``) equals calling this on all of them.
    """
    stats = _as_list(stats)
    _check_policy(absent)
    first = stats[0]
    shape = (first.n_classes, first.n_bins, first.n_bins)
    counts = np.zeros(shape, dtype=np.int64)
    voxels = np.zeros(shape, dtype=first.count.dtype)
    classes = np.arange(first.n_classes)[:, None]
    columns = np.arange(first.n_bins)[None, :]
    for image in stats:
        keep = image.nonempty & included(image, absent)[:, None]
        freq = np.where(keep, image.frequency, 0.0)
        rows = _frequency_rows(freq, first.edges, first.closure)
        np.add.at(counts, (classes, rows, columns), keep.astype(np.int64))
        np.add.at(voxels, (classes, rows, columns), np.where(keep, image.count, 0))
    return ReliabilityHistogram(
        counts=counts, voxel_counts=voxels, pooled=pool(stats, absent=absent),
        n_images=len(stats),
    )
