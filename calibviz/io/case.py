"""Evaluating one case: a pure function of its file paths and options that returns its
:class:`~calibviz.stats.BinStats` and the problems found, never raising for bad input.

The steps, in order (spec ``inputs.md``): open the label and the prediction; check shapes,
affines and the mask (:mod:`.checks`); then stream the channels one at a time — read a
channel, run the per-channel checks (softmax sums, the nnU-Net argmax), bin it — and finish
with the checks that need every channel. Value checks (finite, within [0, 1]) happen in the
kernel's single pass; their messages gain the case and file names here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..options import EvalOptions
from ..roi import spacing_from_affine
from ..stats import BinStats
from ..valuecheck import logit_hint
from .activation import activation_refusal, apply_activation
from .binner import Binner
from .checks import (
    CaseContext,
    check_affine,
    check_probability_dtype,
    check_qform_sform,
    check_scale_used,
    check_shape,
    load_labels,
    load_mask,
    squeeze_trailing,
)
from .classes import OptionsConflict, resolve
from .files import check_nifti_size, check_readable
from .nifti import load_nifti
from .readers import open_source
from .roipass import ChannelKeeper, roi_stats
from .segmentation import argmax_confusion, dice_rule
from .source import Source
from .toplabel import check_top_label, top_label_row
from .types import Case, CaseResult, InputError, Problem
from .watch import CaseInputs, ChannelWatch

if TYPE_CHECKING:  # the kernel module (Numba) loads with the first case, not with this one
    from ..binning import BinAccumulator

CLIP_WARN = 1e-6


def evaluate_case(case: Case, options: EvalOptions | None = None) -> CaseResult:
    """Check and bin one case; never raises for bad input.

    Returns ``CaseResult(case_id, stats, problems)``: ``stats`` is the :class:`BinStats` of the
    scored classes/regions (None when a check failed, with an error in ``problems``).
    """
    options = options or EvalOptions()
    ctx = CaseContext(case)
    if case.error:
        return _failed(ctx, InputError(case.error, case.prediction_name))
    try:
        stats, roi, info = _evaluate(case, options, ctx)
    except (InputError, ValueError, OSError, EOFError, MemoryError) as err:
        return _failed(ctx, err)
    except Exception as err:  # a reader bug or an exotic file: still one clear line
        return _failed(ctx, InputError(f"cannot evaluate: {type(err).__name__}: {err}"))
    return CaseResult(case.case_id, stats, ctx.problems, info, roi)


def _failed(ctx: CaseContext, err: Exception) -> CaseResult:
    """The case's error as one line naming the case and its files."""
    case = ctx.case
    text = " ".join(str(err).split()) or type(err).__name__
    prefix = f"case {case.case_id}: "
    if not text.endswith(ctx.message("")[len(prefix) + 1:]):
        text = ctx.message(text[len(prefix):] if text.startswith(prefix) else text)
    file = getattr(err, "file", "") or getattr(err, "filename", "") or case.prediction_name
    severity = "usage" if getattr(err, "usage", False) else "error"
    ctx.problems.append(Problem(case.case_id, str(file), text, severity))
    return CaseResult(case.case_id, None, ctx.problems)


def _evaluate(case: Case, options: EvalOptions,
              ctx: CaseContext) -> tuple[BinStats, BinStats | None, dict]:
    if why := activation_refusal(options.activation, case.format):
        raise ctx.fail(why, usage=True)
    for what, path in case.files:  # before any reader opens them (see .files)
        check_readable(path, what)
    label_img = load_nifti(case.label)
    label_shape = squeeze_trailing(tuple(label_img.shape))
    if len(label_shape) != 3:
        raise ctx.fail(f"label has shape {tuple(label_img.shape)}; expected a 3-D label map",
                       case.label)
    if 0 in label_shape:
        raise ctx.fail(f"label has a zero-size shape {tuple(label_img.shape)}: nothing to "
                       "score", case.label)
    check_nifti_size(case.label, label_img, "label")
    label_affine = np.asarray(label_img.affine, dtype=np.float64)
    source = open_source(case, options, label_affine)
    try:
        check_probability_dtype(ctx, source)
        check_scale_used(ctx, source, options.scale)
        source = apply_activation(source, options.activation)
        inputs = _open_inputs(case, options, ctx, source, label_img, label_shape, label_affine)
        info = {"class_labels": {t.name: list(t.members) for t in inputs.resolved.targets},
                "dice_rule": inputs.dice_rule}
        return (*_stream(inputs, ctx), info)
    finally:
        source.close()


def _open_inputs(case, options, ctx, source: Source, label_img, label_shape,
                 label_affine) -> CaseInputs:
    """Resolve the channels, check shapes and affines, read the mask and the labels."""
    try:
        resolved = resolve(source.n_channels, options, case.model, case.class_files)
    except ValueError as err:  # a conflict of the options is the run's, said once
        raise ctx.fail(str(err), usage=isinstance(err, OptionsConflict)) from None
    try:
        rule = dice_rule(options.dice, resolved)
    except ValueError as err:
        raise ctx.fail(str(err), usage=True) from None
    if options.top_label and (why := check_top_label(resolved.softmax,
                                                     resolved.channel_names)):
        raise ctx.fail(why, usage=True)
    check_shape(ctx, source, label_shape, case)
    for path, img in source.nifti_images:  # shapes agree: the header must fit its file too
        check_nifti_size(path, img, "prediction")
    check_qform_sform(ctx, ((case.label, label_img),) + tuple(source.nifti_images))
    segmentation = None
    if case.segmentation is not None and case.format.startswith("nnunet"):
        segmentation = _open_aligned(ctx, case.segmentation, "nnU-Net segmentation",
                                     case, label_shape, label_affine)
        check_qform_sform(ctx, ((case.segmentation, segmentation),))
    if source.affine is not None:
        check_affine(ctx, source.affine_file, source.affine, case.label, label_affine,
                     "prediction")
    for path, affine in getattr(source, "extra_affines", []):
        check_affine(ctx, path, affine, case.label, label_affine, "prediction")
    mask = None
    if case.mask is not None:
        mask_img = _open_aligned(ctx, case.mask, "mask", case, label_shape, label_affine)
        mask = load_mask(ctx, case.mask, mask_img, label_shape)
    # labels are read now; their problems are reported after the probability checks
    labels, label_error = load_labels(ctx, case.label, label_img, label_shape, resolved)
    _check_something_scored(ctx, mask, labels, resolved.ignore_label)
    return CaseInputs(case, options, source, resolved, labels, label_error, mask,
                      segmentation, tuple(label_shape), rule, spacing_from_affine(label_affine))


def _open_aligned(ctx, path, what, case, label_shape, label_affine):
    """A NIfTI that must lie on the label's grid (mask, nnU-Net segmentation)."""
    img = load_nifti(path)
    if squeeze_trailing(tuple(img.shape)) != tuple(label_shape):
        raise ctx.fail(f"{what} {path} has shape {tuple(img.shape)} but the label has "
                       f"{tuple(label_shape)}", path)
    check_nifti_size(path, img, what)
    check_affine(ctx, path, img.affine, case.label, label_affine, what)
    return img


def _check_something_scored(ctx, mask, labels, ignore_label) -> None:
    """A mask (with the ignore label) that excludes every voxel leaves nothing to score."""
    if mask is None:
        return
    kept = mask if labels is None or ignore_label is None else mask & (labels != ignore_label)
    if not kept.any():
        raise ctx.fail(f"the mask {ctx.case.mask} excludes every voxel"
                       + (" (with the ignore label)" if kept is not mask else "")
                       + ": nothing to score", ctx.case.mask)


# ------------------------------------------------------------------ the channel stream
def _stream(inputs: CaseInputs, ctx: CaseContext) -> tuple[BinStats, BinStats | None]:
    """Read, check and bin every channel, then run the checks that need all of them; then
    the optional rows and passes (top-label row, region of interest). Returns the case's
    statistics and, with ``roi``, those on each class's region of interest."""
    source = inputs.source
    watch = ChannelWatch(inputs, ctx)
    binner = Binner(inputs) if watch.can_bin else None
    keeper = ChannelKeeper() if inputs.options.roi and binner is not None else None
    for c in range(source.n_channels):
        data = _read_channel(inputs, ctx, c)
        as_float = watch.observe(c, data, scored=binner is not None and binner.scores(c))
        if keeper is not None and binner.scores(c):
            keeper.keep(c, data)
        if binner is not None:
            try:
                binner.add(c, data, as_float)
            except ValueError as err:  # the kernel's value checks
                raise ValueError(str(err) + logit_hint(err)) from None
        del data, as_float
    watch.finish(sums_explained=_warn_activation_of_probabilities(inputs, ctx))
    if inputs.label_error is not None:
        raise ctx.fail(inputs.label_error, inputs.case.label)
    watch.refuse_unscaled_integers()
    watch.self_check()
    stats = binner.result()
    if inputs.dice_rule == "argmax":
        stats = _with_argmax_confusion(stats, inputs, watch.argbest)
    watch.warn_not_probabilities(binner.accumulator.value_range)
    _warn_clipped(ctx, binner.accumulator, watch.clipped_max)
    roi = roi_stats(inputs, ctx, keeper, watch.argbest) if keeper is not None else None
    if inputs.options.top_label:
        stats = stats.join(top_label_row(inputs, watch.best, watch.argbest))
    return stats, roi


def _with_argmax_confusion(stats: BinStats, inputs: CaseInputs, argmax) -> BinStats:
    """``stats`` with the confusion counts (for Dice) of the argmax segmentation."""
    counts = argmax_confusion(argmax, inputs.resolved, inputs.labels, inputs.scored_voxels())
    return stats.replace(tp=counts[:, 0], fp=counts[:, 1], fn=counts[:, 2], tn=counts[:, 3])


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


def _warn_activation_of_probabilities(inputs: CaseInputs, ctx: CaseContext) -> bool:
    """Warns (and returns True) when an activation was applied to stored values that look
    like probabilities already."""
    look = getattr(inputs.source, "probability_look", None)
    found = look() if look is not None else None
    if found is None:
        return False
    act = inputs.options.activation
    ctx.warn(f"--activation {act} is applied to values that already look like probabilities "
             f"({found}): the numbers are those of {act}(probabilities); leave --activation "
             "out")
    return True


def _warn_clipped(ctx: CaseContext, accumulator: BinAccumulator, unscored_max: float) -> None:
    low, high = accumulator.value_range
    excursion = max(unscored_max, -low, high - 1)
    if excursion > CLIP_WARN:
        ctx.warn(f"probabilities lie outside [0, 1] by up to {excursion:.3g}; clipped "
                 "(counted per class in n_clipped)")
