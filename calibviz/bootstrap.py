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

from .aggregate import included
from .stats import BinStats

#: Approximate bytes the per-chunk working arrays may take (weights and resampled sums).
CHUNK_BYTES = 64 * 2**20
#: The metrics :func:`metrics_from_sums` can compute from pooled sums.
SUM_METRICS = ("ece", "ace", "mce", "brier", "dice")


# --------------------------------------------------------------------------- resampling
def check_settings(n_bootstrap: int, confidence: float) -> None:
    """Raise ``ValueError`` unless ``n_bootstrap >= 0`` is an integer and ``0 < confidence < 1``."""
    if int(n_bootstrap) != n_bootstrap or n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be a non-negative integer, got {n_bootstrap!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")


def chunk_size(n_images: int, width: int, n_bootstrap: int,
               budget: int = CHUNK_BYTES) -> int:
    """Resamples per chunk so that ``[chunk, n_images]`` weights plus ``[chunk, width]``
    float64 results (and a few temporaries of that size) stay within ``budget`` bytes."""
    per_row = 8 * (n_images + 4 * max(width, 1))
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
    rng = np.random.default_rng(seed)
    chunk = chunk or chunk_size(n_images, 0, n_bootstrap)
    done = 0
    while done < n_bootstrap:
        k = min(chunk, n_bootstrap - done)
        drawn = np.minimum((rng.random((k, n_images)) * n_images).astype(np.int64),
                           n_images - 1)
        flat = (drawn + n_images * np.arange(k)[:, None]).ravel()
        yield np.bincount(flat, minlength=k * n_images).reshape(k, n_images).astype(
            np.float64)
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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanpercentile(samples, [tail, 100 - tail], axis=0)
    return low, high


def bootstrap_means(values: np.ndarray, n_bootstrap: int = 10000, seed: int | None = 0, *,
                    chunk: int | None = None) -> np.ndarray:
    """float64 ``[n_bootstrap, K]``: NaN-skipping column means of image-resamples of
    ``values [n_images, K]`` (a resample's NaN entries are left out of its mean; NaN when
    all drawn values of a column are NaN)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"values must have shape [n_images, K], got {values.shape}")
    n, width = values.shape
    out = np.empty((n_bootstrap, width))
    if n_bootstrap == 0:
        return out
    finite = np.isfinite(values)
    filled = np.where(finite, values, 0.0)
    counts = finite.astype(np.float64)
    chunk = chunk or chunk_size(n, 2 * width, n_bootstrap)
    start = 0
    for weights in resample_weights(n, n_bootstrap, seed, chunk=chunk):
        stop = start + len(weights)
        total, number = weights @ filled, weights @ counts
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start:stop] = np.where(number > 0, total / number, np.nan)
        start = stop
    return out


def macro_mean_interval(values: np.ndarray, n_bootstrap: int = 10000, seed: int | None = 0,
                        confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap interval of the NaN-skipping mean of each column of
    ``values [n_images, K]`` (per-image metric values, or paired differences): images are
    resampled (rows), NaN entries skipped per column. Returns ``(low [K], high [K])``.
    """
    check_settings(n_bootstrap, confidence)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    if n_bootstrap == 0 or values.shape[0] == 0:
        nan = np.full(values.shape[1], np.nan)
        return nan, nan.copy()
    return percentile_interval(bootstrap_means(values, n_bootstrap, seed), confidence)


# --------------------------------------------------------------------------- pooled sums
@dataclass(frozen=True)
class SumArrays:
    """The additive sums of one or many BinStats with leading batch axes ``[..., C, B]``
    (``tp, fp, fn``: ``[..., C]``), all float64, plus the binning convention."""

    count: np.ndarray
    sum_p: np.ndarray
    sum_y: np.ndarray
    sum_p2: np.ndarray
    sum_py: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    binning: str = "hard"
    empty_weight: float = 0.01

    BIN_FIELDS = ("count", "sum_p", "sum_y", "sum_p2", "sum_py")
    CLASS_FIELDS = ("tp", "fp", "fn")

    @classmethod
    def stack(cls, stats: Sequence[BinStats], *, absent: str = "include") -> SumArrays:
        """``[n_images, C, B]`` sums of per-image BinStats; classes left out by the absent
        policy are zeroed, as :func:`calibviz.aggregate.pool` does."""
        if not stats:
            raise ValueError("no images to stack (the list of BinStats is empty)")
        keep = np.stack([included(s, absent) for s in stats]).astype(np.float64)
        arrays = {}
        for name in (*cls.BIN_FIELDS, *cls.CLASS_FIELDS):
            value = np.stack([getattr(s, name) for s in stats]).astype(np.float64)
            arrays[name] = value * (keep[:, :, None] if value.ndim == 3 else keep)
        return cls(**arrays, binning=stats[0].binning, empty_weight=stats[0].empty_weight)

    @property
    def n_classes(self) -> int:
        return self.count.shape[-2]

    @property
    def n_bins(self) -> int:
        return self.count.shape[-1]

    def flat(self) -> np.ndarray:
        """float64 ``[n, F]``: every sum of each image in one row (for ``weights @ flat``)."""
        n = self.count.shape[0]
        return np.concatenate([getattr(self, f).reshape(n, -1)
                               for f in (*self.BIN_FIELDS, *self.CLASS_FIELDS)], axis=1)

    def unflat(self, rows: np.ndarray) -> SumArrays:
        """Inverse of :meth:`flat` for resampled rows ``[k, F]`` -> sums ``[k, C, B]``."""
        c, b = self.n_classes, self.n_bins
        k = rows.shape[0]
        parts, start = {}, 0
        for name in self.BIN_FIELDS:
            parts[name] = rows[:, start:start + c * b].reshape(k, c, b)
            start += c * b
        for name in self.CLASS_FIELDS:
            parts[name] = rows[:, start:start + c]
            start += c
        return SumArrays(**parts, binning=self.binning, empty_weight=self.empty_weight)

    def total(self) -> SumArrays:
        """The pooled sums over axis 0 (``[C, B]``)."""
        parts = {f: getattr(self, f).sum(axis=0) for f in (*self.BIN_FIELDS,
                                                          *self.CLASS_FIELDS)}
        return SumArrays(**parts, binning=self.binning, empty_weight=self.empty_weight)


def metrics_from_sums(sums: SumArrays, names: Sequence[str] = SUM_METRICS
                      ) -> dict[str, np.ndarray]:
    """``{name: float64 [..., C]}``: ECE, ACE, MCE, Brier and Dice of summed statistics with
    any leading batch axes; the same numbers as :mod:`calibviz.metrics` on a BinStats
    holding those sums (spec §3).

    >>> from calibviz import bin_image, ece
    >>> s = bin_image(np.array([[0.7, 0.3], [0.1, 0.9]]), np.array([[1, 0], [0, 1]]), n_bins=5)
    >>> bool(np.allclose(metrics_from_sums(SumArrays.stack([s]).total())["ece"], ece(s)))
    True
    """
    unknown = [n for n in names if n not in SUM_METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; known: {', '.join(SUM_METRICS)}")
    count = sums.count
    nonempty = count >= sums.empty_weight if sums.binning == "soft" else count > 0
    out: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        safe = np.where(nonempty, count, 1.0)
        gaps = np.where(nonempty, np.abs(sums.sum_p / safe - sums.sum_y / safe), 0.0)
        weights = np.where(nonempty, count, 0.0)
        n_nonempty = nonempty.sum(axis=-1)
        total = weights.sum(axis=-1)
        if "ece" in names:
            out["ece"] = np.where(total > 0, (weights * gaps).sum(axis=-1) / total, np.nan)
        if "ace" in names:
            out["ace"] = np.where(n_nonempty > 0, gaps.sum(axis=-1) / n_nonempty, np.nan)
        if "mce" in names:
            out["mce"] = np.where(n_nonempty > 0,
                                  np.where(nonempty, gaps, -np.inf).max(axis=-1), np.nan)
        if "brier" in names:
            voxels = count.sum(axis=-1)
            numerator = (sums.sum_p2 - 2 * sums.sum_py + sums.sum_y).sum(axis=-1)
            out["brier"] = np.where(voxels > 0, numerator / voxels, np.nan)
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
    n = stacks[0].count.shape[0]
    if any(s.count.shape[0] != n for s in stacks):
        raise ValueError("all stacks must hold the same number of images (paired cases)")
    flats = [s.flat() for s in stacks]
    widths = [f.shape[1] for f in flats]
    joined = np.concatenate(flats, axis=1)
    outs = [{name: np.empty((n_bootstrap, s.n_classes)) for name in names} for s in stacks]
    if n_bootstrap == 0:
        return outs
    chunk = chunk_size(n, joined.shape[1], n_bootstrap)
    start = 0
    for weights in resample_weights(n, n_bootstrap, seed, chunk=chunk):
        stop = start + len(weights)
        resampled = weights @ joined
        offset = 0
        for stack, width, out in zip(stacks, widths, outs, strict=True):
            values = metrics_from_sums(stack.unflat(resampled[:, offset:offset + width]),
                                       names)
            for name in names:
                out[name][start:stop] = values[name]
            offset += width
        start = stop
    return outs


def micro_interval(stats: Sequence[BinStats], metrics: Sequence[str] = SUM_METRICS,
                   n_bootstrap: int = 10000, seed: int | None = 0, *,
                   confidence: float = 0.95, absent: str = "include"
                   ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Bootstrap interval of each micro (pooled-sums) metric per class: images are
    resampled and their sums added, no voxel is read again. Returns
    ``{metric: (low [C], high [C])}``."""
    check_settings(n_bootstrap, confidence)
    stack = SumArrays.stack(list(stats), absent=absent)
    if n_bootstrap == 0:
        nan = np.full(stack.n_classes, np.nan)
        return {name: (nan, nan.copy()) for name in metrics}
    samples = micro_samples([stack], metrics, n_bootstrap, seed)[0]
    return {name: percentile_interval(samples[name], confidence) for name in metrics}
