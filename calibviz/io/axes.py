"""A transposed volume that shapes and affines cannot reveal.

When two spatial sizes are equal (512 × 512 CT slices), a prediction written with those axes
swapped, and the label's affine kept, passes every header check and gives plausible, wrong
numbers. nnU-Net's written segmentation catches it (the self-check); elsewhere the only
evidence is the data: the predicted classes agree with the label far better once the axes
are swapped back. :class:`AxisCheck` measures that on a sub-grid (a few MB whatever the
volume) and warns; a symmetric structure, or a model too poor to agree either way, cannot
be told apart and is not flagged.
"""

from __future__ import annotations

import math

import numpy as np

#: The sub-grid holds at most this many voxels (one float32 and one int16 volume of it).
MAX_VOXELS = 2_000_000
#: Flag when the swapped agreement (foreground Jaccard) reaches this and beats the stored
#: one by the margin.
MIN_AGREEMENT = 0.5
MARGIN = 0.25
AXIS_NAMES = "ijk"


class AxisCheck:
    """Agreement of the predicted classes with the label, as stored and with each pair of
    equal-sized spatial axes swapped (argmax for a softmax model, channel 0 > 0.5 else).

    ``argmax_kept``: the caller keeps the full argmax of a softmax map and hands it to
    :meth:`finish` (its sub-grid is the same argmax); nothing is then tracked per channel."""

    def __init__(self, inputs, *, argmax_kept: bool = False) -> None:
        shape = inputs.shape
        self.pairs = [(a, b) for a, b in ((0, 1), (0, 2), (1, 2)) if shape[a] == shape[b]]
        self.active = bool(self.pairs) and inputs.labels is not None
        if not self.active:
            return
        step = max(1, math.ceil((math.prod(shape) / MAX_VOXELS) ** (1 / 3)))
        self.sub = (slice(None, None, step),) * 3
        self.source = inputs.source
        resolved = inputs.resolved
        self.softmax = resolved.softmax
        labels = inputs.labels[self.sub]
        keep = np.ones(labels.shape, dtype=bool)
        if inputs.mask is not None:
            keep &= inputs.mask[self.sub]
        if resolved.ignore_label is not None:
            keep &= labels != resolved.ignore_label
        self.keep = keep
        self.tracking = not (self.softmax and argmax_kept)
        if self.softmax:
            self.values = np.asarray([v[0] for v in resolved.channel_values], dtype=np.int64)
            self.truth = labels.astype(np.int64)
            if self.tracking:
                self.best = np.full(labels.shape, -np.inf, dtype=np.float32)
                self.arg = np.zeros(labels.shape, dtype=np.int16)
        else:
            self.truth = np.isin(labels, resolved.channel_values[0]).astype(np.int64)
            self.predicted = None

    def observe(self, c: int, data: np.ndarray) -> None:
        if not self.active or not self.tracking:
            return
        from .segmentation import track_argmax
        from .watch import _as_float

        values = _as_float(np.ascontiguousarray(data[self.sub]), self.source)
        if self.softmax:
            track_argmax(self.best, self.arg, values, c)
        elif c == 0:
            self.predicted = (values > 0.5).astype(np.int64)

    def finish(self, ctx, argmax: np.ndarray | None = None) -> None:
        """Warn when swapping a pair of axes makes the prediction fit the label far better
        (``argmax``: the full argmax, with ``argmax_kept``)."""
        if not self.active:
            return
        if not self.tracking:
            self.arg = argmax[self.sub]
        predicted = self.values[self.arg] if self.softmax else self.predicted
        self.best = None
        if predicted is None:
            return
        stored = self._agreement(predicted)
        for a, b in self.pairs:
            swapped = self._agreement(np.swapaxes(predicted, a, b))
            if swapped >= MIN_AGREEMENT and swapped >= stored + MARGIN:
                names = f"{AXIS_NAMES[a]} and {AXIS_NAMES[b]}"
                ctx.warn(f"the prediction agrees with the label far better with axes {names} "
                         f"swapped (foreground overlap {swapped:.2f} vs {stored:.2f} as "
                         "stored): it looks transposed (a writer that swapped the axes, or "
                         "a wrong layout option); scored as stored")
                return

    def _agreement(self, predicted: np.ndarray) -> float:
        """Foreground Jaccard over the kept voxels: voxels where both give the same non-zero
        class over voxels where either gives a non-zero one."""
        truth, keep = self.truth, self.keep
        either = keep & ((predicted != 0) | (truth != 0))
        n = int(np.count_nonzero(either))
        if n == 0:
            return 0.0
        return int(np.count_nonzero(either & (predicted == truth))) / n
