"""Regions of interest: calibration where it matters (issue 16, §1).

Voxel-wise errors are dominated by easy background voxels far from any structure.  A region
of interest restricts the scoring of one class to the voxels near it:

* ``band:MM`` — voxels within ``MM`` millimetres of the boundary of the ground truth **or** of
  the predicted segmentation of the class.  For a binary mask ``M`` a voxel's distance to the
  boundary of ``M`` is ``distance_transform_edt(~M, sampling)`` outside ``M`` and
  ``distance_transform_edt(M, sampling)`` inside it: the distance to the nearest voxel on the
  other side (infinite when there is none: an empty mask, or one filling the volume).
* ``box:MM`` — the bounding box of truth ∪ prediction, grown by ``MM`` millimetres along each
  axis (the region Mehrtash et al. 2020 evaluate).

Distances are computed (an exact compiled EDT, squared distances compared with ``MM²``; the
same numbers as scipy's up to rounding, which can only matter at an exact tie) on the bounding
box of each mask grown by ``MM`` (+1 voxel), never on the whole volume: that is exact (a voxel
farther than ``MM`` from a mask's box is farther than
``MM`` from its boundary, and the nearest voxel on the other side of a boundary always lies in
the grown box).  An empty region is an empty mask: the caller reports NaN with the reason.

>>> spec = parse_roi("band:2mm")
>>> spec.kind, spec.mm, spec.name
('band', 2.0, 'band-2mm')
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

ROI_KINDS = ("band", "box")
_SPEC = re.compile(r"^\s*(band|box)\s*:\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*(mm)?\s*$")


@dataclass(frozen=True)
class RoiSpec:
    """A parsed ``--roi`` value: ``kind`` (``"band"`` or ``"box"``) and ``mm`` (≥ 0)."""

    kind: str
    mm: float

    def __post_init__(self) -> None:
        if self.kind not in ROI_KINDS:
            raise ValueError(f"--roi: unknown kind {self.kind!r}; choose one of "
                             f"{', '.join(ROI_KINDS)}")
        mm = float(self.mm)
        if not (math.isfinite(mm) and mm >= 0):
            raise ValueError(f"--roi: the distance must be a finite number of mm >= 0, got {mm}")
        object.__setattr__(self, "mm", mm)

    @property
    def name(self) -> str:
        """Folder-safe name: ``band-5mm``, ``box-2.5mm`` (the run writes ``roi-<name>/``)."""
        return f"{self.kind}-{self.mm:g}mm"

    def __str__(self) -> str:
        return f"{self.kind}:{self.mm:g}mm"


def parse_roi(text: str | RoiSpec) -> RoiSpec:
    """``"band:5mm"``, ``"band:5"`` or ``"box:10mm"`` → :class:`RoiSpec`; ``ValueError``
    naming ``--roi`` otherwise."""
    if isinstance(text, RoiSpec):
        return text
    match = _SPEC.match(str(text).lower())
    if match is None:
        raise ValueError(f"--roi: expected band:MM or box:MM (millimetres, e.g. band:5mm), "
                         f"got {str(text)!r}")
    return RoiSpec(match.group(1), float(match.group(2)))


def spacing_from_affine(affine: np.ndarray) -> tuple[float, ...]:
    """Voxel spacing in mm per axis: the lengths of the affine's first three columns (what
    nibabel reports as the zooms)."""
    affine = np.asarray(affine, dtype=np.float64)
    return tuple(float(v) for v in np.linalg.norm(affine[:3, :3], axis=0))


def _spacing(spacing, ndim: int) -> np.ndarray:
    values = np.broadcast_to(np.asarray(spacing if spacing is not None else 1.0,
                                        dtype=np.float64), (ndim,))
    if not (np.all(np.isfinite(values)) and np.all(values > 0)):
        raise ValueError(f"spacing must be positive and finite per axis, got {tuple(values)}")
    return values


def _masks(label_mask, seg_mask) -> tuple[np.ndarray, np.ndarray]:
    truth = np.asarray(label_mask, dtype=bool)
    seg = np.asarray(seg_mask, dtype=bool)
    if truth.shape != seg.shape:
        raise ValueError(f"truth mask has shape {truth.shape} but the segmentation has "
                         f"{seg.shape}")
    return truth, seg


def bounding_box(mask: np.ndarray) -> list[tuple[int, int]] | None:
    """Per axis the first and last index holding a True voxel; None when empty."""
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        if hits.size == 0:
            return None
        box.append((int(hits[0]), int(hits[-1])))
    return box


def _steps_within(mm: float, step: float) -> int:
    """The largest ``k`` with ``k·step <= mm`` (computed as the products are)."""
    k = int(math.floor(mm / step))
    while (k + 1) * step <= mm:
        k += 1
    while k > 0 and k * step > mm:
        k -= 1
    return k


def _grown(box, shape, margins) -> tuple[slice, ...]:
    return tuple(slice(max(lo - m, 0), min(hi + m + 1, n))
                 for (lo, hi), n, m in zip(box, shape, margins))


def boundary_distance(mask: np.ndarray, spacing) -> np.ndarray:
    """float64 distance (mm) of every voxel to the boundary of ``mask`` on the whole array:
    ``edt(~M)`` outside, ``edt(M)`` inside; ``inf`` where there is no voxel on the other side.
    The definition, unrestricted (``band`` computes it on a box only)."""
    from scipy.ndimage import distance_transform_edt

    mask = np.asarray(mask, dtype=bool)
    sampling = _spacing(spacing, mask.ndim)
    out = np.full(mask.shape, np.inf)
    if mask.any() and not mask.all():
        out[~mask] = distance_transform_edt(~mask, sampling=sampling)[~mask]
        out[mask] = distance_transform_edt(mask, sampling=sampling)[mask]
    return out


def _near_boundary(mask: np.ndarray, mm: float, sampling: np.ndarray, out: np.ndarray) -> None:
    """Set ``out`` True where the distance to the boundary of ``mask`` is ``<= mm``, working
    on the mask's bounding box grown by ``mm`` plus one voxel.  Squared distances come from
    the compiled exact EDT (:mod:`calibviz._edt`) and are compared with ``mm²``."""
    from ._edt import squared_edt

    if 2 * np.count_nonzero(mask) > mask.size:
        # a voxel's distance to the boundary of M equals its distance to that of ~M: work on
        # the smaller side (the background class's box would be the whole volume)
        mask = ~mask
    box = bounding_box(mask)
    if box is None:
        return
    limit = mm * mm
    margins = [_steps_within(mm, s) + 1 for s in sampling]
    region = _grown(box, mask.shape, margins)
    inside = mask[region]
    if inside.all():  # fills the volume: no voxel on the other side
        return
    near = out[region]
    near |= ~inside & (squared_edt(inside, sampling) <= limit)
    # inside distances only matter within the mask's own box (grown by one voxel)
    inner = _grown([(lo - r.start, hi - r.start) for (lo, hi), r in zip(box, region)],
                   inside.shape, [1] * mask.ndim)
    core = inside[inner]
    near[inner] |= core & (squared_edt(~core, sampling) <= limit)


def band(label_mask: np.ndarray, seg_mask: np.ndarray, mm: float, spacing=None) -> np.ndarray:
    """bool mask of the voxels within ``mm`` millimetres of the boundary of ``label_mask``
    (the class's ground truth) or of ``seg_mask`` (its predicted segmentation).

    ``spacing``: voxel size in mm per axis (a number for isotropic voxels; default 1).
    Both masks empty → an all-False mask.

    >>> truth = np.zeros((1, 7), bool); truth[0, 3] = True
    >>> band(truth, np.zeros_like(truth), 1.0).astype(int).tolist()
    [[0, 0, 1, 1, 1, 0, 0]]
    """
    truth, seg = _masks(label_mask, seg_mask)
    mm = RoiSpec("band", mm).mm
    sampling = _spacing(spacing, truth.ndim)
    out = np.zeros_like(truth, dtype=bool)  # the inputs' memory order
    _near_boundary(truth, mm, sampling, out)
    _near_boundary(seg, mm, sampling, out)
    return out


def box(label_mask: np.ndarray, seg_mask: np.ndarray, mm: float, spacing=None) -> np.ndarray:
    """bool mask of the bounding box of ``label_mask ∪ seg_mask`` grown by ``mm`` millimetres
    along each axis (the voxels ``k`` steps outside with ``k·spacing <= mm``); all False when
    both are empty.

    >>> truth = np.zeros((1, 7), bool); truth[0, 3] = True
    >>> box(truth, np.zeros_like(truth), 2.0, spacing=(1.0, 1.0)).astype(int).tolist()
    [[0, 1, 1, 1, 1, 1, 0]]
    """
    truth, seg = _masks(label_mask, seg_mask)
    mm = RoiSpec("box", mm).mm
    sampling = _spacing(spacing, truth.ndim)
    out = np.zeros_like(truth, dtype=bool)  # the inputs' memory order
    bounds = bounding_box(truth | seg)
    if bounds is not None:
        out[_grown(bounds, truth.shape, [_steps_within(mm, s) for s in sampling])] = True
    return out


def roi_mask(label_mask, seg_mask, spec: str | RoiSpec, spacing=None) -> np.ndarray:
    """The region of interest ``spec`` (``"band:5mm"``, a :class:`RoiSpec`) of one class."""
    spec = parse_roi(spec)
    function = band if spec.kind == "band" else box
    return function(label_mask, seg_mask, spec.mm, spacing)


def roi_masks(
    labels: np.ndarray,
    segmentation_per_class: Mapping[int, np.ndarray] | Sequence[np.ndarray],
    spec: str | RoiSpec,
    spacing=None,
    *,
    classes: Sequence[int] | None = None,
    regions: Sequence[Sequence[int]] | None = None,
) -> dict[int, np.ndarray]:
    """``{class index: bool mask}``: the region of interest of each class.

    ``labels``: the integer label map; ``segmentation_per_class``: the predicted bool mask of
    each class (by index: a mapping, or a sequence in class order), from the Dice rule's
    segmentation (argmax for softmax maps).  The truth of class ``c`` is ``labels ==
    classes[c]`` (default ``c``) or ``isin(labels, regions[c])``.  Each mask can be computed
    and used as soon as that class's segmentation is known (see :func:`roi_mask`).
    """
    spec = parse_roi(spec)
    labels = np.asarray(labels)
    items = (segmentation_per_class.items() if isinstance(segmentation_per_class, Mapping)
             else enumerate(segmentation_per_class))
    out = {}
    for index, seg in items:
        if regions is not None:
            truth = np.isin(labels, list(regions[index]))
        else:
            truth = labels == (index if classes is None else classes[index])
        out[int(index)] = roi_mask(truth, seg, spec, spacing)
    return out


__all__ = [
    "ROI_KINDS", "RoiSpec", "band", "boundary_distance", "bounding_box", "box", "parse_roi",
    "roi_mask", "roi_masks", "spacing_from_affine",
]
