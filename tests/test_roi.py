"""Regions of interest (issue 16 §1) against brute-force distances from the definition."""

from __future__ import annotations

import numpy as np
import pytest

from calibviz import bin_image
from calibviz.roi import (
    RoiSpec,
    band,
    boundary_distance,
    box,
    parse_roi,
    roi_masks,
    spacing_from_affine,
)

from . import naive


def blob(shape, centre, radius, spacing=(1.0, 1.0, 1.0)):
    grid = np.indices(shape).astype(float)
    squared = sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre, spacing))
    return squared <= radius**2


CASES = [
    # shape, spacing, mm
    ((9, 8, 7), (1.0, 1.0, 1.0), 1.5),
    ((9, 8, 7), (0.7, 1.3, 2.5), 2.0),
    ((10, 6, 5), (2.0, 0.5, 1.0), 0.0),
    ((8, 8, 6), (1.0, 1.0, 3.0), 3.0),
]


@pytest.mark.parametrize(("shape", "spacing", "mm"), CASES)
def test_band_matches_brute_force(shape, spacing, mm):
    rng = np.random.default_rng(len(shape) + int(mm * 10))
    truth = blob(shape, (3, 4, 2), 2.4, spacing) | (rng.random(shape) < 0.03)
    seg = np.roll(truth, 2, axis=0) & (rng.random(shape) < 0.9)
    expected = naive.naive_band(truth, seg, mm, spacing)
    np.testing.assert_array_equal(band(truth, seg, mm, spacing), expected)
    # the boundary of M is that of ~M (the background class uses this)
    np.testing.assert_array_equal(band(~truth, ~seg, mm, spacing), expected)
    np.testing.assert_array_equal(box(truth, seg, mm, spacing),
                                  naive.naive_box(truth, seg, mm, spacing))


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.6, 1.7, 2.2)])
def test_boundary_distance_definition(spacing):
    truth = blob((7, 7, 6), (3, 3, 2), 2.1, spacing)
    np.testing.assert_allclose(boundary_distance(truth, spacing),
                               naive.naive_boundary_distance(truth, spacing))


def test_mask_at_volume_edge_and_full_volume():
    shape = (6, 5, 4)
    truth = np.zeros(shape, bool)
    truth[:3] = True  # touches three faces
    seg = np.zeros(shape, bool)
    for mm in (0.5, 1.0, 2.5):
        np.testing.assert_array_equal(band(truth, seg, mm, (1.0, 2.0, 1.0)),
                                      naive.naive_band(truth, seg, mm, (1.0, 2.0, 1.0)))
    full = np.ones(shape, bool)
    assert not band(full, full, 3.0).any()  # no voxel on the other side: no boundary
    assert box(full, seg, 1.0).all()


def test_empty_roi_is_empty_and_nan_downstream():
    shape = (5, 5, 5)
    empty = np.zeros(shape, bool)
    assert not band(empty, empty, 5.0).any()
    assert not box(empty, empty, 5.0).any()
    probs = np.full(shape, 0.2)
    stats = bin_image(probs, empty.astype(int), n_bins=5, mask=band(empty, empty, 5.0),
                      classes=[1])
    assert stats.count.sum() == 0


def test_band_grows_with_mm_and_is_symmetric_in_truth_and_seg():
    truth = blob((20, 20, 12), (9, 9, 6), 4.0)
    seg = blob((20, 20, 12), (11, 9, 6), 3.5)
    a = band(truth, seg, 2.0, (1, 1, 1))
    b = band(truth, seg, 3.0, (1, 1, 1))
    assert (a <= b).all() and b.sum() > a.sum()
    np.testing.assert_array_equal(a, band(seg, truth, 2.0, (1, 1, 1)))
    assert (a <= box(truth, seg, 2.0, (1, 1, 1))).all()


@pytest.mark.parametrize(("text", "kind", "mm"), [
    ("band:5mm", "band", 5.0), ("band:5", "band", 5.0), ("box:10mm", "box", 10.0),
    (" BAND : 2.5 mm ", "band", 2.5), ("box:0", "box", 0.0),
])
def test_parse_roi(text, kind, mm):
    spec = parse_roi(text)
    assert (spec.kind, spec.mm) == (kind, mm)
    assert parse_roi(str(spec)) == spec


@pytest.mark.parametrize("text", ["band", "ring:5mm", "band:-1", "band:5cm", "box:", "band:nan",
                                  ""])
def test_parse_roi_rejects(text):
    with pytest.raises(ValueError, match="--roi"):
        parse_roi(text)
    with pytest.raises(ValueError, match="--roi"):
        RoiSpec("band", float("inf"))


def test_roi_masks_per_class_and_regions():
    labels = np.zeros((12, 12, 6), np.int16)
    labels[2:6, 2:6, 1:4] = 1
    labels[7:10, 6:11, 2:5] = 2
    segs = {1: labels == 1, 2: np.roll(labels == 2, 1, axis=1)}
    masks = roi_masks(labels, segs, "band:1mm", (1.0, 1.0, 2.0))
    assert sorted(masks) == [1, 2]
    np.testing.assert_array_equal(
        masks[2], naive.naive_band(labels == 2, segs[2], 1.0, (1.0, 1.0, 2.0)))
    by_region = roi_masks(labels, [labels > 0], "box:0mm", regions=[[1, 2]])
    assert by_region[0].sum() == np.prod([8, 9, 4])


def test_spacing_from_affine():
    affine = np.diag([0.8, 1.2, 3.0, 1.0])
    affine[:3, :3] = affine[:3, :3] @ np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]])
    assert spacing_from_affine(affine) == pytest.approx((1.2, 0.8, 3.0))
    with pytest.raises(ValueError, match="spacing"):
        band(np.ones((2, 2), bool), np.zeros((2, 2), bool), 1.0, (1.0, 0.0))
