"""Feeding one case's streamed channels to the binning kernel: each scored class from its
channel, each region from the sum of its member channels, optionally each on its own mask
(the region-of-interest pass)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..roi import bounding_box
from ..stats import BinStats
from .watch import CaseInputs

#: ``mask_for(target index, probabilities, scaled)`` → bool mask of the voxels to score, or
#: None for the case's mask; ``scaled``: the probabilities are floats already (a region sum).
MaskFor = Callable[[int, np.ndarray, bool], "np.ndarray | None"]


class Binner:
    """Feeds each scored channel (or the sum of a region's channels) to the accumulator."""

    def __init__(self, inputs: CaseInputs, mask_for: MaskFor | None = None, *,
                 crop: bool = False) -> None:
        from ..binning import BinAccumulator  # Numba: loaded with the first case

        options, source, resolved = inputs.options, inputs.source, inputs.resolved
        precision = source.dtype if source.dtype.kind == "f" else np.float64
        self.inputs = inputs
        self.mask_for = mask_for
        self.crop = crop  # bin only the bounding box of each target's mask
        self.accumulator = BinAccumulator(
            resolved.names, n_bins=options.n_bins, precision=precision,
            closure=options.closure, binning=options.binning,
            empty_weight=options.empty_weight, where=f"case {inputs.case.case_id}: ")
        self.sum_dtype = (np.float64 if source.dtype.itemsize > 4 or source.integer
                          else np.float32)
        self.last_use = {t: max(target.channels) for t, target in enumerate(resolved.targets)}
        self.partial: dict[int, np.ndarray] = {}

    def scores(self, c: int) -> bool:
        return any(c in target.channels for target in self.inputs.resolved.targets)

    def _bin(self, t_index: int, probs: np.ndarray, scaled: bool, **options) -> None:
        """Bin target ``t_index``'s probabilities on its mask (cropped to the mask's
        bounding box with ``crop``: the voxels outside are not scored anyway)."""
        labels = self.inputs.labels
        mask = self.inputs.mask if self.mask_for is None else self.mask_for(t_index, probs,
                                                                             scaled)
        if self.crop and mask is not None:
            box = bounding_box(mask)
            if box is None:  # empty: nothing to score, but the class is binned (NaN)
                box = [(0, -1)] * mask.ndim
            crop = tuple(slice(lo, hi + 1) for lo, hi in box)
            probs, labels, mask = probs[crop], labels[crop], mask[crop]
        self.accumulator.add_class(t_index, probs, labels, mask=mask, **options)

    def add(self, c: int, data: np.ndarray, as_float: np.ndarray | None) -> None:
        """Bin channel ``c`` (as stored) into every target it belongs to; ``as_float``: the
        same values as floats (needed when ``c`` is part of a region)."""
        inputs, resolved = self.inputs, self.inputs.resolved
        # a region's float sum is binned with the edges of the input's dtype
        common = dict(ignore_label=resolved.ignore_label, declared_labels=resolved.declared,
                      input_dtype=inputs.source.dtype)
        for t_index, target in enumerate(resolved.targets):
            if c not in target.channels:
                continue
            region = list(target.members)
            if len(target.channels) == 1:
                self._bin(t_index, data, False, region=region, scale=inputs.source.scale,
                          intercept=inputs.source.intercept, **common)
                continue
            if t_index in self.partial:
                self.partial[t_index] += as_float.astype(self.sum_dtype, copy=False)
            else:
                self.partial[t_index] = np.array(as_float, dtype=self.sum_dtype, order="F")
            if c == self.last_use[t_index]:
                self._bin(t_index, self.partial.pop(t_index), True, region=region, **common)

    def result(self) -> BinStats:
        return self.accumulator.result()
