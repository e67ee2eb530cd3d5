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
    return img.header.get_data_dtype().kind in "iub" and _single_channel_unscaled(img)


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


#: At most this many distinct values in a sampled slice make integers look like labels.
LABEL_LIKE_VALUES = 16


def _single_channel_unscaled(img) -> bool:
    """3-D (or 3-D with trailing singleton axes) and stored without scaling."""
    shape = tuple(img.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    return len(shape) == 3 and not _scaled(img)


def _scaled(img) -> bool:
    """Whether nibabel scales the stored values of ``img`` (its ``scl_slope``/``scl_inter``:
    a loaded image keeps them on its data proxy, its header's are NaN)."""
    proxy = img.dataobj
    slope, inter = getattr(proxy, "slope", 1.0), getattr(proxy, "inter", 0.0)
    return any(v is not None and np.isfinite(v) and v != default
               for v, default in ((slope, 1.0), (inter, 0.0)))


def _first_sample(path: Path, fmt: str, layout: str | None):
    """``(dtype, sample)`` of a single-channel unscaled integer or float map (its middle
    slice), or None when ``path`` is anything else or cannot be read cheaply."""
    if fmt == "nifti":
        img = _header(path)
        if img is None or img.header.get_data_dtype().kind not in "iubf" \
                or not _single_channel_unscaled(img):
            return None
        index = (slice(None), slice(None), img.shape[2] // 2) + (0,) * (len(img.shape) - 3)
        try:
            return img.header.get_data_dtype(), np.asarray(img.dataobj[index])
        except Exception:
            return None
    if fmt == "npy" and path.suffix == ".npy" and layout and "c" not in layout.lower():
        from .readers import load_npy

        try:
            array = load_npy(str(path))  # header checked first: no pickles, no short file
        except Exception:  # noqa: BLE001 - unreadable: its case says why
            return None
        if array.dtype.kind not in "iubf" or array.ndim != 3:
            return None
        return array.dtype, np.asarray(array[:, :, array.shape[2] // 2])
    return None


def _label_values(path: Path, fmt: str, layout: str | None):
    """``(dtype, values)`` when ``path`` is a single-channel map whose sampled slice holds a
    few (2 or more) non-negative integers: integer storage, or float storage with values
    above 1 (a float map of only 0 and 1 may be a confident probability map); else None."""
    found = _first_sample(path, fmt, layout)
    if found is None:
        return None
    dtype, sample = found
    if not (np.isfinite(sample).all() and np.array_equal(sample, np.round(sample))):
        return None
    values = np.unique(sample)
    if not 2 <= values.size <= LABEL_LIKE_VALUES or values.min() < 0:  # all 0: no evidence
        return None
    if dtype.kind == "f" and values.max() < 2:
        return None
    return dtype, [int(v) for v in values]


def check_not_label_maps(pred_dir: Path, fmt: str, pred_files, options) -> None:
    """Raise ``ValueError`` when the first and the last prediction are single-channel maps
    of a few non-negative integers without scaling: segmentations (label maps), not
    probabilities (one such file among probability maps is that case's own error). With
    ``scale`` the user says integers are quantised probabilities; with ``activation``, that
    floats are logits."""
    if options.scale is not None or not pred_files:
        return
    layout = getattr(options, "layout", None)
    first = _label_values(Path(pred_files[0]), fmt, layout)
    if first is None or (first[0].kind == "f" and options.activation is not None):
        return
    if len(pred_files) > 1 and _label_values(Path(pred_files[-1]), fmt, layout) is None:
        return
    dtype, values = first
    hint = (", or the scale option if these are quantised probabilities"
            if dtype.kind in "iub" else "")
    raise ValueError(
        f"the prediction folder {pred_dir} seems to hold label maps: {pred_files[0]} is a "
        f"single-channel {dtype} map without scaling holding the integers {values}"
        + (f" (and so is {Path(pred_files[-1]).name})" if len(pred_files) > 1 else "")
        + f"; give the folder of probability maps (e.g. nnU-Net --save_probabilities){hint}")


def check_scale_applies(cases, options) -> None:
    """Raise ``ValueError`` when ``scale`` is given but the first prediction file would ignore
    it: it is stored as floats, or as integers with their own ``scl_slope``/``scl_inter``
    (which nibabel applies). Said before any case runs, so that ``run.json`` never records a
    scale that was not applied."""
    if options.scale is None:
        return
    for case in cases:
        first = case.prediction[0] if isinstance(case.prediction, tuple) else case.prediction
        if Path(first).suffix in (".npy", ".npz"):  # arrays: no scaling of their own
            dtype = _array_dtype(Path(first), options.npz_key)
            if dtype is None:
                continue  # its case reports why it cannot be read
            if dtype.kind == "f":
                raise ValueError("--scale applies only to integer-stored probability maps; "
                                 f"{first} is stored as {dtype}: leave it out")
            return
        img = _header(Path(first))
        if img is None:
            continue  # its case reports why it cannot be read
        dtype = img.header.get_data_dtype()
        slope, inter = getattr(img.dataobj, "slope", 1.0), getattr(img.dataobj, "inter", 0.0)
        scaled = _scaled(img)
        applies = ("--scale applies only to integer-stored probability maps without their own "
                   "scl_slope")
        if dtype.kind == "f":
            raise ValueError(f"{applies}; {first} is stored as {dtype}: leave it out")
        if dtype.kind in "iu" and scaled:
            raise ValueError(f"{applies}; {first} is stored as {dtype} with scl_slope "
                             f"{float(slope):g} and scl_inter {float(inter):g}, which are "
                             "applied: leave it out")
        return


def _array_dtype(path: Path, key: str | None):
    """The stored dtype of a generic ``.npy`` file or ``.npz`` member (its header only), or
    None when it cannot be read."""
    from .readers import GENERIC_KEYS, NpyStream, load_npy

    try:
        if path.suffix == ".npz":
            stream = NpyStream(str(path), key, candidates=GENERIC_KEYS)
            stream.close()
            return stream.dtype
        return load_npy(str(path)).dtype
    except Exception:  # noqa: BLE001 - unreadable: its case says why
        return None
