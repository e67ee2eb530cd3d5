"""Cheap looks at a folder as a whole, before any case runs: diagnoses a user can act on.

Each reads headers and at most one small data sample.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .files import check_nifti_size, check_readable


def _header(path: Path):
    """The nibabel image of ``path`` (header only), or None when it cannot be read."""
    try:
        check_readable(path)
        import nibabel as nib

        img = nib.load(str(path))
        check_nifti_size(str(path), img)
        return img
    except Exception:
        return None


def _unscaled_integers(img) -> bool:
    """A 3-D integer map without ``scl_slope``: how label maps are stored."""
    if img.header.get_data_dtype().kind not in "iub":
        return False
    shape = tuple(img.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    slope, inter = img.header.get_slope_inter()
    scaled = (slope is not None and np.isfinite(slope) and slope != 1) or \
        (inter is not None and np.isfinite(inter) and inter != 0)
    return len(shape) == 3 and not scaled


def _holds_probabilities(img) -> bool:
    """Float data with non-integral values in [0, 1] in the middle slice (one small read)."""
    if img.header.get_data_dtype().kind != "f" or len(img.shape) < 3:
        return False
    index = (slice(None), slice(None), img.shape[2] // 2) + (0,) * (len(img.shape) - 3)
    try:
        sample = np.asarray(img.dataobj[index], dtype=np.float64)
    except Exception:
        return False
    sample = sample[np.isfinite(sample)]
    fractional = (sample > 0) & (sample < 1)
    return bool(fractional.any()) and sample.min() >= 0 and sample.max() <= 1


def check_not_swapped(pred_dir: Path, fmt: str, pred_files, label_files, options) -> None:
    """Raise ``ValueError`` when the prediction folder holds label maps and the label folder
    probabilities: the folders were given in the wrong order (nnU-Net's evaluation takes the
    ground truth first)."""
    if fmt != "nifti" or options.scale is not None or not pred_files or not label_files:
        return
    pred = _header(pred_files[0])
    if pred is None or not _unscaled_integers(pred):
        return
    label = _header(label_files[0])
    if label is None or not _holds_probabilities(label):
        return
    raise ValueError(
        f"the folders look swapped: {pred_dir} holds label maps; give the predictions first, "
        f"then the labels ({pred_files[0].name} is {pred.header.get_data_dtype()} without "
        f"scaling, {label_files[0].name} in the label folder holds probabilities)")


def check_scale_applies(cases, options) -> None:
    """Raise ``ValueError`` when ``scale`` is given but the first prediction file would ignore
    it: it is stored as floats, or as integers with their own ``scl_slope``/``scl_inter``
    (which nibabel applies). Said before any case runs, so that ``run.json`` never records a
    scale that was not applied."""
    if options.scale is None:
        return
    for case in cases:
        first = case.prediction[0] if isinstance(case.prediction, tuple) else case.prediction
        img = _header(Path(first))
        if img is None:
            continue  # its case reports why it cannot be read
        dtype = img.header.get_data_dtype()
        proxy = img.dataobj
        slope, inter = getattr(proxy, "slope", 1.0), getattr(proxy, "inter", 0.0)
        scaled = any(v is not None and np.isfinite(v) and v != default
                     for v, default in ((slope, 1.0), (inter, 0.0)))
        applies = ("--scale applies only to integer-stored probability maps without their own "
                   "scl_slope")
        if dtype.kind == "f":
            raise ValueError(f"{applies}; {first} is stored as {dtype}: leave it out")
        if dtype.kind in "iu" and scaled:
            raise ValueError(f"{applies}; {first} is stored as {dtype} with scl_slope "
                             f"{float(slope):g} and scl_inter {float(inter):g}, which are "
                             "applied: leave it out")
        return
