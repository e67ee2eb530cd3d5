"""Metrics equal the naive oracle, hand-derived cases, analytic truth and published values."""

from __future__ import annotations

import numpy as np
import pytest

from calibviz import METRICS, ace, bin_image, brier, brier_decomposition, dice, ece, mce, pool
from calibviz.aggregate import macro_summary
from calibviz.metrics import gap_metrics

from . import naive
from .conftest import load_reference


def as_nan(values):
    return np.array([[np.nan if v is None else v for v in row] for row in values], dtype=float)


# ----------------------------------------------------------------- reference vectors
def reference_cases(section):
    return [pytest.param(c, id=c["name"]) for c in load_reference()[section]]


@pytest.mark.parametrize("case", reference_cases("binning"))
def test_reference_binning(case):
    for image, (probs, truth) in enumerate(zip(case["probs"], case["truth"])):
        probs = np.array(probs, dtype=np.float64)
        truth = np.array(truth).astype(bool)
        stats = bin_image(probs, truth, n_bins=case["bins"], closure=case["closure"])
        np.testing.assert_array_equal(stats.count, case["count"][image])
        np.testing.assert_allclose(
            stats.mean_confidence, as_nan(case["mean_confidence"][image]), atol=1e-12
        )
        np.testing.assert_allclose(stats.frequency, as_nan(case["frequency"][image]), atol=1e-12)


@pytest.mark.parametrize("case", reference_cases("errors"))
def test_reference_errors(case):
    per_image = []
    for image, (probs, truth) in enumerate(zip(case["probs"], case["truth"])):
        stats = bin_image(np.array(probs), np.array(truth).astype(bool), n_bins=case["bins"])
        per_image.append(stats)
        for name, fn in (("ece", ece), ("ace", ace), ("mce", mce)):
            np.testing.assert_allclose(fn(stats), case[name][image], atol=case["tolerance"])
    if "macro_ece_all_classes" in case:
        macro = macro_summary(per_image)["ece"]["mean"]
        assert macro[-1] == pytest.approx(case["macro_ece_all_classes"], abs=case["tolerance"])
        without_first = macro_summary([s.select([1]) for s in per_image])["ece"]["mean"]
        assert without_first[-1] == pytest.approx(
            case["macro_ece_without_class_0"], abs=case["tolerance"]
        )


# ------------------------------------------------------------------- naive oracle
@pytest.mark.parametrize("binning", ["hard", "soft"])
@pytest.mark.parametrize("closure", ["right", "left"])
def test_metrics_match_naive(binning, closure):
    rng = np.random.default_rng(10)
    probs = rng.dirichlet(np.ones(4) * 0.3, size=(25, 18)).transpose(2, 0, 1)
    labels = rng.integers(0, 4, size=(25, 18))
    stats = bin_image(probs, labels, n_bins=15, closure=closure, binning=binning)
    sums = naive.naive_bin(probs, labels, n_bins=15, closure=closure, binning=binning)
    expected = naive.naive_errors(sums, empty_weight=0.01 if binning == "soft" else None)
    for name, fn in (("ece", ece), ("ace", ace), ("mce", mce), ("brier", brier)):
        np.testing.assert_allclose(fn(stats), expected[name], rtol=1e-10, err_msg=name)


def test_metrics_match_voxel_level_definition():
    rng = np.random.default_rng(11)
    p = rng.random(500)
    y = (rng.random(500) < p**2).astype(int)
    stats = bin_image(p, y, n_bins=12)
    expected = naive.naive_voxel_errors(p, y, 12)
    for name in ("ece", "ace", "mce", "brier"):
        assert METRICS[name](stats)[0] == pytest.approx(expected[name], rel=1e-10)
    assert dice(stats)[0] == pytest.approx(naive.naive_dice(p, y))


def test_soft_empty_weight_threshold():
    # one voxel at p = 0.02 puts weight 0.9 on bin 0 and 0.1 on bin 1 of 5 ... (centres 0.1, 0.3)
    stats = bin_image(np.array([0.1 + 0.002]), np.array([1]), n_bins=5, binning="soft")
    assert stats.count[0, 1] == pytest.approx(0.01)
    assert stats.nonempty[0].tolist() == [True, True, False, False, False]
    higher = stats.replace(empty_weight=0.02)
    assert higher.nonempty[0].tolist() == [True, False, False, False, False]
    assert ace(higher)[0] == pytest.approx(abs(0.102 - 1.0))


# --------------------------------------------------------------- hand-derived
def test_hand_derived_two_bins():
    # p=[0.1, 0.2, 0.8, 0.9], y=[0, 1, 1, 1], 2 bins: bin 0 conf .15 freq .5, bin 1 conf .85 freq 1
    stats = bin_image(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 1, 1, 1]), n_bins=2)
    assert ece(stats)[0] == pytest.approx((2 * 0.35 + 2 * 0.15) / 4)
    assert ace(stats)[0] == pytest.approx((0.35 + 0.15) / 2)
    assert mce(stats)[0] == pytest.approx(0.35)
    assert brier(stats)[0] == pytest.approx((0.01 + 0.64 + 0.04 + 0.01) / 4)
    assert dice(stats)[0] == pytest.approx(2 * 2 / (2 + 3))


def test_empty_image_gives_nan():
    stats = bin_image(np.array([0.3, 0.6]), np.array([0, 1]), mask=np.array([False, False]))
    for fn in (ece, ace, mce, brier, dice):
        assert np.isnan(fn(stats)[0])


def test_dice_nan_only_when_both_empty():
    empty = bin_image(np.array([0.1, 0.2]), np.array([0, 0]))
    assert np.isnan(dice(empty)[0])
    false_positive = bin_image(np.array([0.9, 0.2]), np.array([0, 0]))
    assert dice(false_positive)[0] == 0.0


def test_brier_decomposition_is_exact():
    rng = np.random.default_rng(12)
    probs = rng.dirichlet(np.ones(3), size=(40, 40)).transpose(2, 0, 1)
    labels = rng.integers(0, 3, size=(40, 40))
    for binning in ("hard", "soft"):
        stats = bin_image(probs, labels, binning=binning)
        parts = brier_decomposition(stats)
        rebuilt = (parts["reliability"] - parts["resolution"] + parts["uncertainty"]
                   + parts["within_bin_variance"] - 2 * parts["within_bin_covariance"])
        if binning == "hard":
            np.testing.assert_allclose(rebuilt, brier(stats), rtol=1e-10)
        base = labels_rate = np.array([(labels == c).mean() for c in range(3)])
        np.testing.assert_allclose(parts["uncertainty"], base * (1 - labels_rate), rtol=1e-10)


# ------------------------------------------------------------------- analytic truth
def test_bernoulli_outcomes_are_calibrated():
    rng = np.random.default_rng(13)
    n = 400_000
    p = rng.random(n)
    y = (rng.random(n) < p).astype(np.int64)
    stats = bin_image(p, y, n_bins=10)
    # each bin holds ~n/10 voxels; the frequency's standard error is <= 0.5/sqrt(n/10);
    # ECE is a weighted mean of |errors|, bounded well below 4 standard errors
    bound = 4 * 0.5 / np.sqrt(n / 10)
    assert ece(stats)[0] < bound
    np.testing.assert_allclose(stats.frequency[0], stats.mean_confidence[0], atol=bound)


def test_known_distortion_gives_known_curve():
    # outcomes drawn with probability p**2: in a bin, E[y] = mean of p**2 over the bin
    rng = np.random.default_rng(14)
    n = 400_000
    p = rng.random(n)
    y = (rng.random(n) < p**2).astype(np.int64)
    stats = bin_image(p, y, n_bins=10)
    lo, hi = np.arange(10) / 10, np.arange(1, 11) / 10
    expected_freq = (hi**3 - lo**3) / 3 / (hi - lo)  # mean of p² for uniform p in the bin
    np.testing.assert_allclose(stats.frequency[0], expected_freq, atol=4 * 0.5 / np.sqrt(n / 10))
    expected_ece = np.mean(np.abs((lo + hi) / 2 - expected_freq))
    assert ece(stats)[0] == pytest.approx(expected_ece, abs=0.005)


# -------------------------------------------------------------- peer cases (regression)
def binary(p, y, n_bins, dtype=np.float64):
    return bin_image(np.array(p, dtype=dtype), np.array(y), n_bins=n_bins)


def test_peer_T1_value_on_interior_edge():
    stats = binary([0.25, 0.5, 0.5, 0.75], [0, 1, 1, 1], 2)
    assert (ece(stats)[0], mce(stats)[0], ace(stats)[0]) == pytest.approx((0.25, 0.25, 0.25))


def test_peer_T2_probability_one():
    assert ece(binary([0.95, 1.0], [1, 0], 10))[0] == pytest.approx(0.475)


def test_peer_T3_probability_zero():
    stats = binary([0, 0, 0.05, 0.9], [1, 0, 0, 1], 10)
    assert ece(stats)[0] == pytest.approx(0.2625)
    assert mce(stats)[0] == pytest.approx(0.31666667)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_peer_T4_float32_decimal_edge(dtype):
    assert ece(binary([0.25, 0.3, 0.3, 0.35], [0, 1, 1, 0], 10, dtype))[0] == pytest.approx(0.375)


def test_peer_T5_T6_slightly_outside_is_clipped():
    above = binary([0.2, 0.9, 1.0000001], [0, 1, 1], 10)
    below = binary([-1e-7, 0.2, 0.9], [0, 0, 1], 10)
    assert ece(above)[0] == pytest.approx(0.10)
    assert ece(below)[0] == pytest.approx(0.10)
    assert above.n_clipped[0] == 1 and below.n_clipped[0] == 1


def peer_t7_probs():
    return np.array([[.25, .2, .55], [.55, .05, .4], [.1, .3, .6], [.9, .05, .05]]).T


def test_peer_T7_marginal_per_class():
    stats = bin_image(peer_t7_probs(), np.array([0, 1, 2, 0]), n_bins=3)
    np.testing.assert_allclose(ece(stats), [0.325, 0.100, 0.150], atol=1e-12)


def test_peer_T8_absent_class_is_scored_and_flagged():
    stats = bin_image(peer_t7_probs(), np.array([0, 2, 2, 0]), n_bins=3)
    assert np.isfinite(ece(stats)).all()
    assert stats.absent.tolist() == [False, True, False]


def test_peer_T9_macro_and_micro():
    a = binary([0.9] * 8, [1] * 8, 10)
    b = binary([0.9] * 2, [0] * 2, 10)
    assert np.mean([ece(a)[0], ece(b)[0]]) == pytest.approx(0.5)
    assert ece(pool([a, b]))[0] == pytest.approx(0.1)


def test_peer_T10_ties_equal_width():
    p, y = [0, 0, 0, 0, 0, 0, 0.2, 0.6, 1, 1], [0, 0, 0, 1, 0, 0, 0, 1, 1, 1]
    assert ece(binary(p, y, 5))[0] == pytest.approx(0.12)
    left = bin_image(np.array(p), np.array(y), n_bins=5, closure="left")
    assert ece(left)[0] == pytest.approx(0.16)


def test_peer_T14_brier_per_class():
    assert brier(binary([0.8, 0.3], [1, 0], 10))[0] == pytest.approx(0.065)


def test_peer_T16_zero_probabilities_kept():
    probs = np.array([[1, 0], [.9, .1], [.2, .8], [.6, .4]]).T
    stats = bin_image(probs, np.array([0, 0, 1, 1]), n_bins=10)
    assert ece(stats)[1] == pytest.approx(0.225)


def test_gap_metrics_of_plain_arrays_equals_the_binstats_metrics():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(3), size=500).T
    stats = bin_image(probs, rng.integers(0, 3, 500), n_bins=15)
    values = gap_metrics(stats.mean_confidence, stats.frequency, stats.count, stats.nonempty)
    for got, function in zip(values, (ece, ace, mce), strict=True):
        np.testing.assert_array_equal(got, function(stats))
    one = gap_metrics(stats.mean_confidence[1], stats.frequency[1], stats.count[1],
                      stats.nonempty[1])
    assert [float(v) for v in one] == [float(ece(stats)[1]), float(ace(stats)[1]),
                                       float(mce(stats)[1])]
    empty = gap_metrics([np.nan], [np.nan], [0], [False])
    assert all(np.isnan(v) for v in empty)


# ------------------------------------------------------------------------------ round 3
@pytest.mark.parametrize("threshold", [0.0, 1e-300])
def test_soft_metrics_with_empty_weight_zero_are_defined(threshold):
    """empty_weight 0: the bins of weight 0 are empty (0/0 is not a bin's mean)."""
    rng = np.random.default_rng(24)
    p = np.concatenate([[0.1, 0.12, 0.9], rng.random(30) * 0.3])
    y = (rng.random(p.size) < p).astype(int)
    stats = bin_image(p, y, n_bins=10, binning="soft", empty_weight=threshold)
    sums = naive.naive_bin(p[None], y, n_bins=10, classes=[1], binning="soft")
    expected = naive.naive_errors(sums)  # empty: W == 0
    assert (stats.count == 0).any()
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in ("ece", "ace", "mce", "brier"):
            assert METRICS[name](stats)[0] == pytest.approx(expected[name], rel=1e-12)
        assert np.isfinite(brier_decomposition(stats)["reliability"]).all()
        assert np.isfinite(METRICS["dce"](stats)).all()


@pytest.mark.parametrize("name", sorted(METRICS))
def test_metric_of_a_list_says_to_pool(name):
    stats = bin_image(np.array([0.2, 0.7]), np.array([0, 1]), n_bins=5)
    with pytest.raises(TypeError, match=rf"{name}\(\) expects one BinStats, got a list; "
                                        r".*calibviz\.pool"):
        METRICS[name]([stats, stats])
    with pytest.raises(TypeError, match=r"expects one BinStats, got a list"):
        brier_decomposition([stats])
    with pytest.raises(TypeError, match=r"expects one BinStats, got ndarray"):
        ece(np.zeros(3))
