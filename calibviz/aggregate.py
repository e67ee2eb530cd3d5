"""Dataset level: pooling (micro), macro summaries over images, the absent-class policy and
the dataset reliability histogram (spec §4, §5, §7).

Every function here takes per-image :class:`BinStats` or a :class:`~calibviz.Results`, and
``absent`` (the absent-class policy, spec §5): ``None`` (default) is the policy a Results' run
recorded (``options["absent"]``) and ``"include"`` for plain lists; an explicit policy wins.
Under ``"exclude"`` an image–class pair whose class is absent from the truth is NaN for every
metric, Dice included, and left out of the pooled sums; under ``"drop-case"`` so is every pair
of an image missing any class."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager

import numpy as np

from .metrics import METRICS, gap_metrics
from .options import ABSENT_POLICIES, check_choice, check_figure_bins
from .stats import TOP_LABEL, BinStats, ReliabilityHistogram

POOLINGS = ("sum", "reference")


def _check_policy(absent: str) -> str:
    return check_choice("absent", absent, ABSENT_POLICIES)


def _is_results(stats) -> bool:
    return hasattr(stats, "cases") and hasattr(stats, "stats") and hasattr(stats, "options")


def absent_policy(stats, absent: str | None = None) -> str:
    """The absent policy an aggregate uses: ``absent`` when given; else, for a
    :class:`~calibviz.Results`, the policy its run recorded (``options["absent"]``); else
    ``"include"``.  An explicit ``absent`` that differs from the run's recomputes the run's
    numbers under that policy."""
    if absent is None:
        options = stats.options if _is_results(stats) else None
        absent = (options or {}).get("absent") or "include"
    return _check_policy(absent)


def _as_list(stats: Iterable[BinStats]) -> list[BinStats]:
    if hasattr(stats, "cases") and hasattr(stats, "stats"):  # a Results: its images
        stats = stats.stats
    stats = list(stats)
    if not stats:
        raise ValueError("no images to aggregate (the list of BinStats is empty)")
    for other in stats[1:]:
        stats[0].compatible_with(other)
    return stats


def included(stats: BinStats, absent: str = "include") -> np.ndarray:
    """bool ``[C]``: which classes of this image take part under the absent policy."""
    policy = _check_policy(absent)
    if policy == "exclude":
        return ~stats.absent
    if policy == "drop-case":
        return np.full(stats.n_classes, not stats.absent.any())
    return np.ones(stats.n_classes, dtype=bool)


def dropped_cases(stats: Iterable[BinStats], absent: str | None = None) -> np.ndarray:
    """bool ``[n_images]``: images left out entirely (only under ``"drop-case"``).
    ``absent=None``: a Results' own policy, else ``"include"`` (:func:`absent_policy`)."""
    absent = absent_policy(stats, absent)
    if _is_results(stats):
        stats = stats.stats
    return np.array([absent == "drop-case" and bool(s.absent.any()) for s in stats],
                    dtype=bool)


def pool(stats: Iterable[BinStats], *, absent: str | None = None) -> BinStats:
    """Micro pooling: the per-bin sums of all images added (classes absent from an image
    are left out when ``absent="exclude"``, images missing any class when
    ``absent="drop-case"``).

    >>> import numpy as np
    >>> from calibviz import bin_image, ece
    >>> a = bin_image(np.full(8, 0.9), np.ones(8, int), n_bins=10)
    >>> b = bin_image(np.full(2, 0.9), np.zeros(2, int), n_bins=10)
    >>> round(float(ece(pool([a, b]))[0]), 6)
    0.1
    """
    absent = absent_policy(stats, absent)
    stats = _as_list(stats)
    total = BinStats.zeros(
        stats[0].n_classes, stats[0].edges, class_names=stats[0].class_names,
        closure=stats[0].closure, binning=stats[0].binning,
        empty_weight=stats[0].empty_weight,
    )
    for image, drop in zip(stats, dropped_cases(stats, absent)):
        if drop:
            continue
        keep = included(image, absent)
        total = total + (image if keep.all() else image.mask_classes(keep))
    return total


def reference_pooled_curve(
    stats: Iterable[BinStats], *, absent: str | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The reference implementation's micro pooling, for reproducing its numbers only.

    Returns ``(mean_confidence, frequency, count)`` ``[C, B]``, per class and bin:

    * confidence: the *unweighted* mean over images of each image's bin confidence ``p̄``
      (images without data in the bin skipped);
    * frequency: the *count-weighted* mean ``Σ ȳ·n / Σ n = Σ Σy / Σ n`` over the images with
      data in the bin;
    * count: the summed voxel count (soft weight) of those images.

    Bins without data in any image are NaN (count 0). Image–class pairs left out by the
    absent policy take no part. calibviz's own micro values use :func:`pool` instead, where
    confidence is count-weighted too.
    """
    absent = absent_policy(stats, absent)
    stats = _as_list(stats)
    conf = np.stack([s.mean_confidence for s in stats])
    keep = np.stack([s.nonempty & included(s, absent)[:, None] for s in stats])
    conf = np.where(keep, conf, np.nan)
    count = np.where(keep, np.stack([s.count for s in stats]), 0).astype(np.float64)
    sum_y = np.where(keep, np.stack([s.sum_y for s in stats]), 0.0)
    total = count.sum(axis=0)
    freq = np.full(total.shape, np.nan)
    np.divide(sum_y.sum(axis=0), total, out=freq, where=keep.any(axis=0))
    with np.errstate(invalid="ignore"), _quiet_nanmean():
        return np.nanmean(conf, axis=0), freq, total


@contextmanager
def _quiet_nanmean():
    """Silence 'Mean of empty slice' from nan-reductions over all-NaN bins (they stay NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def micro_metrics(
    stats: Iterable[BinStats], *, absent: str | None = None, pooling: str = "sum"
) -> dict[str, np.ndarray]:
    """Metrics of the pooled bins, ``{name: float64 [C]}``.

    ``pooling="sum"`` (default) adds the sufficient statistics; ``"reference"`` reproduces the
    reference implementation's pooling (ECE, ACE, MCE only): unweighted mean confidence over
    images, count-weighted frequency, ECE weighted by the summed counts
    (:func:`reference_pooled_curve`).
    """
    check_choice("pooling", pooling, POOLINGS)
    absent = absent_policy(stats, absent)
    stats = _as_list(stats)
    if pooling == "sum":
        pooled = pool(stats, absent=absent)
        return {name: function(pooled) for name, function in METRICS.items()}
    conf, freq, count = reference_pooled_curve(stats, absent=absent)
    values = gap_metrics(conf, freq, count, np.isfinite(conf - freq))
    return dict(zip(("ece", "ace", "mce"), values, strict=True))


class PerImageMetrics(Mapping):
    """``{metric: float64 [n_images, C]}``, read-only; :meth:`to_frame` gives the tidy table
    (one row per image and class: ``case``, ``class`` and one column per metric)."""

    def __init__(self, values: dict[str, np.ndarray], class_names: Sequence[str],
                 cases: Sequence[str] | None = None) -> None:
        self._values = values
        self.class_names = tuple(class_names)
        n_images = len(next(iter(values.values()))) if values else 0
        self.cases = tuple(cases) if cases is not None else tuple(map(str, range(n_images)))

    def __getitem__(self, name: str) -> np.ndarray:
        return self._values[name]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return (f"PerImageMetrics({', '.join(self._values)}: {len(self.cases)} images × "
                f"{len(self.class_names)} classes)")

    def to_frame(self):
        """The tidy pandas.DataFrame: one row per image and class (``case``, ``class``, one
        column per metric)."""
        import pandas as pd

        n_classes = len(self.class_names)
        table = {"case": np.repeat(self.cases, n_classes),
                 "class": np.tile(self.class_names, len(self.cases))}
        table.update({name: np.asarray(v).reshape(-1) for name, v in self._values.items()})
        return pd.DataFrame(table)


def per_image_metrics(
    stats: Sequence[BinStats], *, absent: str | None = None
) -> PerImageMetrics:
    """``{name: float64 [n_images, C]}`` of every registered metric (a read-only mapping;
    ``.to_frame()`` is the tidy pandas table). ``stats``: per-image
    :class:`BinStats`, or a :class:`~calibviz.Results` (its case ids then name the rows).

    With ``absent="exclude"`` every metric (Dice included) of a class absent from an
    image's ground truth is NaN, so the pair drops out of macro summaries as it drops out of
    :func:`pool`.  With ``absent="drop-case"`` every metric of an image missing any class is
    NaN (the whole row), so the image drops out of every summary.  Under ``"include"`` Dice
    keeps nnU-Net's rule (NaN when truth and prediction are both empty, 0 when only the truth
    is).  ``absent=None``: a Results' own policy, else ``"include"``.
    """
    cases = stats.cases if hasattr(stats, "cases") else None
    absent = absent_policy(stats, absent)
    stats = _as_list(stats)
    out = {name: np.stack([fn(s) for s in stats]) for name, fn in METRICS.items()}
    if absent != "include":  # left-out pairs are NaN for every metric, Dice included
        keep = np.stack([included(s, absent) for s in stats])
        out = {name: np.where(keep, values, np.nan) for name, values in out.items()}
    return PerImageMetrics(out, stats[0].class_names, cases)


def mean_over_classes(
    stats: Sequence[BinStats], metric: str = "ace", *, absent: str | None = None
) -> np.ndarray:
    """float64 ``[n_images]``: each image's ``metric`` averaged over its classes (NaN classes
    skipped; classes the absent policy leaves out skipped); NaN when no class has a value.
    Used to pick the worst cases."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    per_image = per_image_metrics(stats, absent=absent)
    return class_mean(per_image[metric], per_image.class_names)


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


def in_class_mean(class_names: Sequence[str] | None, n_classes: int) -> np.ndarray:
    """bool ``[C]``: the columns a class mean averages: every class but a ``top-label`` row
    (another question: the confidence of the predicted class, not one class's calibration;
    the paper's tests average the classes)."""
    if class_names is None:
        return np.ones(n_classes, dtype=bool)
    return np.array([name != TOP_LABEL for name in class_names], dtype=bool)


def class_mean(values: np.ndarray, class_names: Sequence[str] | None = None) -> np.ndarray:
    """float64 ``[n_images]``: per-image mean over classes (``class_names``: a ``top-label``
    column is left out), ignoring NaN classes."""
    values = np.asarray(values, dtype=np.float64)
    keep = in_class_mean(class_names, values.shape[-1])
    with _quiet_nanmean():
        return np.nanmean(values[..., keep], axis=-1)


def with_class_mean(values: np.ndarray,
                    class_names: Sequence[str] | None = None) -> np.ndarray:
    """float64 ``[n_images, C + 1]``: per-image values with their class mean appended."""
    return np.column_stack([values, class_mean(values, class_names)])


def macro_summary(
    stats: Sequence[BinStats], *, absent: str | None = None
) -> dict[str, dict[str, np.ndarray]]:
    """``{metric: {statistic: float64 [C + 1]}}`` where the last entry summarises the
    per-image class mean."""
    per_image = per_image_metrics(stats, absent=absent)
    return {name: summarize(with_class_mean(values, per_image.class_names))
            for name, values in per_image.items()}


_INT64_SAFE = 2**62


def _frequency_rows(
    sum_y: np.ndarray, count: np.ndarray, n_bins: int, closure: str
) -> np.ndarray:
    """int64 frequency bin (row) of each ``f = sum_y / count`` (same shape), placed exactly.

    Row ``r`` holds ``r/B < f <= (r+1)/B`` with ``f = 0`` in row 0 (``closure="right"``), or
    ``r/B <= f < (r+1)/B`` with ``f = 1`` in the last row (``"left"``).  When the counts are
    integers and every ``sum_y`` is integer-valued (hard binning: 0/1 outcomes) ``f`` is a
    ratio of integers and the row is computed with integer arithmetic:
    right ``max(0, ceil(sum_y·B / n) − 1)``, left ``min(B − 1, floor(sum_y·B / n))`` (Python
    integers when ``sum_y·B + n`` could overflow int64).  Otherwise (soft weights) ``f`` is
    compared with float64 edges ``k/B``.  Entries with ``count <= 0`` get row 0.
    """
    sum_y = np.asarray(sum_y, dtype=np.float64)
    count = np.asarray(count)
    valid = count > 0
    integral = (
        count.dtype.kind in "iu"
        and bool(np.isfinite(sum_y).all())
        and bool(np.all(sum_y == np.floor(sum_y)))
    )
    if not integral:
        frequency = np.zeros(sum_y.shape)
        np.divide(sum_y, count, out=frequency, where=valid)
        inner = np.arange(1, n_bins) / n_bins
        side = "left" if closure == "right" else "right"
        rows = np.searchsorted(inner, frequency, side=side)
        return np.where(valid, rows, 0).astype(np.int64)
    n = np.where(valid, count, 1)
    y = np.where(valid, sum_y, 0.0)
    if y.size and (np.abs(y).max() * n_bins + n.max() >= _INT64_SAFE):
        # Python integers: exact at any size (float64 sums are integers up to 2**1024)
        n = n.astype(object)
        y = np.array([int(v) for v in y.ravel()], dtype=object).reshape(y.shape)
    else:
        n = n.astype(np.int64)
        y = y.astype(np.int64)
    # right: ceil(y·B / n) − 1; left: floor(y·B / n)
    rows = (y * n_bins + n - 1) // n - 1 if closure == "right" else (y * n_bins) // n
    rows = np.clip(rows, 0, n_bins - 1).astype(np.int64)
    return np.where(valid, rows, 0)


def reliability_histogram(
    stats: Iterable[BinStats], *, absent: str | None = None
) -> ReliabilityHistogram:
    """The dataset reliability histogram (spec §7) of a list of per-image ``BinStats``.

    Each image adds one count per non-empty confidence bin (column) of each class, in the
    row of its observed frequency there. Adding images one by one and summing the
    histograms (``h1 + h2``) equals calling this on all of them.
    """
    absent = absent_policy(stats, absent)
    stats = _as_list(stats)
    first = stats[0]
    check_figure_bins(first.n_bins, "a dataset reliability histogram")
    shape = (first.n_classes, first.n_bins, first.n_bins)
    counts = np.zeros(shape, dtype=np.int64)
    voxels = np.zeros(shape, dtype=first.count.dtype)
    classes = np.arange(first.n_classes)[:, None]
    columns = np.arange(first.n_bins)[None, :]
    for image in stats:
        keep = image.nonempty & included(image, absent)[:, None]
        rows = _frequency_rows(image.sum_y, image.count, first.n_bins, first.closure)
        np.add.at(counts, (classes, rows, columns), keep.astype(np.int64))
        np.add.at(voxels, (classes, rows, columns), np.where(keep, image.count, 0))
    return ReliabilityHistogram(
        counts=counts, voxel_counts=voxels, pooled=pool(stats, absent=absent),
        n_images=int((~dropped_cases(stats, absent)).sum()),
    )
