"""The checks that run before any number is computed (spec ``inputs.md``), each naming the
case and the files: spatial shape, affines within 1e-3 (a warning when a file's qform and
sform disagree), integral and declared labels. Value checks (finite, within [0, 1]) belong to
the kernel's single pass (:mod:`calibviz.binning`); :class:`CaseContext` adds the case and
file names to what it reports."""

from __future__ import annotations

import numpy as np

from .classes import Resolved
from .source import Source
from .types import Case, InputError, Problem

AFFINE_TOLERANCE = 1e-3


class CaseContext:
    """Collects one case's warnings and names the case and both files in every message."""

    def __init__(self, case: Case) -> None:
        self.case = case
        self.problems: list[Problem] = []

    def message(self, text: str) -> str:
        case = self.case
        return (f"case {case.case_id}: {text} "
                f"(prediction {case.prediction_name}, label {case.label})")

    def fail(self, text: str, file: str | None = None, *, usage: bool = False) -> InputError:
        return InputError(self.message(text), file or self.case.prediction_name, usage=usage)

    def warn(self, text: str, file: str | None = None) -> None:
        self.problems.append(Problem(self.case.case_id, file or self.case.prediction_name,
                                     self.message(text), "warning"))



def check_scale_used(ctx: CaseContext, source: Source, scale: float | None) -> None:
    """Warn when the user's ``scale`` is not what this case's map is decoded with: it is
    stored as floats, or as integers with their own ``scl_slope`` (the run checked the
    first prediction file only; this map's values are used as stored)."""
    if scale is None or (source.scale is not None
                         and abs(source.scale - scale) <= 1e-6 * abs(scale)):
        return  # a file's own scl_slope equal to the scale (up to float32) applies it
    dtype = np.dtype(getattr(source, "_raw_dtype", source.dtype))
    stored = (f"stored as {dtype} with its own scl_slope {source.scale:g}" if source.integer
              else f"stored as {dtype}")
    ctx.warn(f"--scale {scale:g} is not applied to {source.path}: it is {stored}, and its "
             "values are used as stored")


def check_probability_dtype(ctx: CaseContext, source: Source) -> None:
    """The stored dtype can hold probabilities: floats or integers (scaled), booleans
    (refused later as a hard mask); complex, structured, text... are refused here, before
    any value is read, whatever the reader."""
    dtype = np.dtype(source.dtype)
    if dtype.kind not in "fiub" or dtype.fields is not None or dtype.subdtype is not None:
        raise ctx.fail(f"{source.path}: dtype {dtype} is not a probability dtype (expected "
                       "float or integer)", source.path)
    if dtype.kind == "f" and dtype.itemsize > 8:
        raise ctx.fail(f"{source.path}: dtype {dtype} is not a probability dtype (expected "
                       "float16, float32 or float64, or integer)", source.path)


def squeeze_trailing(shape: tuple[int, ...]) -> tuple[int, ...]:
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def check_shape(ctx: CaseContext, source: Source, label_shape, case: Case) -> None:
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
    label_shape = tuple(label_shape)
    if len(stored) >= 4 and stored[1:4] == label_shape and source.nifti_images:
        hint = (f"; the channel axis looks first (stored (C, i, j, k) with C = {stored[0]}): "
                "calibviz reads a 4-D NIfTI as (i, j, k, C), as MONAI SaveImage writes it; "
                "write the channels last (e.g. numpy.moveaxis(data, 0, -1))")
    elif sorted(shape) == sorted(label_shape):
        hint = ("; the axes look permuted (transposed volume?)"
                + ("; set the layout option" if case.format == "npy" else ""))
    elif case.format == "nnunet-v1":
        hint = ("; nnU-Net v1 npz files are cropped to the nonzero box of the image, so they "
                "only fit uncropped cases (use nnU-Net v2 --save_probabilities, or re-export "
                "the full-size softmax)")
    elif source.nifti_images:
        hint = ("; the prediction is on another grid than the label (MONAI >= 1.3 SaveImage "
                "writes with resample=False by default: resample the probabilities to the "
                "label's grid)")
    raise ctx.fail(f"probabilities have spatial shape {shape} (stored {stored}) but the label "
                   f"has {tuple(label_shape)}{hint}")


def check_affine(ctx: CaseContext, path, affine, label_path, label_affine,
                 what: str = "prediction") -> None:
    """``affine`` (of the ``what`` file ``path``: prediction, mask, ...) within the tolerance
    of the label's; the message prints both, each under its own file's role."""
    diff = float(np.max(np.abs(np.asarray(affine, dtype=np.float64) - label_affine)))
    if not diff <= AFFINE_TOLERANCE:
        raise ctx.fail(
            f"affine of {what} {path} differs from the label's by up to {diff:.4g} "
            f"(tolerance {AFFINE_TOLERANCE:g}): the images are not on the same grid; "
            f"{what} affine {np.round(affine, 4).tolist()}, label affine "
            f"{np.round(label_affine, 4).tolist()}", str(path),
        )


def load_mask(ctx: CaseContext, path, img, shape) -> np.ndarray:
    """The mask as booleans ``(i, j, k)``; it must hold 0 and 1 only (or booleans): a NaN,
    a soft value (0.5) or another label value is an error naming the values found."""
    try:
        data = np.asanyarray(img.dataobj)
    except Exception as err:
        raise ctx.fail(f"cannot read mask file {path}: {type(err).__name__}: {err}",
                       str(path)) from None
    data = data.reshape(shape, order="F") if data.shape != tuple(shape) else data
    if data.dtype.kind == "b":
        return data
    if data.dtype.kind not in "fiu":
        raise ctx.fail(f"mask {path} has dtype {data.dtype}; expected 0 and 1 (a boolean "
                       "or integer mask)", str(path))
    inside = data == 1
    bad = ~inside
    bad &= data != 0
    n_bad = int(np.count_nonzero(bad))
    if n_bad:
        found = np.unique(data[bad])  # NaN sorts last
        shown = ", ".join("NaN" if v != v else f"{v:g}" for v in found[:5].tolist())
        more = f" and {len(found) - 5} more" if len(found) > 5 else ""
        raise ctx.fail(f"mask {path} holds values other than 0 and 1 in {n_bad} "
                       f"voxel{'s' if n_bad > 1 else ''} "
                       f"({shown}{more}); expected 0 and 1 (voxels with 1 are scored)",
                       str(path))
    return inside


def check_qform_sform(ctx: CaseContext, images) -> None:
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


def load_labels(ctx: CaseContext, path, img, shape, resolved: Resolved):
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
    present = present_values(data)
    undeclared = sorted(set(present) - declared)
    error = None
    if undeclared:
        n_bad = int(np.count_nonzero(~np.isin(data, list(declared))))
        error = (f"label {path} holds values {undeclared} ({n_bad} voxels) that no class "
                 f"declares (declared: {sorted(declared)})")
    return data, error


def present_values(data: np.ndarray) -> list[int]:
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
