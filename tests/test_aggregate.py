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
from calibviz.aggregate import dropped_cases, mean_over_classes, reference_pooled_curve
from calibviz.bootstrap import SumArrays, micro_interval, pooled_frequency_band
from calibviz.estimators import dataset_classwise_ece
from calibviz.stats import column_normalised, images_per_column
from calibviz.sweep import sweep_table

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


def reference_toy():
    """Two images, one class, 5 bins (right-closed: bin 0 = [0, 0.2], bin 3 = (0.6, 0.8])."""
    a = bin_image(np.array([0.7, 0.7, 0.7, 0.1]), np.array([1, 1, 1, 0]), n_bins=5)
    b = bin_image(np.array([0.62]), np.array([0]), n_bins=5)  # class absent from b's truth
    return a, b


def test_sum_pooling_is_count_weighted():
    a, b = reference_toy()
    micro = micro_metrics([a, b])
    assert micro["ece"][0] == pytest.approx(ece(pool([a, b]))[0])
    # bin 3: (0.7·3 + 0.62) / 4 = 0.68 confidence, 3/4 frequency
    assert pool([a, b]).mean_confidence[0, 3] == pytest.approx(0.68)
    assert pool([a, b]).frequency[0, 3] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="pooling must be one of"):
        micro_metrics([a, b], pooling="median")


def test_reference_pooling_by_hand():
    # Reference rule, per bin: confidence = unweighted NaN-skipping mean over images of p̄;
    # frequency = count-weighted Σ ȳ·n / Σ n; ECE weights = summed counts.
    #   image a: bin 0 p̄ 0.1, ȳ 0, n 1;   bin 3 p̄ 0.7,  ȳ 1, n 3
    #   image b:                          bin 3 p̄ 0.62, ȳ 0, n 1
    #   bin 0: conf 0.1 (b skipped), freq 0/1 = 0,            n 1, gap 0.1
    #   bin 3: conf (0.7 + 0.62)/2 = 0.66, freq (1·3 + 0·1)/4 = 0.75, n 4, gap 0.09
    #   ECE = (1·0.1 + 4·0.09) / 5 = 0.092, ACE = (0.1 + 0.09)/2 = 0.095, MCE = 0.1
    # (all-unweighted averaging would give bin-3 frequency 0.5, gap 0.16, ACE 0.13; sum
    # pooling gives bin-3 gap |0.68 − 0.75| = 0.07)
    a, b = reference_toy()
    conf, freq, count = reference_pooled_curve([a, b])
    assert conf[0, 3] == pytest.approx(0.66)
    assert freq[0, 3] == pytest.approx(0.75)
    assert count[0, 3] == 4
    assert conf[0, 0] == pytest.approx(0.1) and freq[0, 0] == 0 and count[0, 0] == 1
    assert np.isnan(conf[0, [1, 2, 4]]).all() and np.isnan(freq[0, [1, 2, 4]]).all()
    ref = micro_metrics([a, b], pooling="reference")
    assert ref["ece"][0] == pytest.approx(0.092)
    assert ref["ace"][0] == pytest.approx(0.095)
    assert ref["mce"][0] == pytest.approx(0.1)
    assert ace(pool([a, b]))[0] == pytest.approx((0.1 + 0.07) / 2)


def test_reference_pooling_with_absent_classes_excluded():
    # absent="exclude" drops image b (its class is absent from the truth):
    #   bin 0: gap 0.1, n 1;  bin 3: conf 0.7, freq 1, n 3, gap 0.3
    #   ECE = (0.1 + 3·0.3)/4 = 0.25, ACE = 0.2, MCE = 0.3
    a, b = reference_toy()
    ref = micro_metrics([a, b], pooling="reference", absent="exclude")
    assert ref["ece"][0] == pytest.approx(0.25)
    assert ref["ace"][0] == pytest.approx(0.2)
    assert ref["mce"][0] == pytest.approx(0.3)
    _, _, count = reference_pooled_curve([a, b], absent="exclude")
    assert count[0, 3] == 3


def test_incompatible_stats_refuse_to_pool():
    a = bin_image(np.array([0.2]), np.array([1]), n_bins=5)
    b = bin_image(np.array([0.2]), np.array([1]), n_bins=10)
    c = bin_image(np.array([0.2], dtype=np.float32), np.array([1]), n_bins=5)
    with pytest.raises(ValueError, match="cannot pool"):
        pool([a, b])
    # bins are a convention (B, closure): inputs of another precision pool (issue: mixed
    # float32/float64 folders crashed the run)
    assert pool([a, c]).count.tolist() == [[2, 0, 0, 0, 0]]
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
def exact_fraction_images(n_bins, closure, dtype=np.float32, multiple=1):
    """One image per k = 0..B: B·multiple voxels at p = 0.001 (confidence bin 0), k·multiple
    of them foreground, so the image's frequency there is exactly k/B."""
    images = []
    n = n_bins * multiple
    for k in range(n_bins + 1):
        truth = np.zeros(n, dtype=int)
        truth[: k * multiple] = 1
        images.append(
            bin_image(np.full(n, 0.001, dtype=dtype), truth, n_bins=n_bins, closure=closure)
        )
    return images


@pytest.mark.parametrize("closure", ["right", "left"])
@pytest.mark.parametrize("dtype,n_bins", [
    (np.float32, 7), (np.float32, 10), (np.float32, 20), (np.float32, 100),
    (np.float64, 20), (np.float64, 100), (np.float16, 20),
])
def test_histogram_rows_of_exact_fractions(n_bins, closure, dtype):
    multiple = 3 if n_bins < 100 else 1
    images = exact_fraction_images(n_bins, closure, dtype, multiple)
    hist = reliability_histogram(images)
    column = hist.counts[0, :, 0]
    expected = np.zeros(n_bins, dtype=np.int64)
    for k in range(n_bins + 1):
        assert images[k].frequency[0, 0] == k / n_bins
        row = naive.naive_frequency_row(k * multiple, n_bins * multiple, n_bins, closure)
        if closure == "right":
            assert row == max(k - 1, 0)
        else:
            assert row == min(k, n_bins - 1)
        expected[row] += 1
    np.testing.assert_array_equal(column, expected)
    assert hist.counts[0, :, 1:].sum() == 0


def test_histogram_rows_match_fractions_for_random_counts():
    from calibviz.aggregate import _frequency_rows

    rng = np.random.default_rng(3)
    for n_bins in (1, 2, 3, 7, 20, 64, 100):
        count = rng.integers(1, 400, size=(4, 50))
        count[0, :10] = n_bins * rng.integers(1, 5, size=10)
        sum_y = np.floor(rng.random(count.shape) * (count + 1)).astype(np.float64)
        sum_y[0, :10] = count[0, :10] // n_bins * rng.integers(0, n_bins + 1, size=10)
        sum_y[1, :5] = count[1, :5]
        for closure in ("right", "left"):
            rows = _frequency_rows(sum_y, count, n_bins, closure)
            expected = [[naive.naive_frequency_row(s, n, n_bins, closure)
                         for s, n in zip(srow, nrow)] for srow, nrow in zip(sum_y, count)]
            np.testing.assert_array_equal(rows, expected)


def test_histogram_rows_of_huge_counts_stay_exact():
    from calibviz.aggregate import _frequency_rows

    n = np.array([[2**61 - 1, 10**18, 3 * 2**40]], dtype=np.int64)
    # sum_y values exactly representable in float64
    s = np.array([[2.0**60, 10.0**17, float(2**40)]])
    rows = _frequency_rows(s, n, 20, "right")
    expected = [naive.naive_frequency_row(int(a), int(b), 20) for a, b in zip(s[0], n[0])]
    np.testing.assert_array_equal(rows[0], expected)
    assert rows[0, 2] == 6  # 1/3 = 6.67/20 → row 6


def test_soft_binning_histogram_rows_use_float64_edges():
    from calibviz.aggregate import _frequency_rows

    count = np.array([[2.5, 4.0, 0.3]])
    sum_y = np.array([[0.5, 1.4, 0.3]])  # f = 0.2, 0.35, 1.0
    np.testing.assert_array_equal(_frequency_rows(sum_y, count, 20, "right"), [[3, 6, 19]])
    np.testing.assert_array_equal(_frequency_rows(sum_y, count, 20, "left"), [[4, 7, 19]])


def test_drop_case_leaves_out_images_missing_any_class():
    images = make_images()
    dropped = np.array([s.absent.any() for s in images])
    assert dropped.any() and not dropped.all()
    kept = [s for s, d in zip(images, dropped) if not d]
    values = per_image_metrics(images, absent="drop-case")
    for name, array in values.items():
        assert np.isnan(array[dropped]).all(), name
        np.testing.assert_array_equal(array[~dropped], per_image_metrics(kept)[name])
    pooled = pool(images, absent="drop-case")
    assert pooled.equals(pool(kept)) and pooled.n_images == len(kept)
    for pooling in ("sum", "reference"):
        got = micro_metrics(images, absent="drop-case", pooling=pooling)
        expected = micro_metrics(kept, pooling=pooling)
        for name in ("ece", "ace", "mce"):
            np.testing.assert_array_equal(got[name], expected[name])
    hist = reliability_histogram(images, absent="drop-case")
    np.testing.assert_array_equal(hist.counts, reliability_histogram(kept).counts)
    assert hist.n_images == len(kept)
    summary = macro_summary(images, absent="drop-case")["ace"]
    assert summary["notnans"].tolist() == [len(kept)] * 4


AGGREGATES = {
    "pool": lambda s, **kw: pool(s, **kw).count,
    "micro sum": lambda s, **kw: micro_metrics(s, **kw),
    "micro reference": lambda s, **kw: micro_metrics(s, pooling="reference", **kw),
    "reference curve": lambda s, **kw: reference_pooled_curve(s, **kw),
    "per image": lambda s, **kw: dict(per_image_metrics(s, **kw)),
    "macro": lambda s, **kw: {k: v["mean"] for k, v in macro_summary(s, **kw).items()},
    "mean over classes": lambda s, **kw: mean_over_classes(s, "ace", **kw),
    "histogram": lambda s, **kw: (reliability_histogram(s, **kw).counts,
                                  reliability_histogram(s, **kw).n_images),
    "dropped cases": lambda s, **kw: dropped_cases(s, **kw),
    "sweep table": lambda s, **kw: sweep_table(s, [5, 10], **kw)[["macro", "micro"]].to_numpy(),
    "classwise ece": lambda s, **kw: dataset_classwise_ece(s, **kw),
    "micro interval": lambda s, **kw: micro_interval(s, ("ece",), 200, 1, **kw)["ece"],
    "curve band": lambda s, **kw: pooled_frequency_band(s, 200, 1, **kw),
    "stacked sums": lambda s, **kw: SumArrays.stack(s, **kw).count,
}


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)


@pytest.mark.parametrize("policy", ["exclude", "drop-case", "include"])
@pytest.mark.parametrize("name", list(AGGREGATES))
def test_a_results_brings_its_absent_policy(name, policy):
    """A1: on a Results, every aggregate function defaults to the policy the run recorded
    (options["absent"]); an explicit ``absent=`` wins; plain lists default to include."""
    from calibviz import Results

    images = make_images()
    results = Results(tuple(f"c{i}" for i in range(len(images))), images, {"absent": policy})
    function = AGGREGATES[name]
    expected = function(images, absent=policy)
    assert _same(function(results), expected)
    assert _same(function(results, absent=None), expected)
    assert _same(function(images), function(images, absent="include"))
    for other in ("include", "exclude", "drop-case"):  # explicit wins over the run's
        assert _same(function(results, absent=other), function(images, absent=other))
    if policy == "drop-case" or (policy == "exclude" and name != "dropped cases"):
        # the test can fail: the policies differ on these images
        assert not _same(expected, function(images, absent="include"))
    bare = Results(results.cases, images, {})  # no recorded policy: include
    assert _same(function(bare), function(images, absent="include"))
