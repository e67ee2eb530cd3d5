"""The data objects: BinStats derived values, pooling, selection, serialisation; the
reliability histogram's column normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from calibviz import BinStats, bin_image, reliability_histogram

from .conftest import random_images


def test_means_are_sums_over_counts_and_nan_when_empty():
    stats = bin_image(np.array([0.05, 0.15, 0.15]), np.array([1, 0, 1]), n_bins=4,
                      classes=[1])
    np.testing.assert_allclose(stats.mean_confidence[0, 0], (0.05 + 0.15 + 0.15) / 3)
    np.testing.assert_allclose(stats.frequency[0, 0], 2 / 3)
    assert np.isnan(stats.mean_confidence[0, 1:]).all()
    assert stats.nonempty.tolist() == [[True, False, False, False]]
    assert stats.n_voxels.tolist() == [3] and stats.n_truth.tolist() == [2]


def test_addition_pools_every_sum_and_counts_images():
    a, b, *_ = random_images(n_images=2)
    pooled = a + b
    for name in ("count", "sum_p", "sum_y", "sum_p2", "sum_py", "tp", "fp", "fn", "tn"):
        np.testing.assert_array_equal(getattr(pooled, name), getattr(a, name) + getattr(b, name))
    assert pooled.n_images == 2
    assert sum([a, b]).equals(pooled)


def test_incompatible_stats_refuse_to_pool():
    a = bin_image(np.array([0.2]), np.array([1]), n_bins=4, classes=[1])
    b = bin_image(np.array([0.2]), np.array([1]), n_bins=5, classes=[1])
    with pytest.raises(ValueError):
        a + b


def test_select_and_class_index_by_name_or_position():
    image = random_images(n_images=1)[0]
    picked = image.select(["class2", 0])
    assert picked.class_names == ("class2", "class0")
    np.testing.assert_array_equal(picked.count[0], image.count[2])
    assert image.class_index("class1") == 1
    with pytest.raises(ValueError):
        image.class_index("spleen")


def test_arrays_round_trip_exactly():
    image = random_images(n_images=1)[0]
    again = BinStats.from_arrays(image.to_arrays())
    assert again.equals(image) and again.class_names == image.class_names
    assert again.closure == image.closure and again.binning == image.binning


def test_stats_are_read_only():
    image = random_images(n_images=1)[0]
    with pytest.raises(ValueError):
        image.count[0, 0] = 5


def test_column_normalisation_sums_to_one_and_leaves_empty_columns_blank():
    hist = reliability_histogram(random_images())
    grid = hist.column_normalised()
    totals = np.nansum(grid, axis=1)
    filled = hist.images_per_column > 0
    np.testing.assert_allclose(totals[filled], 1.0)
    assert np.isnan(grid.transpose(0, 2, 1)[~filled]).all()


# ------------------------------------------------------------------------------ round 3
def test_soft_bin_of_weight_zero_is_empty_whatever_the_threshold():
    p = np.array([0.1, 0.12, 0.9])
    y = np.array([0, 1, 1])
    for threshold in (0.0, 1e-300):
        stats = bin_image(p, y, n_bins=10, binning="soft", empty_weight=threshold)
        assert (stats.nonempty == (stats.count > 0)).all()
        assert not np.isnan(stats.mean_confidence[stats.count > 0]).any()
    zero = bin_image(p, y, n_bins=10, binning="soft", empty_weight=0.0)
    assert zero.nonempty[0].tolist() == (zero.count[0] > 0).tolist()
    assert zero.count[0, 5] == 0 and not zero.nonempty[0, 5]


def test_pooling_soft_stats_of_different_empty_weight_is_refused():
    p, y = np.array([0.02, 0.3, 0.97, 0.5]), np.array([0, 1, 1, 0])
    a = bin_image(p, y, n_bins=4, binning="soft")
    b = bin_image(p, y, n_bins=4, binning="soft", empty_weight=3.0)
    for left, right in ((a, b), (b, a)):
        with pytest.raises(ValueError, match=r"empty_weight 0\.01 vs 3\.0|empty_weight 3\.0 vs "
                                             r"0\.01"):
            left + right
    # hard binning ignores the threshold: pooling stays allowed
    hard_a = bin_image(p, y, n_bins=4)
    hard_b = bin_image(p, y, n_bins=4, empty_weight=3.0)
    assert (hard_a + hard_b).n_images == 2


def test_select_accepts_a_single_name_or_index():
    image = bin_image(np.full((3, 4), 1 / 3), np.array([0, 1, 2, 0]),
                      class_names=["bg", "liver", "tumour"])
    one = image.select("liver")
    assert one.class_names == ("liver",)
    np.testing.assert_array_equal(one.count, image.count[[1]])
    assert image.select(2).class_names == ("tumour",)
    assert image.select(np.int64(0)).class_names == ("bg",)


def test_ambiguous_class_name_is_refused():
    image = random_images(n_images=1)[0]
    twice = image.join(image.select(["class1"]))
    with pytest.raises(ValueError, match=r"class name 'class1' is ambiguous"):
        twice.select(["class1"])
    assert twice.select([3]).class_names == ("class1",)


def test_docstring_threshold_is_the_kernels():
    assert "p >= 0.5" in BinStats.__doc__ and "p > 0.5" not in BinStats.__doc__
    stats = bin_image(np.array([[0.5, 0.5, 0.2, 0.8]]), np.array([[True, False, False, True]]))
    assert (int(stats.tp[0]), int(stats.fp[0])) == (2, 1)
