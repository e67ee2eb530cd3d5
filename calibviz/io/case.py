"""Evaluating one case: a pure function of its file paths and options that returns its
:class:`~calibviz.stats.BinStats` and the problems found, never raising for bad input.

The steps, in order (spec ``inputs.md``): open the label and the prediction; check shapes,
affines and the mask (:mod:`.checks`); then stream the channels one at a time — read a
channel, run the per-channel checks (softmax sums, the nnU-Net argmax), bin it — and finish
with the checks that need every channel. Value checks (finite, within [0, 1]) happen in the
kernel's single pass; their messages gain the case and file names here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..binning import BinAccumulator
from ..options import EvalOptions
from ..stats import BinStats
from .checks import (
    CaseContext,
    check_affine,
    check_qform_sform,
    check_shape,
    load_labels,
    squeeze_trailing,
)
from .classes import Resolved, resolve
from .readers import Source, load_nifti, open_source
from .types import Case, CaseResult, InputError, Problem

CLIP_WARN = 1e-6
SUM_TOLERANCE = 1e-3
SELF_CHECK_ERROR_FRACTION = 1e-3


def evaluate_case(case: Case, options: EvalOptions | None = None) -> CaseResult:
    """Check and bin one case; never raises for bad input.

    Returns ``CaseResult(case_id, stats, problems)``: ``stats`` is the :class:`BinStats` of the
    scored classes/regions (None when a check failed, with an error in ``problems``).
    """
    options = options or EvalOptions()
    ctx = CaseContext(case)
    try:
        stats, class_labels = _evaluate(case, options, ctx)
    except (InputError, ValueError, OSError, EOFError, MemoryError) as err:
        text = str(err)
        if not text.startswith(f"case {case.case_id}:"):
            text = ctx.message(text)
        else:  # the kernel's message names the case; add the files
            text = ctx.message(text[len(f"case {case.case_id}: "):])
        file = getattr(err, "file", "") or case.prediction_name
        severity = "usage" if getattr(err, "usage", False) else "error"
        ctx.problems.append(Problem(case.case_id, file, text, severity))
        return CaseResult(case.case_id, None, ctx.problems)
    except Exception as err:  # a reader bug or an exotic file: still one clear line
        ctx.problems.append(Problem(case.case_id, case.prediction_name, ctx.message(
            f"cannot evaluate: {type(err).__name__}: {err}")))
        return CaseResult(case.case_id, None, ctx.problems)
    return CaseResult(case.case_id, stats, ctx.problems, class_labels)


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


def _evaluate(case: Case, options: EvalOptions, ctx: CaseContext) -> tuple[BinStats, dict]:
    label_img = load_nifti(case.label)
    label_shape = squeeze_trailing(tuple(label_img.shape))
    if len(label_shape) != 3:
        raise ctx.fail(f"label has shape {tuple(label_img.shape)}; expected a 3-D label map",
                       case.label)
    label_affine = np.asarray(label_img.affine, dtype=np.float64)
    source = open_source(case, options, label_affine)
    try:
        inputs = _open_inputs(case, options, ctx, source, label_img, label_shape, label_affine)
        labels = {t.name: list(t.members) for t in inputs.resolved.targets}
        return _stream(inputs, ctx), labels
    finally:
        source.close()


def _open_inputs(case, options, ctx, source: Source, label_img, label_shape,
                 label_affine) -> CaseInputs:
    """Resolve the channels, check shapes and affines, read the mask and the labels."""
    try:
        resolved = resolve(source.n_channels, options, case.model, case.class_files)
    except ValueError as err:
        raise ctx.fail(str(err)) from None
    check_shape(ctx, source, label_shape, case)
    check_qform_sform(ctx, ((case.label, label_img),) + tuple(source.nifti_images))
    segmentation = None
    if case.segmentation is not None and case.format.startswith("nnunet"):
        segmentation = _open_aligned(ctx, case.segmentation, "nnU-Net segmentation",
                                     case, label_shape, label_affine)
        check_qform_sform(ctx, ((case.segmentation, segmentation),))
    if source.affine is not None:
        check_affine(ctx, source.affine_file, source.affine, case.label, label_affine)
    for path, affine in getattr(source, "extra_affines", []):
        check_affine(ctx, path, affine, case.label, label_affine)
    mask = None
    if case.mask is not None:
        mask_img = _open_aligned(ctx, case.mask, "mask", case, label_shape, label_affine)
        mask = np.asanyarray(mask_img.dataobj).reshape(label_shape, order="F") != 0
    # labels are read now; their problems are reported after the probability checks
    labels, label_error = load_labels(ctx, case.label, label_img, label_shape, resolved)
    return CaseInputs(case, options, source, resolved, labels, label_error, mask,
                      segmentation, tuple(label_shape))


def _open_aligned(ctx, path, what, case, label_shape, label_affine):
    """A NIfTI that must lie on the label's grid (mask, nnU-Net segmentation)."""
    img = load_nifti(path)
    if squeeze_trailing(tuple(img.shape)) != tuple(label_shape):
        raise ctx.fail(f"{what} {path} has shape {tuple(img.shape)} but the label has "
                       f"{tuple(label_shape)}", path)
    check_affine(ctx, path, img.affine, case.label, label_affine)
    return img


# ------------------------------------------------------------------ the channel stream
def _stream(inputs: CaseInputs, ctx: CaseContext) -> BinStats:
    """Read, check and bin every channel, then run the checks that need all of them."""
    source = inputs.source
    watch = _ChannelWatch(inputs, ctx)
    binner = _Binner(inputs, ctx) if watch.can_bin else None
    for c in range(source.n_channels):
        data = _read_channel(inputs, ctx, c)
        as_float = watch.observe(c, data, scored=binner is not None and binner.scores(c))
        if binner is not None:
            binner.add(c, data, as_float)
        del data, as_float
    watch.finish()
    if inputs.label_error is not None:
        raise ctx.fail(inputs.label_error, inputs.case.label)
    watch.refuse_unscaled_integers()
    watch.self_check()
    stats = binner.result()
    _warn_clipped(ctx, binner.accumulator, watch.clipped_max)
    return stats


def _read_channel(inputs: CaseInputs, ctx: CaseContext, c: int) -> np.ndarray:
    source = inputs.source
    try:
        data = source.channel(c)
    except InputError:
        raise
    except Exception as err:
        raise ctx.fail(f"cannot read channel {c} of {source.path}: "
                       f"{type(err).__name__}: {err}") from None
    if data.shape != inputs.shape:
        raise ctx.fail(f"channel {c} of {source.path} has shape {data.shape}, expected "
                       f"{inputs.shape}")
    return data


def _warn_clipped(ctx: CaseContext, accumulator: BinAccumulator, unscored_max: float) -> None:
    low, high = accumulator.value_range
    excursion = max(unscored_max, -low, high - 1)
    if excursion > CLIP_WARN:
        ctx.warn(f"probabilities lie outside [0, 1] by up to {excursion:.3g}; clipped "
                 "(counted per class in n_clipped)")


class _Binner:
    """Feeds each scored channel (or the sum of a region's channels) to the accumulator."""

    def __init__(self, inputs: CaseInputs, ctx: CaseContext) -> None:
        options, source, resolved = inputs.options, inputs.source, inputs.resolved
        precision = source.dtype if source.dtype.kind == "f" else np.float64
        self.inputs = inputs
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

    def add(self, c: int, data: np.ndarray, as_float: np.ndarray | None) -> None:
        inputs, resolved = self.inputs, self.inputs.resolved
        common = dict(mask=inputs.mask, ignore_label=resolved.ignore_label,
                      declared_labels=resolved.declared)
        for t_index, target in enumerate(resolved.targets):
            if c not in target.channels:
                continue
            region = list(target.members)
            if len(target.channels) == 1:
                self.accumulator.add_class(
                    t_index, data, inputs.labels, region=region, scale=inputs.source.scale,
                    intercept=inputs.source.intercept, **common)
                continue
            if t_index in self.partial:
                self.partial[t_index] += as_float.astype(self.sum_dtype, copy=False)
            else:
                self.partial[t_index] = np.array(as_float, dtype=self.sum_dtype, order="F")
            if c == self.last_use[t_index]:
                self.accumulator.add_class(t_index, self.partial.pop(t_index), inputs.labels,
                                           region=region, **common)

    def result(self) -> BinStats:
        return self.accumulator.result()


class _ChannelWatch:
    """Per-channel checks that need more than one channel: softmax sums ≈ 1, the nnU-Net
    self-check (argmax or region reconstruction) and integer storage without a scale."""

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
        elif self.checking:
            self.best = np.full(shape, -np.inf, dtype=np.float32, order="F")
            self.argbest = np.zeros(shape, order="F",
                                    dtype=np.uint8 if source.n_channels <= 256 else np.int16)
        self.int_max = 0
        self.clipped_max = 0.0

    def observe(self, c: int, data: np.ndarray, *, scored: bool) -> np.ndarray | None:
        """Check channel ``c``; returns it as floats when a later step needs them."""
        if self.unscaled_int:
            self._observe_integers(c, data)
            return None
        if not scored:  # the kernel checks the values of scored channels
            self._check_range(c, data)
        need_float = (self.running_sum is not None or self.best is not None
                      or self.recon is not None
                      or (self.can_bin and _needs_float(self.inputs.resolved, c)))
        if not need_float:
            return None
        as_float = _as_float(data, self.inputs.source)
        if self.running_sum is not None:
            self.running_sum += as_float
        if self.best is not None:
            better = np.greater(as_float, self.best)
            np.copyto(self.best, as_float, where=better)
            np.copyto(self.argbest, c, where=better)
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
        from ..options import CLIP_TOLERANCE

        lo, hi = _range(data, self.inputs.source)
        name = self.inputs.resolved.channel_names[c]
        if not (np.isfinite(lo) and np.isfinite(hi)):
            bad = int(np.count_nonzero(~np.isfinite(_as_float(data, self.inputs.source))))
            raise self.ctx.fail(f"probabilities of {name!r} (channel {c}) contain {bad} "
                                "non-finite values (NaN or inf); expected values in [0, 1]")
        if lo < -CLIP_TOLERANCE or hi > 1 + CLIP_TOLERANCE:
            raise self.ctx.fail(f"probabilities of {name!r} (channel {c}) range over "
                                f"[{lo:.6g}, {hi:.6g}]; expected values in [0, 1] "
                                f"(values up to {CLIP_TOLERANCE:g} outside are clipped)")
        self.clipped_max = max(self.clipped_max, -lo, hi - 1)

    def finish(self) -> None:
        """Softmax channel sums ≈ 1 (warnings)."""
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
        n_off = int(np.count_nonzero(running > SUM_TOLERANCE))
        total = running.size
        if n_off:
            ctx.warn(f"softmax channel sums differ from 1 by more than {SUM_TOLERANCE:g} in "
                     f"{n_off / total:.2%} of voxels ({n_off} of {total}); are these "
                     "probabilities of a softmax model?")
        if n_zero:
            ctx.warn(f"{n_zero / total:.2%} of voxels have every channel 0 (nnU-Net 2.0/2.1 "
                     "writes zeros outside the crop box); they are scored as probability 0")
        self.running_sum = None

    def _refuse_softmax_as_regions(self, sums: np.ndarray) -> None:
        """Channels taken as regions must not be a softmax (sums ≈ 1 everywhere): nested
        regions (WT ⊇ TC ⊇ ET) would then score the background channel as a region."""
        near_one = np.count_nonzero(np.abs(sums - 1) <= SUM_TOLERANCE)
        if sums.size and near_one >= 0.99 * sums.size:
            names = ", ".join(self.inputs.resolved.channel_names)
            raise self.ctx.fail(
                f"the {self.inputs.source.n_channels} channels sum to 1 in "
                f"{near_one / sums.size:.1%} of voxels: they are a softmax over classes, not "
                f"the probabilities of the regions {names}; name the label of each channel "
                "with --classes (e.g. background=0,...) and each region's probability is "
                "then the sum of its member classes", usage=True)

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
