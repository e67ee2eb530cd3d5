"""The checks of one case's channel stream that need more than one channel: softmax sums
≈ 1 (within the storage's quantisation), the nnU-Net self-check, integer storage without a
scale, hard masks and all-zero maps stored as probabilities, and a transposed volume."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..options import CLIP_TOLERANCE, EvalOptions
from ..valuecheck import logit_hint, out_of_range
from .axes import AxisCheck
from .checks import CaseContext
from .classes import Resolved
from .segmentation import track_argmax
from .source import Source
from .types import Case

SUM_TOLERANCE = 1e-3
SELF_CHECK_ERROR_FRACTION = 1e-3


@dataclass
class CaseInputs:
    """Everything one case's channel stream needs, checked and opened."""

    case: Case
    options: EvalOptions
    source: Source
    resolved: Resolved
    labels: np.ndarray | None
    label_error: str | None
    mask: np.ndarray | None
    segmentation: object | None  # nibabel image of nnU-Net's segmentation, for the self-check
    shape: tuple[int, ...]
    dice_rule: str = "threshold"  # "argmax": keep the argmax while streaming (Dice)
    spacing: tuple[float, ...] = (1.0, 1.0, 1.0)  # voxel size in mm (the label's affine)

    def scored_voxels(self) -> np.ndarray | None:
        """bool ``(*spatial)``: the voxels scored (inside the mask, not the ignore label);
        None when every voxel is."""
        valid = self.mask
        if self.resolved.ignore_label is not None:
            keep = self.labels != self.resolved.ignore_label
            valid = keep if valid is None else valid & keep
        return valid


def has_fraction(data: np.ndarray, source: Source) -> bool:
    """Whether any value (as a probability) is neither 0 nor 1; a sample first, as almost
    every real probability map shows one at once."""
    flat = data.ravel(order="K")
    step = max(1, flat.size // 4096)
    tolerance = abs(source.scale or 0.0) / 2 if source.integer else 0.0  # float rounding
    for part in (flat[::step], flat):
        values = _as_float(part, source)
        if np.any(np.minimum(np.abs(values), np.abs(values - 1)) > tolerance):
            return True
    return False


class ChannelWatch:
    """Per-channel checks that need more than one channel: softmax sums ≈ 1, the nnU-Net
    self-check (argmax or region reconstruction), integer storage without a scale, hard or
    all-zero maps and a transposed volume (:class:`.axes.AxisCheck`)."""

    def __init__(self, inputs: CaseInputs, ctx: CaseContext) -> None:
        case, options, source = inputs.case, inputs.options, inputs.source
        self.inputs, self.ctx = inputs, ctx
        self.unscaled_int = source.integer and source.scale is None
        self.can_bin = inputs.label_error is None and not self.unscaled_int
        shape = inputs.shape
        self.running_sum = (np.zeros(shape, dtype=np.float32, order="F")
                            if inputs.resolved.softmax or inputs.resolved.regions_assumed
                            else None)
        nnunet = options.self_check and case.format.startswith("nnunet")
        if nnunet and inputs.segmentation is None:
            ctx.warn("no segmentation written next to the npz; nnU-Net self-check skipped")
        self.checking = nnunet and inputs.segmentation is not None
        self.region_model = case.model is not None and case.model.is_region
        self.best = self.argbest = self.recon = None
        if self.checking and self.region_model:
            self.recon = np.zeros(shape, dtype=np.int16, order="F")
        elif self.checking or inputs.dice_rule == "argmax" or options.top_label:
            # float64 when the values are (top-label bins the largest value itself)
            exact = source.integer or source.dtype.itemsize > 4
            self.best = np.full(shape, -np.inf, order="F",
                                dtype=np.float64 if exact else np.float32)
            self.argbest = np.zeros(shape, order="F",
                                    dtype=np.uint8 if source.n_channels <= 256 else np.int16)
        self.int_max = 0
        self.clipped_max = 0.0
        self.fraction_seen = False
        self.unscored_range = (np.inf, -np.inf)
        self.axes = (AxisCheck(inputs, argmax_kept=self.argbest is not None)
                     if not self.checking and self.can_bin else None)

    def observe(self, c: int, data: np.ndarray, *, scored: bool) -> np.ndarray | None:
        """Check channel ``c``; returns it as floats when a later step needs them."""
        if self.unscaled_int:
            self._observe_integers(c, data)
            return None
        if not scored:  # the kernel checks the values of scored channels
            self._check_range(c, data)
        if not self.fraction_seen:
            self.fraction_seen = has_fraction(data, self.inputs.source)
        if self.axes is not None:
            self.axes.observe(c, data)
        need_float = (self.running_sum is not None or self.best is not None
                      or self.recon is not None
                      or (self.can_bin and _needs_float(self.inputs.resolved, c)))
        if not need_float:
            return None
        as_float = _as_float(data, self.inputs.source)
        if self.running_sum is not None:
            self.running_sum += as_float
        if self.best is not None:
            track_argmax(self.best, self.argbest, as_float, c)
        if self.recon is not None:
            self.recon[as_float > 0.5] = self.inputs.case.model.regions_class_order[c]
        return as_float

    def _observe_integers(self, c: int, data: np.ndarray) -> None:
        if data.size:
            self.int_max = max(self.int_max, int(data.max()))
            if int(data.min()) < 0:
                name = self.inputs.resolved.channel_names[c]
                raise self.ctx.fail(f"probabilities of {name!r} are stored as "
                                    f"{self.inputs.source.dtype} with negative values")

    def _check_range(self, c: int, data: np.ndarray) -> None:
        """Finite and within [0, 1] for a channel the kernel does not see (unscored)."""
        lo, hi = _range(data, self.inputs.source)
        self.unscored_range = (min(self.unscored_range[0], lo), max(self.unscored_range[1], hi))
        name = self.inputs.resolved.channel_names[c]
        if not (np.isfinite(lo) and np.isfinite(hi)):
            bad = int(np.count_nonzero(~np.isfinite(_as_float(data, self.inputs.source))))
            raise self.ctx.fail(f"probabilities of {name!r} (channel {c}) contain {bad} "
                                "non-finite values (NaN or inf); expected values in [0, 1]")
        if lo < -CLIP_TOLERANCE or hi > 1 + CLIP_TOLERANCE:
            values = _as_float(data, self.inputs.source)
            n_out = int(np.count_nonzero((values < -CLIP_TOLERANCE)
                                         | (values > 1 + CLIP_TOLERANCE)))
            error = out_of_range(f"probabilities of {name!r} (channel {c})", n_out,
                                 values.size, lo, hi)
            raise self.ctx.fail(str(error) + logit_hint(error))
        self.clipped_max = max(self.clipped_max, -lo, hi - 1)

    def finish(self, *, sums_explained: bool = False) -> None:
        """Softmax channel sums ≈ 1 (warnings; none when ``sums_explained``: an activation
        applied to probabilities, reported already)."""
        if not self.inputs.options.top_label:
            self.best = None
        running, ctx = self.running_sum, self.ctx
        if running is None or self.unscaled_int:
            return
        if self.inputs.resolved.regions_assumed:
            self._refuse_softmax_as_regions(running)
            self.running_sum = None
            return
        zero = running == 0
        n_zero = int(np.count_nonzero(zero))
        running -= 1
        np.abs(running, out=running)
        running[zero] = 0
        tolerance = sum_tolerance(self.inputs.source)
        n_off = int(np.count_nonzero(running > tolerance))
        total = running.size
        if n_off and not sums_explained:
            activation = self.inputs.options.activation
            why = ("are these probabilities of a softmax model?" if activation is None else
                   f"after --activation {activation}: is that the model's activation? (maps "
                   "that hold probabilities need no --activation)")
            ctx.warn(f"softmax channel sums differ from 1 by more than {tolerance:.3g} in "
                     f"{n_off / total:.2%} of voxels ({n_off} of {total}); {why}")
        if n_zero and n_zero < total:  # all zero: see warn_not_probabilities
            ctx.warn(f"{n_zero / total:.2%} of voxels have every channel 0 (nnU-Net 2.0/2.1 "
                     "writes zeros outside the crop box); they are scored as probability 0")
        self.running_sum = None

    def _refuse_softmax_as_regions(self, sums: np.ndarray) -> None:
        """Channels taken as regions must not be a softmax (sums ≈ 1 everywhere): nested
        regions (WT ⊇ TC ⊇ ET) would then score the background channel as a region."""
        near_one = np.count_nonzero(np.abs(sums - 1) <= sum_tolerance(self.inputs.source))
        if sums.size and near_one >= 0.99 * sums.size:
            names = ", ".join(self.inputs.resolved.channel_names)
            raise self.ctx.fail(
                f"the {self.inputs.source.n_channels} channels sum to 1 in "
                f"{near_one / sums.size:.1%} of voxels: they are a softmax over classes, not "
                f"the probabilities of the regions {names}; name the label of each channel "
                "with --classes (e.g. background=0,...) and each region's probability is "
                "then the sum of its member classes", usage=True)

    def warn_not_probabilities(self, scored_range: tuple[float, float]) -> None:
        """Scored anyway, with the reason: a map that is all 0, or only 0 and 1."""
        if self.unscaled_int:
            return
        high = max(scored_range[1], self.unscored_range[1])
        low = min(scored_range[0], self.unscored_range[0])
        if low == 0 and high == 0:
            self.ctx.warn("every probability is 0: an empty map, not probabilities; "
                          "calibration of it is meaningless")
        elif not self.fraction_seen:
            self.ctx.warn("every probability is 0 or 1: a hard segmentation, not "
                          "probabilities; calibration of it is meaningless")
        if self.axes is not None:
            self.axes.finish(self.ctx, self.argbest)

    def refuse_unscaled_integers(self) -> None:
        """An integer map without a scale: a hard mask ({0, 1}) or a missing scale."""
        if not self.unscaled_int:
            return
        dtype = self.inputs.source.dtype
        if self.int_max <= 1:
            raise self.ctx.fail(
                f"prediction is stored as {dtype} holding only 0 and 1: a hard segmentation "
                "mask, not probabilities; calibration needs the probability maps (e.g. "
                "nnU-Net --save_probabilities)")
        raise self.ctx.fail(f"prediction is stored as integers ({dtype}, max {self.int_max}) "
                            "without scl_slope; give the scale option (e.g. scale=1/255)")

    def self_check(self) -> None:
        """nnU-Net: the argmax (or region reconstruction) equals the written segmentation."""
        if not self.checking:
            return
        inputs, ctx = self.inputs, self.ctx
        seg = np.asanyarray(inputs.segmentation.dataobj).reshape(inputs.shape, order="F")
        if self.recon is not None:
            predicted = self.recon
            what = "region reconstruction (regions_class_order, p > 0.5)"
        else:
            values = [v[0] for v in inputs.resolved.channel_values]
            if values == list(range(len(values))):
                predicted = self.argbest
            else:
                predicted = np.asarray(values, dtype=np.int32)[self.argbest]
            what = "argmax"
        mismatch = int(np.count_nonzero(predicted != seg))
        if not mismatch:
            return
        fraction = mismatch / seg.size
        text = (f"nnU-Net self-check: the {what} of the npz differs from the segmentation "
                f"{inputs.case.segmentation} in {fraction:.2%} of voxels ({mismatch}); ")
        if fraction > SELF_CHECK_ERROR_FRACTION:
            raise ctx.fail(text + "the probabilities are misread (axis order or orientation?) "
                           "or belong to another case", inputs.case.segmentation)
        ctx.warn(text + "ties or rounding?", inputs.case.segmentation)


def sum_tolerance(source: Source) -> float:
    """How far a softmax's channel sum may stray from 1: the float tolerance plus half a
    quantisation step per channel (the scale of integer storage, the epsilon of floats)."""
    if source.integer:
        step = abs(source.scale or 0.0)
    else:
        step = float(np.finfo(source.dtype).eps) if source.dtype.kind == "f" else 0.0
    return SUM_TOLERANCE + source.n_channels * step / 2


def _needs_float(resolved: Resolved, c: int) -> bool:
    return any(len(t.channels) > 1 and c in t.channels for t in resolved.targets)


def _range(data: np.ndarray, source: Source) -> tuple[float, float]:
    if data.size == 0:
        return 0.0, 0.0
    lo, hi = float(np.min(data)), float(np.max(data))
    if source.integer:
        lo = lo * source.scale + source.intercept
        hi = hi * source.scale + source.intercept
        lo, hi = min(lo, hi), max(lo, hi)
    return lo, hi


def _as_float(data: np.ndarray, source: Source) -> np.ndarray:
    if source.integer:
        out = data.astype(np.float64)
        out *= source.scale
        out += source.intercept
        return out
    if data.dtype == np.float16:
        return data.astype(np.float32)
    return data
