"""The region-of-interest pass of one case (``--roi``, :mod:`calibviz.roi`): every scored
class binned again on its own region only, the voxels near the boundary of its truth or of
its predicted segmentation (``band:MM``) or their grown bounding box (``box:MM``).

The predicted segmentation is the Dice rule's: the argmax kept while the channels streamed
(softmax maps) or ``p >= 0.5`` of the class's probability (threshold). The channels are held
in memory for this pass while they fit in :data:`HOLD_BYTES`; a larger case reads them again.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..roi import bounding_box, parse_roi, roi_mask
from ..stats import BinStats
from .binner import Binner
from .checks import CaseContext
from .segmentation import argmax_confusion
from .watch import CaseInputs, _as_float

#: The most bytes of channel data a case holds for the ROI pass (more: read again).
HOLD_BYTES = 1 << 30


class ChannelKeeper:
    """The scored channels as read, kept while they fit in ``limit`` bytes."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = HOLD_BYTES if limit is None else limit
        self.kept: dict[int, np.ndarray] = {}
        self.size = 0
        self.overflow = False

    def keep(self, c: int, data: np.ndarray) -> None:
        if self.overflow:
            return
        self.size += data.nbytes
        if self.size > self.limit:
            self.kept.clear()
            self.overflow = True
        else:
            self.kept[c] = data

    def channels(self, source, scored) -> Iterator[tuple[int, np.ndarray]]:
        """``(c, data)`` of each scored channel in order: kept, or read again."""
        for c in scored:
            yield c, (source.channel(c) if self.overflow else self.kept.pop(c))


def _member_of(values: np.ndarray, members, lookup_size: int) -> np.ndarray:
    """bool, ``values``' shape and memory order: ``isin(values, members)`` by a lookup table
    (``values`` non-negative integers below ``lookup_size``, or anything else: False)."""
    table = np.zeros(lookup_size + 1, dtype=bool)
    inside = [int(m) for m in members if 0 <= int(m) < lookup_size]
    table[inside] = True
    order = "F" if values.flags.f_contiguous and not values.flags.c_contiguous else "C"
    flat = values.ravel(order=order)
    if flat.dtype.kind == "i" or flat.max(initial=0) >= lookup_size:
        flat = np.where((flat >= 0) & (flat < lookup_size), flat, lookup_size)
    return table[flat].reshape(values.shape, order=order)


class RoiMasks:
    """The region of interest of each target, made when its probabilities are complete; for
    the argmax rule also the confusion counts inside it."""

    def __init__(self, inputs: CaseInputs, argbest: np.ndarray | None) -> None:
        self.inputs = inputs
        self.spec = parse_roi(inputs.options.roi)
        resolved = inputs.resolved
        self.argbest = argbest if inputs.dice_rule == "argmax" else None
        self.channel_values = np.array([v[0] for v in resolved.channel_values], dtype=np.int64)
        self.label_size = int(max([*resolved.declared, *self.channel_values, 0])) + 1
        self.valid = inputs.scored_voxels()
        self.confusion = np.zeros((len(resolved.targets), 4), dtype=np.int64)
        self.empty: list[str] = []

    def segmentation(self, t: int, probs: np.ndarray, scaled: bool) -> np.ndarray:
        """The Dice rule's segmentation of target ``t``: its channels' share of the argmax,
        or ``p >= 0.5``."""
        members = self.inputs.resolved.targets[t].members
        if self.argbest is not None:
            channels = np.flatnonzero(np.isin(self.channel_values, list(members)))
            return _member_of(self.argbest, channels, len(self.channel_values))
        values = probs if scaled else _as_float(probs, self.inputs.source)
        return values >= 0.5

    def __call__(self, t: int, probs: np.ndarray, scaled: bool) -> np.ndarray:
        inputs = self.inputs
        target = inputs.resolved.targets[t]
        truth = _member_of(inputs.labels, target.members, self.label_size)
        region = roi_mask(truth, self.segmentation(t, probs, scaled), self.spec,
                          inputs.spacing)
        if self.valid is not None:
            region &= self.valid
        box = bounding_box(region)
        if box is None:
            self.empty.append(target.name)
        elif self.argbest is not None:  # counted on the region's bounding box
            crop = tuple(slice(lo, hi + 1) for lo, hi in box)
            inside = region[crop]
            self.confusion[t] = argmax_confusion(self.argbest[crop][inside], inputs.resolved,
                                                 inputs.labels[crop][inside], None)[t]
        return region


def roi_stats(inputs: CaseInputs, ctx: CaseContext, keeper: ChannelKeeper,
              argbest: np.ndarray | None) -> BinStats:
    """The case's statistics on each class's region of interest (same classes and bins)."""
    masks = RoiMasks(inputs, argbest)
    binner = Binner(inputs, mask_for=masks, crop=True)
    scored = [c for c in range(inputs.source.n_channels) if binner.scores(c)]
    needs_float = {c for t in inputs.resolved.targets if len(t.channels) > 1
                   for c in t.channels}
    for c, data in keeper.channels(inputs.source, scored):
        binner.add(c, data, _as_float(data, inputs.source) if c in needs_float else None)
        del data
    stats = binner.result()
    if masks.argbest is not None:
        stats = stats.replace(tp=masks.confusion[:, 0], fp=masks.confusion[:, 1],
                              fn=masks.confusion[:, 2], tn=masks.confusion[:, 3])
    if masks.empty:
        ctx.warn(f"the region of interest {masks.spec} is empty for {', '.join(masks.empty)} "
                 "(no voxel of the class in the truth or the prediction): its ROI metrics are "
                 "NaN")
    return stats
