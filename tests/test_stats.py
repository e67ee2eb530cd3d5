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
