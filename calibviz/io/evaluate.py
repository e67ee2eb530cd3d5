"""Evaluating one case (a pure function of file paths and options) and a whole folder.

The checks run before any number is reported, in this order (spec ``inputs.md``): spatial
shape; affine within 1e-3 (warning when a file's qform and sform disagree); probabilities
finite and in [0, 1]; channel sums ≈ 1 in softmax mode (warning); labels integral and
declared; integer maps holding only {0, 1} refused; nnU-Net self-check. Channels are
streamed one at a time through :class:`calibviz.binning.BinAccumulator`; a case that fails a
check gives ``stats=None`` and an error naming the case and both files.
"""

from __future__ import annotations

import numpy as np

from ..binning import BinAccumulator
from ..stats import BinStats
from .classes import InputError, Resolved, resolve
from .discover import discover_cases
from .readers import NiftiSource, Source, load_nifti, open_source
from .types import Case, CaseResult, EvalOptions, FolderResult, Problem

AFFINE_TOLERANCE = 1e-3
CLIP_WARN = 1e-6
CLIP_ERROR = 1e-3
SUM_TOLERANCE = 1e-3
SELF_CHECK_ERROR_FRACTION = 1e-3


class _Context:
    """Names the case and both files in every message."""

    def __init__(self, case: Case) -> None:
        self.case = case
        self.problems: list[Problem] = []

    def message(self, text: str) -> str:
        case = self.case
        return (f"case {case.case_id}: {text} "
                f"(prediction {case.prediction_name}, label {case.label})")

    def fail(self, text: str, file: str | None = None) -> InputError:
        return InputError(self.message(text), file or self.case.prediction_name)

    def warn(self, text: str, file: str | None = None) -> None:
        self.problems.append(Problem(self.case.case_id, file or self.case.prediction_name,
                                     self.message(text), "warning"))


def evaluate_case(case: Case, options: EvalOptions | None = None) -> CaseResult:
    """Check and bin one case; never raises for bad input.

    Returns ``CaseResult(case_id, stats, problems)``: ``stats`` is the :class:`BinStats` of the
    scored classes/regions (None when a check failed, with an error in ``problems``).
    """
    options = options or EvalOptions()
    ctx = _Context(case)
    try:
        stats = _evaluate(case, options, ctx)
    except InputError as err:
        text = str(err)
        if not text.startswith(f"case {case.case_id}:"):
            text = ctx.message(text)
        ctx.problems.append(Problem(case.case_id, err.file or case.prediction_name, text))
        return CaseResult(case.case_id, None, ctx.problems)
    except (ValueError, OSError, EOFError, MemoryError) as err:
        text = str(err)
        if not text.startswith(f"case {case.case_id}:"):
            text = ctx.message(text)
        ctx.problems.append(Problem(case.case_id, case.prediction_name, text))
        return CaseResult(case.case_id, None, ctx.problems)
    except Exception as err:  # a reader bug or an exotic file: still one clear line
        ctx.problems.append(Problem(case.case_id, case.prediction_name, ctx.message(
            f"cannot evaluate: {type(err).__name__}: {err}")))
        return CaseResult(case.case_id, None, ctx.problems)
    return CaseResult(case.case_id, stats, ctx.problems)


def evaluate_folder(pred_dir, label_dir, **options) -> FolderResult:
    """Discover, pair and evaluate every case of a prediction folder against a label folder.

    ``options`` are the fields of :class:`EvalOptions` (e.g. ``n_bins=15``,
    ``regions="WT=1,2,4;TC=1,4;ET=4"``). Returns the ids and per-image :class:`BinStats` of
    the cases that passed every check, and every problem found (cases that failed are
    reported and skipped; the others go on). Raises :class:`ValueError` for a missing or
    empty folder.
    """
    opts = options.pop("options", None) or EvalOptions.from_kwargs(**options)
    cases, problems = discover_cases(pred_dir, label_dir, opts)
    ids: list[str] = []
    stats: list[BinStats] = []
    for case in cases:
        result = evaluate_case(case, opts)
        problems.extend(result.problems)
        if result.stats is not None:
            ids.append(result.case_id)
            stats.append(result.stats)
    return FolderResult(ids, stats, problems)


# --------------------------------------------------------------------------- the work
def _evaluate(case: Case, options: EvalOptions, ctx: _Context) -> BinStats:
    label_img = load_nifti(case.label)
    label_shape = _squeeze_trailing(tuple(label_img.shape))
    if len(label_shape) != 3:
        raise ctx.fail(f"label has shape {tuple(label_img.shape)}; expected a 3-D label map",
                       case.label)
    label_affine = np.asarray(label_img.affine, dtype=np.float64)
    source = open_source(case, options, label_affine)
    try:
        return _evaluate_source(case, options, ctx, source, label_img, label_shape, label_affine)
    finally:
        source.close()


def _evaluate_source(case, options, ctx, source: Source, label_img, label_shape, label_affine):
    try:
        resolved = resolve(source.n_channels, options, case.model, case.class_files)
    except ValueError as err:
        raise ctx.fail(str(err)) from None

    # 1. spatial shape
    _check_shape(ctx, source, label_shape, case)
    # 2. affines (and qform/sform agreement)
    _check_qform_sform(ctx, ((case.label, label_img),) + tuple(source.nifti_images))
    seg_img = None
    if case.segmentation is not None and case.format.startswith("nnunet"):
        seg_img = load_nifti(case.segmentation)
        _check_qform_sform(ctx, ((case.segmentation, seg_img),))
        if _squeeze_trailing(tuple(seg_img.shape)) != label_shape:
            raise ctx.fail(f"nnU-Net segmentation {case.segmentation} has shape "
                           f"{tuple(seg_img.shape)} but the label has {label_shape}",
                           case.segmentation)
        _check_affine(ctx, case.segmentation, seg_img.affine, case.label, label_affine)
    if source.affine is not None:
        _check_affine(ctx, source.affine_file, source.affine, case.label, label_affine)
    for path, affine in getattr(source, "extra_affines", []):
        _check_affine(ctx, path, affine, case.label, label_affine)
    mask = None
    if case.mask is not None:
        mask_img = load_nifti(case.mask)
        if _squeeze_trailing(tuple(mask_img.shape)) != label_shape:
            raise ctx.fail(f"mask {case.mask} has shape {tuple(mask_img.shape)} but the label "
                           f"has {label_shape}", case.mask)
        _check_affine(ctx, case.mask, mask_img.affine, case.label, label_affine)
        mask = np.asanyarray(mask_img.dataobj).reshape(label_shape, order="F") != 0

    # labels are loaded now, but their problems are reported after the probability checks
    labels, label_error = _load_labels(ctx, case.label, label_img, label_shape, resolved)

    # 3.-7. stream the channels
    return _stream(case, options, ctx, source, resolved, labels, label_error, mask, seg_img,
                   label_shape)


def _stream(case, options, ctx, source: Source, resolved: Resolved, labels, label_error,
            mask, seg_img, label_shape) -> BinStats:
    integer = source.integer
    unscaled_int = integer and source.scale is None
    precision = source.dtype if source.dtype.kind == "f" else np.float64
    acc = BinAccumulator(resolved.names, n_bins=options.n_bins, precision=precision,
                         closure=options.closure, binning=options.binning,
                         empty_weight=options.empty_weight,
                         where=f"case {case.case_id}: ")
    bin_now = label_error is None and not unscaled_int
    sum_dtype = np.float64 if source.dtype.itemsize > 4 or integer else np.float32
    shape = resolved_shape = tuple(label_shape)
    running_sum = np.zeros(shape, dtype=np.float32, order="F") if resolved.softmax else None
    self_check = (options.self_check and case.format.startswith("nnunet")
                  and seg_img is not None)
    if options.self_check and case.format.startswith("nnunet") and seg_img is None:
        ctx.warn("no segmentation written next to the npz; nnU-Net self-check skipped")
    region_model = case.model is not None and case.model.is_region
    best = argbest = recon = None
    if self_check and region_model:
        recon = np.zeros(shape, dtype=np.int16, order="F")
    elif self_check:
        best = np.full(shape, -np.inf, dtype=np.float32, order="F")
        argbest = np.zeros(shape, order="F",
                           dtype=np.uint8 if source.n_channels <= 256 else np.int16)
    last_use = {}
    for t_index, target in enumerate(resolved.targets):
        last_use[t_index] = max(target.channels)
    partial: dict[int, np.ndarray] = {}
    int_max = 0
    clipped_max = 0.0
    for c in range(source.n_channels):
        try:
            data = source.channel(c)
        except InputError:
            raise
        except Exception as err:
            raise ctx.fail(f"cannot read channel {c} of {source.path}: "
                           f"{type(err).__name__}: {err}") from None
        if data.shape != resolved_shape:
            raise ctx.fail(f"channel {c} of {source.path} has shape {data.shape}, expected "
                           f"{resolved_shape}")
        name = resolved.channel_names[c]
        # 3. finite and in [0, 1]
        if unscaled_int:
            if data.size:
                int_max = max(int_max, int(data.max()))
                if int(data.min()) < 0:
                    raise ctx.fail(f"probabilities of {name!r} are stored as {source.dtype} "
                                   f"with negative values")
            values = None
        else:
            values = data
            lo, hi = _range(data, source)
            if not (np.isfinite(lo) and np.isfinite(hi)):
                bad = int(np.count_nonzero(~np.isfinite(_as_float(data, source))))
                raise ctx.fail(f"probabilities of {name!r} (channel {c}) contain {bad} "
                               f"non-finite values (NaN or inf); expected values in [0, 1]")
            if lo < -CLIP_ERROR or hi > 1 + CLIP_ERROR:
                raise ctx.fail(f"probabilities of {name!r} (channel {c}) range over "
                               f"[{lo:.6g}, {hi:.6g}]; expected values in [0, 1] "
                               f"(values up to {CLIP_ERROR:g} outside are clipped)")
            clipped_max = max(clipped_max, -lo, hi - 1)
        need_float = (running_sum is not None or best is not None or recon is not None
                      or any(len(t.channels) > 1 and c in t.channels for t in resolved.targets))
        as_float = _as_float(data, source) if need_float and values is not None else None
        if running_sum is not None and as_float is not None:
            running_sum += as_float
        if best is not None and as_float is not None:
            better = np.greater(as_float, best)
            np.copyto(best, as_float, where=better)
            np.copyto(argbest, c, where=better)
            del better
        if recon is not None and as_float is not None:
            recon[as_float > 0.5] = case.model.regions_class_order[c]
        if not bin_now:
            continue
        for t_index, target in enumerate(resolved.targets):
            if c not in target.channels:
                continue
            if len(target.channels) == 1:
                acc.add_class(t_index, data, labels, region=list(target.members), mask=mask,
                              ignore_label=resolved.ignore_label,
                              declared_labels=resolved.declared, scale=source.scale,
                              intercept=source.intercept)
                continue
            if t_index in partial:
                partial[t_index] += as_float.astype(sum_dtype, copy=False)
            else:
                partial[t_index] = np.array(as_float, dtype=sum_dtype, order="F")
            if c == last_use[t_index]:
                acc.add_class(t_index, partial.pop(t_index), labels,
                              region=list(target.members), mask=mask,
                              ignore_label=resolved.ignore_label,
                              declared_labels=resolved.declared)
        del data, values, as_float
    best = None  # free before the end-of-case checks
    if clipped_max > CLIP_WARN:
        ctx.warn(f"probabilities lie outside [0, 1] by up to {clipped_max:.3g}; clipped "
                 "(counted per class in n_clipped)")

    # softmax: channel sums ≈ 1 (warning)
    if running_sum is not None:
        zero = running_sum == 0
        n_zero = int(np.count_nonzero(zero))
        running_sum -= 1
        np.abs(running_sum, out=running_sum)
        running_sum[zero] = 0
        n_off = int(np.count_nonzero(running_sum > SUM_TOLERANCE))
        total = running_sum.size
        if n_off:
            ctx.warn(f"softmax channel sums differ from 1 by more than {SUM_TOLERANCE:g} in "
                     f"{n_off / total:.2%} of voxels ({n_off} of {total}); are these "
                     "probabilities of a softmax model?")
        if n_zero:
            ctx.warn(f"{n_zero / total:.2%} of voxels have every channel 0 (nnU-Net 2.0/2.1 "
                     "writes zeros outside the crop box); they are scored as probability 0")
        del zero
        running_sum = None

    # labels integral and declared
    if label_error is not None:
        raise ctx.fail(label_error, case.label)

    # integer map holding only {0, 1}: a hard mask, not probabilities
    if unscaled_int:
        if int_max <= 1:
            raise ctx.fail(f"prediction is stored as {source.dtype} holding only 0 and 1: a hard "
                           "segmentation mask, not probabilities; calibration needs the "
                           "probability maps (e.g. nnU-Net --save_probabilities)")
        raise ctx.fail(f"prediction is stored as integers ({source.dtype}, max {int_max}) "
                       "without scl_slope; give the scale option (e.g. scale=1/255)")

    # nnU-Net self-check
    if self_check:
        seg = np.asanyarray(seg_img.dataobj).reshape(shape, order="F")
        if recon is not None:
            predicted = recon
            what = "region reconstruction (regions_class_order, p > 0.5)"
        else:
            values = [v[0] for v in resolved.channel_values]
            if values == list(range(len(values))):
                predicted = argbest
            else:
                predicted = np.asarray(values, dtype=np.int32)[argbest]
            what = "argmax"
        mismatch = int(np.count_nonzero(predicted != seg))
        if mismatch:
            fraction = mismatch / seg.size
            text = (f"nnU-Net self-check: the {what} of the npz differs from the segmentation "
                    f"{case.segmentation} in {fraction:.2%} of voxels ({mismatch}); ")
            if fraction > SELF_CHECK_ERROR_FRACTION:
                raise ctx.fail(text + "the probabilities are misread (axis order or "
                               "orientation?) or belong to another case", case.segmentation)
            ctx.warn(text + "ties or rounding?", case.segmentation)
    return acc.result()


# --------------------------------------------------------------------------- helpers
def _squeeze_trailing(shape: tuple[int, ...]) -> tuple[int, ...]:
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


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


def _check_shape(ctx: _Context, source: Source, label_shape, case: Case) -> None:
    shape = tuple(source.spatial_shape)
    if shape == tuple(label_shape):
        return
    stored = tuple(source.stored_shape)
    if shape[::-1] == tuple(label_shape) and not source.reversed:
        raise ctx.fail(
            f"probabilities have spatial shape {shape} (stored {stored}) but the label has "
            f"{tuple(label_shape)}: the axes look reversed (k, j, i); set the layout option "
            "(e.g. layout='ckji') if the array is stored reversed"
        )
    hint = ""
    if sorted(shape) == sorted(label_shape):
        hint = ("; the axes look permuted (transposed volume?)"
                + ("; set the layout option" if case.format == "npy" else ""))
    elif case.format == "nnunet-v1":
        hint = ("; nnU-Net v1 npz files are cropped to the nonzero box of the image, so they "
                "only fit uncropped cases (use nnU-Net v2 --save_probabilities, or re-export "
                "the full-size softmax)")
    elif isinstance(source, NiftiSource):
        hint = ("; the prediction is on another grid than the label (MONAI >= 1.3 SaveImage "
                "writes with resample=False by default: resample the probabilities to the "
                "label's grid)")
    raise ctx.fail(f"probabilities have spatial shape {shape} (stored {stored}) but the label "
                   f"has {tuple(label_shape)}{hint}")


def _check_affine(ctx: _Context, path, affine, label_path, label_affine) -> None:
    diff = float(np.max(np.abs(np.asarray(affine, dtype=np.float64) - label_affine)))
    if not diff <= AFFINE_TOLERANCE:
        raise ctx.fail(
            f"affine of {path} differs from the label's by up to {diff:.4g} (tolerance "
            f"{AFFINE_TOLERANCE:g}): the images are not on the same grid; "
            f"prediction affine {np.round(affine, 4).tolist()}, label affine "
            f"{np.round(label_affine, 4).tolist()}", str(path),
        )


def _check_qform_sform(ctx: _Context, images) -> None:
    for path, img in images:
        header = getattr(img, "header", None)
        if header is None or not hasattr(header, "get_qform"):
            continue
        qform, qcode = header.get_qform(coded=True)
        sform, scode = header.get_sform(coded=True)
        if qform is None or sform is None or not qcode or not scode:
            continue
        diff = float(np.max(np.abs(qform - sform)))
        if diff > AFFINE_TOLERANCE:
            ctx.warn(f"{path}: qform and sform disagree by up to {diff:.4g}; nibabel uses the "
                     "sform, SimpleITK/ITK the qform, so tools may place this image differently",
                     str(path))


def _load_labels(ctx: _Context, path, img, shape, resolved: Resolved):
    """The label map as integers ``(i, j, k)`` and an error text (or None) about its values."""
    try:
        data = np.asanyarray(img.dataobj)
    except Exception as err:
        raise ctx.fail(f"cannot read label file {path}: {type(err).__name__}: {err}",
                       str(path)) from None
    data = data.reshape(shape, order="F") if data.shape != shape else data
    if data.dtype.kind == "f":
        finite = np.isfinite(data)
        integral = finite & (data == np.round(data))
        if not integral.all():
            bad = np.unique(data[~integral])[:5]
            return None, (f"label {path} holds non-integral values such as {bad.tolist()}; "
                          "expected an integer label map")
        data = data.astype(np.int32)
    elif data.dtype.kind == "b":
        data = data.view(np.uint8)
    elif data.dtype.kind not in "iu":
        raise ctx.fail(f"label {path} has dtype {data.dtype}; expected integers", str(path))
    declared = set(resolved.declared)
    present = _present_values(data)
    undeclared = sorted(set(present) - declared)
    error = None
    if undeclared:
        n_bad = int(np.count_nonzero(~np.isin(data, list(declared))))
        error = (f"label {path} holds values {undeclared} ({n_bad} voxels) that no class "
                 f"declares (declared: {sorted(declared)})")
    return data, error


def _present_values(data: np.ndarray) -> list[int]:
    if data.size == 0:
        return []
    lo, hi = int(data.min()), int(data.max())
    if lo >= 0 and hi < 2**16:
        flat = data.ravel(order="K")
        if flat.dtype == np.uint64:
            flat = flat.astype(np.intp)
        counts = np.bincount(flat, minlength=hi + 1)
        return [int(v) for v in np.flatnonzero(counts)]
    return [int(v) for v in np.unique(data)]
