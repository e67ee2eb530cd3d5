"""Honest bootstrap intervals: the rules every interval calibviz prints or saves follows
(summary.csv, comparison tables, the report).

An interval is NaN when fewer than :data:`MIN_IMAGES` images (or paired images) carry the
statistic — one image has no between-image spread — or when its estimate is NaN. An interval
that does not contain its estimate (beyond rounding) is NaN as well and reported as
*discarded*: the percentile bootstrap of a statistic that is not smooth in the image weights
(micro ACE/MCE when bins are filled by single images), or of very few resamples, can miss
the value it is an interval of. An interval that misses its estimate by rounding only is
widened to contain it.
"""

from __future__ import annotations

import numpy as np

#: Fewest images (or paired images) an interval needs; fewer give NaN.
MIN_IMAGES = 2
#: Why an interval that does not contain its estimate was discarded.
DISCARD_REASON = ("the image bootstrap does not resample this statistic well: few images or "
                  "resamples (--bootstrap), or bins filled by single images")
#: Relative slack (of the estimate's scale) within which a miss counts as rounding.
ROUNDING = 1e-9


def honest_interval(estimate, low, high, n_images
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The module's honesty rules applied to intervals ``(low, high)`` of ``estimate``
    (arrays of one shape; ``n_images``: images, or paired images, carrying each statistic).

    Returns float64 ``(low, high, discarded)``: NaN where ``n_images < MIN_IMAGES`` or the
    estimate is NaN; NaN and ``discarded`` True where a finite interval misses its finite
    estimate by more than rounding (:data:`ROUNDING`); a miss by rounding only is widened to
    contain the estimate.

    >>> low, high, gone = honest_interval([1.0, 1.0, 1.0], [0.5, 1.2, 0.5], [1.5, 1.4, 1.5],
    ...                                   [10, 10, 1])
    >>> low.tolist(), high.tolist(), gone.tolist()
    ([0.5, nan, nan], [1.5, nan, nan], [False, True, False])
    """
    estimate = np.asarray(estimate, dtype=np.float64)
    low = np.array(low, dtype=np.float64, copy=True).reshape(estimate.shape)
    high = np.array(high, dtype=np.float64, copy=True).reshape(estimate.shape)
    n_images = np.broadcast_to(np.asarray(n_images), estimate.shape)
    blank = (n_images < MIN_IMAGES) | ~np.isfinite(estimate)
    finite = np.isfinite(low) & np.isfinite(high) & ~blank
    with np.errstate(invalid="ignore"):
        slack = ROUNDING * np.maximum.reduce([np.abs(estimate), np.abs(low), np.abs(high),
                                              np.full(estimate.shape, 1e-300)])
        missed = finite & ((low > estimate + slack) | (high < estimate - slack))
        keep = finite & ~missed
        low = np.where(keep, np.minimum(low, estimate), low)
        high = np.where(keep, np.maximum(high, estimate), high)
    low[blank | missed] = np.nan
    high[blank | missed] = np.nan
    return low, high, missed


def discard_note(what: str, estimate: float, low: float, high: float) -> str:
    """One line saying that the interval ``[low, high]`` of ``what`` (e.g. "micro ace of
    label1") was discarded because it does not contain the estimate, and why.

    >>> discard_note("micro ace of fg", 0.0251, 0.0305, 0.0467)[:60]
    'micro ace of fg: the bootstrap interval [0.0305, 0.0467] doe'
    """
    return (f"{what}: the bootstrap interval [{low:.4g}, {high:.4g}] does not contain the "
            f"estimate {estimate:.4g} and was discarded (left blank): {DISCARD_REASON}")


def images_per_class(*stacks) -> np.ndarray:
    """int ``[C]``: images (rows of the stacks, same images) whose sums of a class are not
    all zero in at least one stack — the images a micro value of that class rests on."""
    carried = np.zeros(stacks[0].count.shape[:2], dtype=bool)
    for stack in stacks:
        carried |= stack.count.sum(axis=-1) > 0
    return carried.sum(axis=0)
