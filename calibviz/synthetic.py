"""Seeded synthetic cases and writers for every input format calibviz reads.

Used by the tests and by ``calibviz demo``: nothing binary is committed, every fixture is
written from NumPy arrays and an affine. Probability arrays are ``(C, i, j, k)`` in nibabel
axis order; label maps are integer ``(i, j, k)``.

>>> labels, probs = make_case((8, 8, 4), n_classes=3, seed=0)
>>> probs.shape, labels.shape, bool(np.allclose(probs.sum(axis=0), 1, atol=1e-6))
((3, 8, 8, 4), (8, 8, 4), True)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "liver_phantom",
    "sample_labels",
    "sharpen",
    "gaussian_smooth",
    "make_calibrated_case",
    "make_case",
    "make_region_case",
    "region_segmentation",
    "smooth",
    "write_label",
    "write_monai",
    "write_nifti",
    "write_nnunet_v1",
    "write_nnunet_v2",
]


def make_case(
    shape: Sequence[int] = (32, 32, 16),
    n_classes: int = 3,
    *,
    seed: int = 0,
    label_values: Sequence[int] | None = None,
    sharpness: float = 2.0,
) -> tuple[np.ndarray, np.ndarray]:
    """A label map and softmax probabilities ``(C, *shape)`` float32 that roughly agree.

    Labels are blobs (smoothed noise, argmax over classes); probabilities are a softmax of
    noisy logits favouring the true class. ``label_values``: the label value of each channel
    (default ``0..C-1``).
    """
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in shape)
    values = np.arange(n_classes) if label_values is None else np.asarray(label_values)
    field = smooth(rng.normal(size=(n_classes, *shape)), passes=2)
    index = np.argmax(field, axis=0)
    labels = values[index].astype(np.uint8)
    logits = sharpness * np.eye(n_classes)[index].transpose(3, 0, 1, 2)
    logits = logits + smooth(rng.normal(scale=1.5, size=(n_classes, *shape)), passes=1)
    logits -= logits.max(axis=0, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=0, keepdims=True)
    return labels, probs.astype(np.float32)


def make_calibrated_case(
    shape: Sequence[int] = (96, 96),
    n_classes: int = 3,
    *,
    sharpen: float = 2.0,
    seed: int | np.random.Generator = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A label map and a model's probabilities ``(C, *shape)`` float32 with a known
    calibration error.

    A "true" probability map ``q`` (a softmax of smooth noise, class 0 the most common) is
    perfectly calibrated: the labels are sampled from it. The model predicts ``q**sharpen``
    renormalised: ``sharpen > 1`` is over-confident, ``< 1`` under-confident, ``1``
    calibrated. ``seed``: an int or a ``Generator`` to draw from (successive calls then
    give different cases).
    """
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in shape)
    logits = np.stack([gaussian_smooth(rng.normal(size=shape), 5) * 45
                       for _ in range(n_classes)])
    logits[0] += 2.0  # background is the most common class
    q = np.exp(logits - logits.max(axis=0))
    q /= q.sum(axis=0)
    labels = (rng.random(shape)[None] > np.cumsum(q, axis=0)).sum(axis=0)  # sampled from q
    p = q**sharpen
    p /= p.sum(axis=0)
    return labels, p.astype(np.float32)


def make_region_case(
    shape: Sequence[int] = (32, 32, 16),
    regions: Sequence[Sequence[int]] = ((1, 2, 4), (1, 4), (4,)),
    label_values: Sequence[int] = (0, 1, 2, 4),
    *,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A label map over ``label_values`` and sigmoid region probabilities ``(R, *shape)``."""
    rng = np.random.default_rng(seed)
    labels, _ = make_case(shape, len(label_values), seed=seed, label_values=label_values)
    probs = []
    for region in regions:
        truth = np.isin(labels, region)
        logit = np.where(truth, 2.0, -2.0) + smooth(rng.normal(scale=2.0, size=labels.shape), 1)
        probs.append(1 / (1 + np.exp(-logit)))
    return labels, np.stack(probs).astype(np.float32)


def region_segmentation(probs: np.ndarray, regions_class_order: Sequence[int]) -> np.ndarray:
    """nnU-Net's region reconstruction: paint ``regions_class_order[r]`` where ``p_r > 0.5``."""
    seg = np.zeros(probs.shape[1:], dtype=np.uint8)
    for r, value in enumerate(regions_class_order):
        seg[probs[r] > 0.5] = value
    return seg


def smooth(a: np.ndarray, passes: int) -> np.ndarray:
    """Box-smooth noise over the spatial axes (the last three of a 4-D array), periodic."""
    for _ in range(passes):
        for axis in range(1, a.ndim) if a.ndim == 4 else range(a.ndim):
            a = (a + np.roll(a, 1, axis) + np.roll(a, -1, axis)) / 3
    return a


def gaussian_smooth(a: np.ndarray, sigma: float, truncate: float = 4.0) -> np.ndarray:
    """Gaussian smoothing along every axis, edges mirrored (as
    ``scipy.ndimage.gaussian_filter`` does by default), float64."""
    radius = int(truncate * sigma + 0.5)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    out = np.asarray(a, dtype=np.float64)
    for axis in range(out.ndim):
        width = [(radius, radius) if i == axis else (0, 0) for i in range(out.ndim)]
        padded = np.pad(out, width, mode="symmetric")
        size = out.shape[axis]
        out = sum(w * np.take(padded, np.arange(j, j + size), axis=axis)
                  for j, w in enumerate(taps))
    return out


# --------------------------------------------------------------------------- NIfTI
def liver_phantom(shape, rng: np.random.Generator) -> np.ndarray:
    """float64 ``(4, *shape)`` smooth class probabilities: a liver blob holding a tumour and
    vessels, soft at the boundaries."""
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    centre = rng.uniform(-0.15, 0.15, size=3)[:, None, None, None]
    radius = np.sqrt((((grid - centre) / np.array([0.7, 0.6, 0.8])[:, None, None, None]) ** 2)
                     .sum(axis=0))
    tumour_centre = centre + rng.uniform(-0.25, 0.25, size=3)[:, None, None, None]
    tumour = np.sqrt((((grid - tumour_centre) / 0.3) ** 2).sum(axis=0))
    vessel = np.abs(grid[0] - centre[0, 0] + 0.3 * np.sin(3 * grid[2])) / 0.1
    liver = 15.0 * (1.0 - radius)
    logits = np.stack([
        np.zeros(shape),
        liver,
        liver + 18.0 * (1.0 - tumour) - 3.0,
        liver + 9.0 * (1.0 - vessel) - 1.0,
    ])
    logits += smooth(rng.normal(scale=1.2, size=logits.shape), passes=3)
    logits -= logits.max(axis=0, keepdims=True)
    q = np.exp(logits)
    return q / q.sum(axis=0, keepdims=True)


def sample_labels(q: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 label map with ``P(label = c) = q[c]`` independently per voxel."""
    cumulative = np.cumsum(q, axis=0)
    draw = rng.random(q.shape[1:])
    return np.minimum((draw[None] > cumulative).sum(axis=0), q.shape[0] - 1).astype(np.uint8)


def sharpen(q: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log q / T)``: over-confident for ``T < 1``."""
    logits = np.log(np.clip(q, 1e-12, None)) / temperature
    logits -= logits.max(axis=0, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=0, keepdims=True)


def write_nifti(
    path: str | Path,
    array: np.ndarray,
    affine: np.ndarray | None = None,
    *,
    dtype=None,
    slope: float | None = None,
    inter: float = 0.0,
    intent: int | str | None = None,
) -> Path:
    """Write ``array`` as NIfTI-1 (``.nii`` or ``.nii.gz``); ``slope``/``inter`` set the header
    scaling (the array then holds the raw stored values)."""
    import nibabel as nib

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    affine = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    array = np.asarray(array)
    if dtype is not None:
        array = array.astype(dtype)
    img = nib.Nifti1Image(array, affine)
    img.header.set_data_dtype(array.dtype)
    if slope is not None:
        img.header.set_slope_inter(slope, inter)
    if intent is not None:
        img.header.set_intent(intent)
    nib.save(img, str(path))
    return path


def write_label(path: str | Path, labels: np.ndarray, affine: np.ndarray | None = None) -> Path:
    """An integer label map ``(i, j, k)`` (uint8 when it fits)."""
    labels = np.asarray(labels)
    dtype = np.uint8 if labels.min() >= 0 and labels.max() < 256 else np.int16
    return write_nifti(path, labels, affine, dtype=dtype)


def write_monai(
    folder: str | Path,
    stem: str,
    probs: np.ndarray,
    affine: np.ndarray | None = None,
    *,
    postfix: str = "seg",
    five_d: bool = False,
) -> Path:
    """MONAI ``SaveImage`` layout ``folder/<stem>/<stem>_<postfix>.nii.gz``: 4-D ``(i, j, k, C)``
    float32 (3-D when C is 1), or 5-D ``(i, j, k, 1, C)`` vector image (ITK writer)."""
    probs = np.asarray(probs, dtype=np.float32)
    data = np.moveaxis(probs, 0, -1)
    if five_d:
        data = data[:, :, :, None, :]
        intent = "vector"
    else:
        intent = None
        if data.shape[-1] == 1:
            data = data[..., 0]
    path = Path(folder) / stem / f"{stem}_{postfix}.nii.gz"
    return write_nifti(path, data, affine, intent=intent)


# --------------------------------------------------------------------------- nnU-Net
def _reorient_forward(array: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """What nnU-Net's ``NibabelIOWithReorient`` does on reading: to the closest canonical frame."""
    from nibabel.orientations import apply_orientation, io_orientation

    return apply_orientation(array, io_orientation(affine))


def write_nnunet_v2(
    folder: str | Path,
    cases: Mapping[str, tuple[np.ndarray, np.ndarray]],
    labels: Mapping[str, int | Sequence[int]],
    *,
    regions_class_order: Sequence[int] | None = None,
    reader: str = "SimpleITKIO",
    file_ending: str = ".nii.gz",
    dtype=np.float32,
    segmentations: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """An nnU-Net v2 prediction folder (``--save_probabilities``).

    cases : ``{case_id: (probs (C, i, j, k), affine)}``; labels : dataset.json ``labels``
    (``{"background": 0, "liver": 1}`` or regions ``{"WT": [1, 2, 4], ...}``).
    Writes ``dataset.json``, ``plans.json`` (naming ``reader``), ``<case>.npz`` with
    ``probabilities`` reversed to ``(C, k, j, i)`` (in the RAS frame first when ``reader``
    ends in ``WithReorient``), ``<case>.nii.gz`` segmentation (argmax mapped to label values,
    or the region reconstruction; or ``segmentations[case]``) and a ``<case>.pkl`` that must
    never be unpickled (it is not a pickle).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dataset = {"channel_names": {"0": "CT"}, "labels": dict(labels),
               "numTraining": len(cases), "file_ending": file_ending}
    if regions_class_order is not None:
        dataset["regions_class_order"] = list(regions_class_order)
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=2))
    plans = {"dataset_name": "Dataset999_Synthetic", "plans_name": "nnUNetPlans",
             "image_reader_writer": reader, "configurations": {}}
    (folder / "plans.json").write_text(json.dumps(plans, indent=2))
    channel_values = [v for k, v in labels.items() if k != "ignore"
                      and not isinstance(v, list | tuple)]
    channel_values = sorted(channel_values)
    for case_id, (probs, affine) in cases.items():
        probs = np.asarray(probs)
        stored = probs
        if reader.endswith("WithReorient"):
            stored = np.stack([_reorient_forward(p, affine) for p in probs])
        stored = np.ascontiguousarray(stored.transpose(0, 3, 2, 1)).astype(dtype)
        np.savez_compressed(folder / f"{case_id}.npz", probabilities=stored)
        (folder / f"{case_id}.pkl").write_bytes(b"not a pickle: calibviz must never load this")
        if segmentations is not None and case_id in segmentations:
            seg = segmentations[case_id]
        elif regions_class_order is not None:
            seg = region_segmentation(probs, regions_class_order)
        else:
            seg = np.asarray(channel_values, dtype=np.uint8)[np.argmax(probs, axis=0)]
        write_label(folder / f"{case_id}{file_ending}", seg, affine)
    return folder


def write_nnunet_v1(folder: str | Path, case_id: str, probs: np.ndarray,
                    affine: np.ndarray | None = None) -> Path:
    """nnU-Net v1 ``--save_npz``: ``<case>.npz`` key ``softmax`` float16 reversed, plus the
    argmax segmentation (``probs`` given uncropped, ``(C, i, j, k)``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stored = np.ascontiguousarray(np.asarray(probs).transpose(0, 3, 2, 1)).astype(np.float16)
    path = folder / f"{case_id}.npz"
    np.savez_compressed(path, softmax=stored)
    write_label(folder / f"{case_id}.nii.gz", np.argmax(probs, axis=0), affine)
    return path
