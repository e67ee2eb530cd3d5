"""Dataset aggregation: pooling, macro summaries, absent policy, reliability histogram."""

from __future__ import annotations

import numpy as np
import pytest

from calibviz import (
    ace,
    bin_image,
    ece,
    macro_summary,
    micro_metrics,
    per_image_metrics,
    pool,
    reliability_histogram,
    summarize,
)
from calibviz.aggregate import mean_over_classes, reference_pooled_curve
from calibviz.stats import column_normalised, images_per_column

from . import naive
from .conftest import load_reference
from .conftest import random_images as make_images


def test_reference_dataset_histogram():
    case = load_reference()["dataset_reliability_histogram"][0]
    n_bins = case["bins"]
    # build images whose per-bin frequencies are exactly the published ones
    images = []
    for frequencies in case["per_image_frequency"]:
        probs, truth = [], []
        for col, f in enumerate(frequencies[0]):
            if f is None:
                continue
            centre = (col + 0.5) / n_bins
            probs += [centre, centre]
            truth += [1 if f >= 0.5 else 0, 1 if f > 0.5 or f == 1.0 else 0]
        images.append(bin_image(np.array(probs), np.array(truth), n_bins=n_bins))
    for image, frequencies in zip(images, case["per_image_frequency"]):
        np.testing.assert_allclose(
            image.frequency[0], [np.nan if f is None else f for f in frequencies[0]]
        )
    hist = reliability_histogram(images)
    np.testing.assert_array_equal(hist.counts[0], case["counts_rows_from_lowest_frequency"][0])
    np.testing.assert_array_equal(
        hist.counts[0],
        naive.naive_reliability_histogram([f[0] for f in case["per_image_frequency"]], n_bins),
    )


def test_histogram_matches_naive_and_counts_images_per_column():
    images = make_images()
    hist = reliability_histogram(images)
    for c in range(3):
        expected = naive.naive_reliability_histogram([s.frequency[c] for s in images], 10)
        np.testing.assert_array_equal(hist.counts[c], expected)
    nonempty = np.stack([s.count > 0 for s in images]).sum(axis=0)
    np.testing.assert_array_equal(hist.images_per_column, nonempty)
    np.testing.assert_array_equal(hist.all_classes, hist.counts.sum(axis=0))
    assert hist.counts.max(initial=0) <= len(images)
    np.testing.assert_array_equal(
        hist.voxel_counts.sum(axis=1), pool(images).count
    )


def test_column_normalisation_blank_columns():
    images = make_images(n_images=2)
    hist = reliability_histogram(images)
    norm = hist.column_normalised()
    totals = hist.counts.sum(axis=1)
    for c in range(3):
        for k in range(10):
            if totals[c, k] == 0:
                assert np.isnan(norm[c, :, k]).all()
            else:
                assert norm[c, :, k].sum() == pytest.approx(1.0)


def test_incremental_equals_all_at_once():
    images = make_images()
    together = reliability_histogram(images)
    one_by_one = reliability_histogram(images[:1])
    for image in images[1:]:
        one_by_one = one_by_one + reliability_histogram([image])
    np.testing.assert_array_equal(one_by_one.counts, together.counts)
    assert one_by_one.pooled.equals(together.pooled, rtol=1e-12)
    assert one_by_one.n_images == len(images)
    summed = images[0]
    for image in images[1:]:
        summed = summed + image
    assert summed.equals(pool(images), rtol=1e-12)
    assert sum(images).equals(pool(images), rtol=1e-12)


def test_pooling_is_plain_addition_of_sums():
    images = make_images()
    pooled = pool(images)
    np.testing.assert_array_equal(pooled.count, np.sum([s.count for s in images], axis=0))
    np.testing.assert_allclose(pooled.sum_p, np.sum([s.sum_p for s in images], axis=0))
    assert pooled.n_images == len(images)


def test_absent_policy():
    images = make_images()
    absent = np.stack([s.absent for s in images])
    assert absent.any()
    include = per_image_metrics(images, absent="include")
    exclude = per_image_metrics(images, absent="exclude")
    assert np.isfinite(include["ace"][absent]).all()
    assert np.isnan(exclude["ace"][absent]).all()
    np.testing.assert_array_equal(include["ace"][~absent], exclude["ace"][~absent])
    # excluded pairs drop out of micro pooling
    manual = images[0].mask_classes(~images[0].absent)
    for image in images[1:]:
        manual = manual + image.mask_classes(~image.absent)
    assert pool(images, absent="exclude").equals(manual)
    with pytest.raises(ValueError, match="absent must be one of"):
        pool(images, absent="sometimes")


def test_macro_summary_against_numpy():
    images = make_images()
    values = per_image_metrics(images)["ace"]
    summary = macro_summary(images)["ace"]
    mean_over_classes = values.mean(axis=1)
    for c, column in enumerate([*values.T, mean_over_classes]):
        assert summary["mean"][c] == pytest.approx(np.mean(column))
        assert summary["median"][c] == pytest.approx(np.median(column))
        assert summary["max"][c] == pytest.approx(np.max(column))
        assert summary["min"][c] == pytest.approx(np.min(column))
        assert summary["p90"][c] == pytest.approx(np.percentile(column, 90))
        assert summary["std"][c] == pytest.approx(np.std(column))
        assert summary["notnans"][c] == len(column)


def test_summarize_ignores_nan():
    out = summarize(np.array([[1.0, np.nan], [3.0, np.nan], [np.nan, np.nan]]))
    assert out["mean"][0] == 2.0 and out["notnans"].tolist() == [2.0, 0.0]
    assert np.isnan(out["mean"][1])


def test_micro_metrics_and_reference_pooling():
    a = bin_image(np.array([0.62, 0.64, 0.9]), np.array([1, 1, 0]), n_bins=5)
    b = bin_image(np.array([0.78]), np.array([0]), n_bins=5)
    micro = micro_metrics([a, b])
    assert micro["ece"][0] == pytest.approx(ece(pool([a, b]))[0])
    conf, freq, count = reference_pooled_curve([a, b])
    # bin 3 (0.6, 0.8]: image a mean 0.63 (2 voxels), image b 0.78 → unweighted 0.705
    assert conf[0, 3] == pytest.approx((0.63 + 0.78) / 2)
    assert freq[0, 3] == pytest.approx((1.0 + 0.0) / 2)
    assert count[0, 3] == 3
    pooled_conf = pool([a, b]).mean_confidence[0, 3]
    assert pooled_conf == pytest.approx((0.62 + 0.64 + 0.78) / 3)
    ref = micro_metrics([a, b], pooling="reference")
    gaps = np.abs(conf[0] - freq[0])
    assert ref["ace"][0] == pytest.approx(np.nanmean(gaps))
    assert ace(pool([a, b]))[0] != pytest.approx(ref["ace"][0])
    with pytest.raises(ValueError, match="pooling must be one of"):
        micro_metrics([a, b], pooling="median")


def test_incompatible_stats_refuse_to_pool():
    a = bin_image(np.array([0.2]), np.array([1]), n_bins=5)
    b = bin_image(np.array([0.2]), np.array([1]), n_bins=10)
    c = bin_image(np.array([0.2], dtype=np.float32), np.array([1]), n_bins=5)
    with pytest.raises(ValueError, match="cannot pool"):
        pool([a, b])
    # bins are a convention (B, closure): inputs of another precision pool (issue: mixed
    # float32/float64 folders crashed the run)
    assert pool([a, c]).count.tolist() == [[0, 2, 0, 0, 0]]
    with pytest.raises(ValueError, match="empty"):
        pool([])


def test_column_normalised_sum_classes_and_mean_over_classes():
    rng = np.random.default_rng(4)
    stats = [bin_image(rng.dirichlet(np.ones(3), size=200).T, rng.integers(0, 3, 200),
                       n_bins=8) for _ in range(4)]
    hist = reliability_histogram(stats)
    np.testing.assert_array_equal(column_normalised(hist.counts), hist.column_normalised())
    np.testing.assert_array_equal(images_per_column(hist.counts), hist.images_per_column)
    with np.errstate(all="raise"):  # an empty column stays blank, without 0/0 warnings
        assert np.isnan(column_normalised(np.zeros((3, 2), dtype=int))).all()
    merged = hist.pooled.sum_classes("all")
    assert merged.class_names == ("all",)
    np.testing.assert_array_equal(merged.count[0], hist.pooled.count.sum(axis=0))
    expected = [np.nanmean(ace(s)) for s in stats]
    np.testing.assert_allclose(mean_over_classes(stats, "ace"), expected)
    with pytest.raises(ValueError, match="unknown metric"):
        mean_over_classes(stats, "auc")
