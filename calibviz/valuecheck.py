"""Probability values outside [0, 1]: the error that says how many there are and over what
range the values lie (shared by the binning kernel and the reader's checks of channels the
kernel does not see), and whether they look like logits."""

from __future__ import annotations

import numpy as np

from .options import CLIP_TOLERANCE

#: At least this share of the values outside [0, 1] before they are said to look like logits
#: (a logit map has most of its values outside; a damaged map has a few).
LOGIT_SHARE = 0.1


class ValuesOutOfRange(ValueError):
    """Probabilities further outside [0, 1] than the clipping tolerance; ``n_out`` of
    ``n_values`` values, the whole map ranging over ``[low, high]``."""

    def __init__(self, message: str, n_out: int, n_values: int, low: float,
                 high: float) -> None:
        super().__init__(message)
        self.n_out, self.n_values, self.low, self.high = n_out, n_values, low, high

    def __reduce__(self):  # picklable (workers hand errors back)
        return type(self), (str(self), self.n_out, self.n_values, self.low, self.high)


def out_of_range(what: str, n_out: int, n_values: int, low: float, high: float,
                 out_low: float | None = None,
                 out_high: float | None = None) -> ValuesOutOfRange:
    """The error for ``n_out`` of ``n_values`` values of ``what`` beyond the tolerance; the
    map's values range over ``[low, high]``, the offending ones over ``[out_low, out_high]``
    (when they are known apart from the map's: masked voxels are not checked)."""
    tol = CLIP_TOLERANCE
    out_low = low if out_low is None else out_low
    out_high = high if out_high is None else out_high
    extent = [f"down to {out_low:.6g}"] if out_low < -tol else []
    extent += [f"up to {out_high:.6g}"] if out_high > 1 + tol else []
    where = f" ({' and '.join(extent)})" if extent else ""
    return ValuesOutOfRange(
        f"{what}: {n_out} of {n_values} values lie outside [0, 1] by more than {tol:g}"
        f"{where}; the values range over [{low:.6g}, {high:.6g}]; expected values in [0, 1] "
        f"(up to {tol:g} outside is clipped)", n_out, n_values, low, high)


def finite_range(values: np.ndarray) -> tuple[float, float]:
    """(lowest, highest) finite value (NaN, NaN when there is none)."""
    finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
    if finite.size == 0:
        return float("nan"), float("nan")
    return float(finite.min()), float(finite.max())


def logit_hint(error: BaseException) -> str:
    """What to say about values outside [0, 1] (a :class:`ValuesOutOfRange`): logits only
    when a large share of the values lie outside; nothing for a few damaged voxels."""
    n_out, n_values = getattr(error, "n_out", 0), getattr(error, "n_values", 0)
    if not n_values or n_out < LOGIT_SHARE * n_values:
        return ""
    share = f"{n_out / n_values:.0%} of the values lie outside [0, 1]"
    if error.low < -CLIP_TOLERANCE:
        return (f"; {share}: these look like logits: apply softmax or pass --activation "
                "softmax|sigmoid (option activation='softmax' or 'sigmoid')")
    return (f"; {share} (above 1): logits (pass --activation softmax|sigmoid) or values on "
            "another scale (percentages, 0..255)?")
