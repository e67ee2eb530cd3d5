"""Seeded bootstrap intervals over images (spec §4, §10), vectorised and memory-bounded.

Resampling images with replacement is done with *multiplicity weights*: resample ``r`` is a
row ``w[r, i]`` = how often image ``i`` was drawn, so a resampled mean is ``w @ x / n`` and a
resampled pooled sum is ``w @ sums``. Everything is matrix products over chunks of
resamples; no Python loop runs per resample or per image.

Draw order (so a plain loop can reproduce it): ``rng = numpy.random.default_rng(seed)``;
for each resample in turn, ``n`` uniform doubles ``u = rng.random(n)`` and the drawn images
``floor(u · n)``. Chunking does not change the draws (``rng.random`` of a ``[k, n]`` block
is the same stream as ``k`` calls of ``rng.random(n)``).

Intervals are percentile intervals (``numpy.percentile``, linear interpolation) of the
resampled statistic at ``(1 − confidence)/2`` and ``(1 + confidence)/2``; resamples in
which the statistic is NaN are skipped. ``n_bootstrap = 0`` gives NaN intervals.

Every interval calibviz prints or saves is made honest by
:func:`~calibviz.intervals.honest_interval` (re-exported here): NaN for fewer than two images
or when it does not contain its estimate (:mod:`calibviz.intervals`).

>>> import numpy as np
>>> x = np.array([[1.0], [2.0], [3.0], [4.0]])
>>> low, high = macro_mean_interval(x, n_bootstrap=2000, seed=0)
>>> bool(1.0 <= low[0] < 2.5 < high[0] <= 4.0)
True
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .aggregate import absent_policy, included
from .intervals import honest_interval, images_per_class
from .metrics import debiased_ce
from .options import check_confidence, check_resamples, check_seed
from .stats import BinStats

#: Approximate bytes the per-chunk working arrays may take (weights and resampled sums).
CHUNK_BYTES = 64 * 2**20
#: Most bytes the resampled statistics may take (every resample is kept for the percentiles).
SAMPLES_BYTES = 2 * 2**30
#: The metrics :func:`metrics_from_sums` can compute from pooled sums.
SUM_METRICS = ("ece", "ace", "mce", "dce", "brier", "dice")


# --------------------------------------------------------------------------- resampling
def check_settings(n_bootstrap: int, confidence: float = 0.95, seed: int | None = 0) -> None:
    """Raise ``ValueError`` (naming the setting) unless ``n_bootstrap`` is an integer from 0 to
    :data:`~calibviz.options.MAX_RESAMPLES`, ``0 < confidence < 1`` and ``seed`` an integer
    from 0 to :data:`~calibviz.options.MAX_SEED` (or None)."""
    check_resamples(n_bootstrap)
    check_confidence(confidence)
    check_seed(seed)


def check_memory(n_bootstrap: int, width: int, what: str, budget: int = SAMPLES_BYTES) -> None:
    """Raise ``ValueError`` when ``n_bootstrap`` resamples of ``width`` float64 values each
    (kept whole: percentiles need every resample) would take more than ``budget`` bytes."""
    needed = 8 * int(n_bootstrap) * int(width)
    if needed > budget:
        most = budget // (8 * max(int(width), 1))
        raise ValueError(f"{n_bootstrap} bootstrap resamples of {what} ({width} values each) "
                         f"would take {needed / 2**30:.1f} GiB (at most {budget / 2**30:g} "
                         f"GiB); use at most {most} resamples")


def check_summary_memory(n_bootstrap: int, n_classes: int) -> None:
    """``ValueError`` naming ``--bootstrap`` when a run's summary (every resample of
    :data:`SUM_METRICS` for ``n_classes`` classes kept) would exceed :data:`SAMPLES_BYTES`:
    checked once a run knows its classes, before its cases are evaluated."""
    width = len(SUM_METRICS) * int(n_classes)
    needed = 8 * int(n_bootstrap) * width
    if needed > SAMPLES_BYTES:
        most = SAMPLES_BYTES // (8 * width)
        raise ValueError(f"--bootstrap {n_bootstrap}: the summary's intervals of {n_classes} "
                         f"classes would keep {needed / 2**30:.1f} GiB of resamples (at most "
                         f"{SAMPLES_BYTES / 2**30:g} GiB); use --bootstrap {most} or fewer "
                         "(0: no intervals)")


def chunk_size(n_images: int, width: int, n_bootstrap: int,
               budget: int = CHUNK_BYTES) -> int:
    """Resamples per chunk so that drawing the ``[chunk, n_images]`` weights (three arrays of
    that size at most) plus ``[chunk, width]`` float64 results and a few temporaries of that
    size stay within ``budget`` bytes."""
    per_row = 8 * (3 * n_images + 4 * max(width, 1))
    return int(max(1, min(n_bootstrap, budget // per_row)))


def resample_weights(n_images: int, n_bootstrap: int, seed: int | None = 0, *,
                     chunk: int | None = None) -> Iterator[np.ndarray]:
    """Yield float64 multiplicity matrices ``[k, n_images]`` (rows sum to ``n_images``),
    ``k <= chunk``, for ``n_bootstrap`` resamples in total, in the module's draw order.

    >>> w = np.vstack(list(resample_weights(5, 3, seed=1, chunk=2)))
    >>> w.shape, w.sum(axis=1).tolist()
    ((3, 5), [5.0, 5.0, 5.0])
    """
    if n_images < 1:
        raise ValueError("cannot resample an empty set of images")
    n_bootstrap = check_resamples(n_bootstrap)
    rng = np.random.default_rng(check_seed(seed))
    chunk = chunk or chunk_size(n_images, 0, n_bootstrap)
    done = 0
    while done < n_bootstrap:
        k = min(chunk, n_bootstrap - done)
        uniform = rng.random((k, n_images))
        uniform *= n_images
        drawn = uniform.astype(np.int64)
        del uniform
        np.minimum(drawn, n_images - 1, out=drawn)
        drawn += n_images * np.arange(k)[:, None]  # row r counts into its own block
        counts = np.bincount(drawn.ravel(), minlength=k * n_images)
        del drawn
        yield counts.reshape(k, n_images).astype(np.float64)
        done += k


def percentile_interval(samples: np.ndarray, confidence: float = 0.95
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over axis 0 of ``samples [R, ...]``, NaN resamples skipped;
    NaN where no resample is finite (or ``R = 0``)."""
    samples = np.asarray(samples, dtype=np.float64)
    if samples.shape[0] == 0:
        nan = np.full(samples.shape[1:], np.nan)
        return nan, nan.copy()
    tail = 100 * (1 - confidence) / 2
    if not np.isnan(samples).any():  # the common case; nanpercentile loops per column
        low, high = np.percentile(samples, [tail, 100 - tail], axis=0)
        return low, high
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanpercentile(samples, [tail, 100 - tail], axis=0)
    return low, high


def bootstrap_means(values: np.ndarray, n_bootstrap: int = 10000, seed: int | None = 0, *,
                    chunk: int | None = None) -> np.ndarray:
    """float64 ``[n_bootstrap, K]``: NaN-skipping column means of image-resamples of
    ``values [n_images, K]`` (a resample's NaN entries are left out of its mean; NaN when
    all drawn values of a column are NaN)."""
    return bootstrap_samples(n_bootstrap, seed, values=values, chunk=chunk)[0]


def macro_mean_interval(values: np.ndarray, n_bootstrap: int = 10000, seed: int | None = 0,
                        confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap interval of the NaN-skipping mean of each column of
    ``values [n_images, K]`` (per-image metric values, or paired differences): images are
    resampled (rows), NaN entries skipped per column. Returns ``(low [K], high [K])``, made
    honest by :func:`~calibviz.intervals.honest_interval` (NaN for a column with fewer than
    two finite values, or whose interval misses its mean).
    """
    values = np.asarray(values, dtype=np.float64)
    values = values[:, None] if values.ndim == 1 else values
    low, high = macro_mean_percentiles(values, n_bootstrap, seed, confidence)
    finite = np.isfinite(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(finite, values, 0.0).sum(axis=0) / finite.sum(axis=0)
    return honest_interval(means, low, high, finite.sum(axis=0))[:2]


def macro_mean_percentiles(values: np.ndarray, n_bootstrap: int = 10000,
                           seed: int | None = 0, confidence: float = 0.95
                           ) -> tuple[np.ndarray, np.ndarray]:
    """The plain percentile interval behind :func:`macro_mean_interval`, before the honesty
    rules: ``(low [K], high [K])``, NaN for no resamples or no images."""
    check_settings(n_bootstrap, confidence, seed)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    if n_bootstrap == 0 or values.shape[0] == 0:
        nan = np.full(values.shape[1], np.nan)
        return nan, nan.copy()
    return percentile_interval(bootstrap_means(values, n_bootstrap, seed), confidence)


# --------------------------------------------------------------------------- pooled sums
#: The SumArrays fields each metric needs (what is resampled is only what is asked for).
NEEDS = {
    "ece": ("count", "excess"), "ace": ("count", "excess"), "mce": ("count", "excess"),
    "brier": ("count", "brier_sum"), "dice": ("tp", "fp", "fn"),
    "dce": ("count", "excess", "sum_y"),
}
FIELDS = ("count", "excess", "brier_sum", "tp", "fp", "fn", "sum_y")


@dataclass(frozen=True)
class SumArrays:
    """The least additive sums that ECE, ACE, MCE, Brier and Dice need, float64, with any
    leading batch axes (images, resamples):

    count : ``[..., C, B]`` voxels (soft weights) per bin
    excess : ``[..., C, B]`` ``Σp − Σy`` per bin (``n·|p̄ − ȳ|`` is its absolute value)
    brier_sum : ``[..., C]`` ``Σ(p² − 2p·y + y)`` over all bins
    tp, fp, fn : ``[..., C]`` confusion counts at ``p > 0.5``

    Fields a computation does not need may be ``None``.
    """

    count: np.ndarray | None
    excess: np.ndarray | None = None
    brier_sum: np.ndarray | None = None
    tp: np.ndarray | None = None
    fp: np.ndarray | None = None
    fn: np.ndarray | None = None
    sum_y: np.ndarray | None = None
    binning: str = "hard"
    empty_weight: float = 0.01

    @classmethod
    def stack(cls, stats: Sequence[BinStats], *, absent: str | None = None) -> SumArrays:
        """``[n_images, C, B]`` sums of per-image BinStats or a Results (its run's policy by
        default); classes the absent policy leaves out are zeroed, as ``pool`` does."""
        absent = absent_policy(stats, absent)
        stats = list(getattr(stats, "stats", stats))
        if not stats:
            raise ValueError("no images to stack (the list of BinStats is empty)")
        keep = np.stack([included(s, absent) for s in stats]).astype(np.float64)

        def stacked(name):
            return np.stack([getattr(s, name) for s in stats]).astype(np.float64)

        count, sum_p, sum_y = stacked("count"), stacked("sum_p"), stacked("sum_y")
        brier_sum = (stacked("sum_p2") - 2 * stacked("sum_py") + sum_y).sum(axis=-1)
        return cls(
            count=count * keep[..., None], excess=(sum_p - sum_y) * keep[..., None],
            brier_sum=brier_sum * keep, tp=stacked("tp") * keep, fp=stacked("fp") * keep,
            fn=stacked("fn") * keep, sum_y=sum_y * keep[..., None], binning=stats[0].binning,
            empty_weight=stats[0].empty_weight,
        )

    @property
    def n_classes(self) -> int:
        for name in FIELDS:
            value = getattr(self, name)
            if value is not None:
                return value.shape[-2] if name in ("count", "excess", "sum_y") else value.shape[-1]
        raise ValueError("SumArrays holds no field")

    @property
    def n_images(self) -> int:
        """Length of the leading axis."""
        return next(getattr(self, f) for f in FIELDS if getattr(self, f) is not None).shape[0]

    def flat(self, fields: Sequence[str] = FIELDS) -> np.ndarray:
        """float64 ``[n, F]``: the given sums of each image in one row (for
        ``weights @ flat``)."""
        n = self.n_images
        return np.concatenate([getattr(self, f).reshape(n, -1) for f in fields], axis=1)

    def unflat(self, rows: np.ndarray, fields: Sequence[str] = FIELDS) -> SumArrays:
        """Inverse of :meth:`flat` for resampled rows ``[k, F]`` -> sums ``[k, C, B]``."""
        k, start, parts = rows.shape[0], 0, {}
        for name in fields:
            shape = getattr(self, name).shape[1:]
            size = int(np.prod(shape))
            parts[name] = rows[:, start:start + size].reshape(k, *shape)
            start += size
        return SumArrays(**parts, binning=self.binning, empty_weight=self.empty_weight)

    def total(self) -> SumArrays:
        """The pooled sums over axis 0."""
        parts = {f: None if getattr(self, f) is None else getattr(self, f).sum(axis=0)
                 for f in FIELDS}
        return SumArrays(**parts, binning=self.binning, empty_weight=self.empty_weight)


def needed_fields(names: Sequence[str]) -> tuple[str, ...]:
    """The :class:`SumArrays` fields the metrics ``names`` need, in a fixed order."""
    unknown = [n for n in names if n not in SUM_METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; known: {', '.join(SUM_METRICS)}")
    wanted = {f for n in names for f in NEEDS[n]}
    return tuple(f for f in FIELDS if f in wanted)


def metrics_from_sums(sums: SumArrays, names: Sequence[str] = SUM_METRICS
                      ) -> dict[str, np.ndarray]:
    """``{name: float64 [..., C]}``: ECE, ACE, MCE, Brier and Dice of summed statistics with
    any leading batch axes; the same numbers as :mod:`calibviz.metrics` on a BinStats
    holding those sums (spec §3), up to rounding.

    >>> from calibviz import bin_image, ece
    >>> s = bin_image(np.array([[0.7, 0.3], [0.1, 0.9]]), np.array([[1, 0], [0, 1]]), n_bins=5,
    ...               classes=[1])
    >>> bool(np.allclose(metrics_from_sums(SumArrays.stack([s]).total())["ece"], ece(s)))
    True
    """
    needed_fields(names)
    out: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        if {"ece", "ace", "mce"} & set(names):
            count = sums.count
            nonempty = count >= sums.empty_weight if sums.binning == "soft" else count > 0
            weighted_gaps = np.where(nonempty, np.abs(sums.excess), 0.0)  # n_k · d_k
            gaps = weighted_gaps / np.where(nonempty, count, 1.0)
            n_nonempty = nonempty.sum(axis=-1)
            total = np.where(nonempty, count, 0.0).sum(axis=-1)
            if "ece" in names:
                out["ece"] = np.where(total > 0, weighted_gaps.sum(axis=-1) / total, np.nan)
            if "ace" in names:
                out["ace"] = np.where(n_nonempty > 0, gaps.sum(axis=-1) / n_nonempty, np.nan)
            if "mce" in names:
                out["mce"] = np.where(n_nonempty > 0,
                                      np.where(nonempty, gaps, -np.inf).max(axis=-1), np.nan)
        if "brier" in names:
            voxels = sums.count.sum(axis=-1)
            out["brier"] = np.where(voxels > 0, sums.brier_sum / voxels, np.nan)
        if "dce" in names:
            nonempty = sums.count >= sums.empty_weight if sums.binning == "soft" else sums.count > 0
            out["dce"] = debiased_ce(sums.count, sums.excess + sums.sum_y, sums.sum_y, nonempty)
        if "dice" in names:
            denominator = 2 * sums.tp + sums.fp + sums.fn
            out["dice"] = np.where(denominator > 0, 2 * sums.tp / denominator, np.nan)
    return {name: out[name] for name in names}


def micro_samples(stacks: Sequence[SumArrays], names: Sequence[str] = SUM_METRICS,
                  n_bootstrap: int = 10000, seed: int | None = 0
                  ) -> list[dict[str, np.ndarray]]:
    """Micro metrics of image-resamples, ``[{name: float64 [n_bootstrap, C]}]`` one dict per
    stack. All stacks (``[n_images, C, B]``, same images in the same order, e.g. two models
    on paired cases) share the same resamples, so their differences are paired."""
    return bootstrap_samples(n_bootstrap, seed, stacks=stacks, names=names)[1]


def bootstrap_samples(n_bootstrap: int = 10000, seed: int | None = 0, *,
                      values: np.ndarray | None = None, stacks: Sequence[SumArrays] = (),
                      names: Sequence[str] = SUM_METRICS, chunk: int | None = None
                      ) -> tuple[np.ndarray | None, list[dict[str, np.ndarray]]]:
    """One pass of image-resamples shared by per-image values and pooled sums.

    values : ``[n_images, K]`` per-image values (NaN allowed) -> NaN-skipping resampled
        column means ``[n_bootstrap, K]`` (``None`` when not given)
    stacks : per-image sums ``[n_images, C, B]`` (same images) -> micro ``names`` of each
        resample, ``[{name: [n_bootstrap, C]}]`` one dict per stack

    Every resample is a row of multiplicity weights (see :func:`resample_weights`); each
    chunk is one matrix product ``weights @ [values | counts | sums]``, so only the sums the
    metrics need are resampled and the weights are drawn once for everything.
    """
    n_bootstrap = check_resamples(n_bootstrap)
    check_seed(seed)
    blocks, n = [], None
    if values is not None:
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2:
            raise ValueError(f"values must have shape [n_images, K], got {values.shape}")
        finite = np.isfinite(values)
        blocks += [np.where(finite, values, 0.0), finite.astype(np.float64)]
        n = values.shape[0]
    fields = needed_fields(names) if stacks else ()
    for stack in stacks:
        if n is not None and stack.n_images != n:
            raise ValueError("all inputs must hold the same images (paired cases): "
                             f"{stack.n_images} vs {n}")
        n = stack.n_images
        blocks.append(stack.flat(fields))
    if n is None:
        raise ValueError("nothing to resample: give values or stacks")
    widths = [block.shape[1] for block in blocks]
    joined = np.concatenate(blocks, axis=1) if len(blocks) > 1 else blocks[0]
    del blocks
    kept = sum(s.n_classes for s in stacks) * len(names)
    kept += 0 if values is None else values.shape[1]
    check_memory(n_bootstrap, kept, "the intervals")
    means = None if values is None else np.empty((n_bootstrap, values.shape[1]))
    micro = [{name: np.empty((n_bootstrap, s.n_classes)) for name in names} for s in stacks]
    if n_bootstrap == 0:
        return means, micro
    chunk = chunk or chunk_size(n, joined.shape[1], n_bootstrap)
    start = 0
    for weights in resample_weights(n, n_bootstrap, seed, chunk=chunk):
        stop = start + len(weights)
        resampled = weights @ joined
        offset = 0
        if means is not None:
            k = widths[0]
            total, number = resampled[:, :k], resampled[:, k:2 * k]
            with np.errstate(invalid="ignore", divide="ignore"):
                means[start:stop] = np.where(number > 0, total / number, np.nan)
            offset = 2 * k
        for stack, width, out in zip(stacks, widths[2 if means is not None else 0:], micro,
                                     strict=True):
            part = stack.unflat(resampled[:, offset:offset + width], fields)
            for name, value in metrics_from_sums(part, names).items():
                out[name][start:stop] = value
            offset += width
        start = stop
    return means, micro


def micro_interval(stats: Sequence[BinStats], metrics: Sequence[str] = SUM_METRICS,
                   n_bootstrap: int = 10000, seed: int | None = 0, *,
                   confidence: float = 0.95, absent: str | None = None
                   ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Bootstrap interval of each micro (pooled-sums) metric per class: images are
    resampled and their sums added, no voxel is read again. Returns
    ``{metric: (low [C], high [C])}``."""
    check_settings(n_bootstrap, confidence, seed)
    stack = SumArrays.stack(stats, absent=absent)
    if n_bootstrap == 0:
        nan = np.full(stack.n_classes, np.nan)
        return {name: (nan, nan.copy()) for name in metrics}
    samples = micro_samples([stack], metrics, n_bootstrap, seed)[0]
    observed = metrics_from_sums(stack.total(), metrics)
    carried = images_per_class(stack)
    return {name: honest_interval(observed[name], *percentile_interval(samples[name],
                                                                       confidence), carried)[:2]
            for name in metrics}


# --------------------------------------------------------------------------- curve band
def check_band(n_bootstrap: int, n_classes: int, n_bins: int) -> None:
    """``ValueError`` unless ``n_bootstrap`` resamples of the pooled curves of ``n_classes``
    classes (and all classes pooled) on ``n_bins`` bins fit :data:`SAMPLES_BYTES`."""
    check_resamples(n_bootstrap, "band")
    check_memory(n_bootstrap, (n_classes + 1) * n_bins, "the pooled curves' band")


def pooled_frequency_band(stats: Sequence[BinStats], n_bootstrap: int = 2000,
                          seed: int | None = 0, *, confidence: float = 0.95,
                          absent: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Image-bootstrap band of the pooled (micro) reliability curve: per class and bin the
    percentile interval of ``Σ sum_y / Σ count`` over resampled images, and as a last row
    the same for all classes pooled. Returns ``(low, high)``, float64 ``[C + 1, B]`` (NaN
    where resamples leave the bin empty)."""
    check_settings(n_bootstrap, confidence, seed)
    stack = SumArrays.stack(stats, absent=absent)  # classes left out: zero
    n_images, n_classes, n_bins = stack.count.shape
    check_band(n_bootstrap, n_classes, n_bins)
    count = np.concatenate([stack.count, stack.count.sum(axis=1, keepdims=True)], axis=1)
    sum_y = np.concatenate([stack.sum_y, stack.sum_y.sum(axis=1, keepdims=True)], axis=1)
    flat_count = count.reshape(n_images, -1).astype(np.float64)
    flat_y = sum_y.reshape(n_images, -1)
    samples = np.empty((n_bootstrap, flat_count.shape[1]))
    start = 0
    for weights in resample_weights(n_images, n_bootstrap, seed):
        total = weights @ flat_count
        with np.errstate(invalid="ignore", divide="ignore"):
            samples[start:start + len(weights)] = np.where(total > 0,
                                                           (weights @ flat_y) / total, np.nan)
        start += len(weights)
    low, high = percentile_interval(samples, confidence)
    shape = (n_classes + 1, n_bins)
    return low.reshape(shape), high.reshape(shape)
