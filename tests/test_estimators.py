"""Debiased CE (loops), smooth ECE (relplot), top-label and class-wise ECE (hand argmax)."""

from __future__ import annotations

import numpy as np
import pytest

from calibviz import METRICS, bin_image, ece
from calibviz.aggregate import per_image_metrics
from calibviz.estimators import (
    TOP_LABEL,
    classwise_ece,
    smooth_ece,
    top_label_ece,
    top_label_stats,
)
from calibviz.metrics import CALIBRATION_METRICS, dce

from . import naive


# ------------------------------------------------------------------------- debiased
@pytest.mark.parametrize("seed", range(4))
def test_dce_matches_loops(seed):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(3) * 0.5, size=(9, 11)).transpose(2, 0, 1)
    labels = rng.integers(0, 3, size=(9, 11))
    for n_bins in (1, 5, 20, 100):  # 100 bins: many bins with n = 1
        stats = bin_image(probs, labels, n_bins=n_bins)
        expected = naive.naive_debiased_ce(stats.count, stats.sum_p, stats.sum_y)
        np.testing.assert_allclose(dce(stats), expected, rtol=1e-12, atol=1e-15)


def test_dce_hand_values_and_registry():
    # one bin, n = 4, p̄ = 0.5, ȳ = 0.75: 0.0625 − 0.1875/3 = 0 → 0
    stats = bin_image(np.full(4, 0.5), np.array([1, 1, 1, 0], bool), n_bins=1)
    assert dce(stats)[0] == 0.0
    # n = 1 bins: (ȳ − p̄)² alone: voxels 0.1 (y=1) and 0.9 (y=0) in their own bins → 0.9
    stats = bin_image(np.array([0.1, 0.9]), np.array([True, False]), n_bins=10)
    assert dce(stats)[0] == pytest.approx(0.9)
    # the correction can push the sum below zero: clipped, then 0
    stats = bin_image(np.full(3, 0.5), np.array([True, False, True]), n_bins=1)
    assert dce(stats)[0] == 0.0
    assert "dce" in METRICS and "dce" in CALIBRATION_METRICS
    empty = bin_image(np.full(2, 0.5), np.array([0, 0]), n_bins=5, mask=np.zeros(2, bool))
    assert np.isnan(dce(empty)[0])


def test_dce_honours_absent_policy_and_soft_weights():
    probs = np.array([[0.9, 0.8, 0.2], [0.1, 0.2, 0.8]])
    stats = bin_image(probs, np.array([0, 0, 0]), n_bins=5)
    assert np.isnan(per_image_metrics([stats], absent="exclude")["dce"][0, 1])
    soft = bin_image(probs, np.array([0, 0, 1]), n_bins=5, binning="soft")
    expected = naive.naive_debiased_ce(
        np.where(soft.nonempty, soft.count, 0), soft.sum_p, soft.sum_y)
    np.testing.assert_allclose(dce(soft), expected, rtol=1e-12)


def test_dce_is_nearly_unbiased_for_a_calibrated_model():
    rng = np.random.default_rng(7)
    p = rng.random(20_000)
    y = rng.random(p.size) < p
    stats = bin_image(p, y, n_bins=100)
    assert dce(stats)[0] < 0.5 * ece(stats)[0]


# ------------------------------------------------------------------------ smooth ECE
def smece_cases():
    rng = np.random.default_rng(11)
    n = 60_000
    logits = np.where(rng.random(n) < 0.85, rng.normal(-8, 3, n), rng.normal(4, 3, n))
    seg = 1 / (1 + np.exp(-logits))
    return {
        "heavy-near-0": (rng.beta(0.5, 2.0, n), lambda p: p**0.6),
        "heavy-near-1": (rng.beta(2.0, 0.5, n), lambda p: p**1.5),
        "segmentation-like": (seg, lambda p: np.clip(1.1 * p - 0.02, 0, 1)),
        "calibrated": (rng.random(n), lambda p: p),
    }, rng


@pytest.mark.parametrize("name", ["heavy-near-0", "heavy-near-1", "segmentation-like",
                                  "calibrated"])
def test_smooth_ece_matches_relplot(name):
    relplot = pytest.importorskip("relplot", reason="relplot (test extra) is not installed")
    cases, rng = smece_cases()
    p, calibration = cases[name]
    y = rng.random(p.size) < calibration(p)
    expected, width = relplot.smECE(p, y.astype(np.float64), return_width=True)
    stats = bin_image(p, y, n_bins=600)  # the resolution the docs recommend
    value, sigma = smooth_ece(stats, return_width=True)
    assert value == pytest.approx(expected, abs=1e-3)
    assert sigma == pytest.approx(width, abs=2**-9)
    fixed = relplot.smECE_sigma(p, y.astype(np.float64), 0.05)
    assert smooth_ece(stats, sigma=0.05) == pytest.approx(fixed, abs=1e-3)


def test_smooth_ece_edge_cases():
    stats = bin_image(np.array([[0.2, 0.7], [0.8, 0.3]]), np.array([1, 1]), n_bins=600)
    assert np.isnan(smooth_ece(stats.mask_classes(np.array([False, True])), 0))
    assert smooth_ece(stats, "class1") >= 0
    soft = bin_image(np.array([0.2, 0.7]), np.array([True, False]), n_bins=10, binning="soft")
    with pytest.raises(ValueError, match="hard"):
        smooth_ece(soft)


# ------------------------------------------------------------- top-label, class-wise
@pytest.mark.parametrize("classes", [None, [0, 3, 5]])
def test_top_label_from_hand_argmax(classes):
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(3), size=(12, 10)).transpose(2, 0, 1)
    probs[:, 0, 0] = [0.4, 0.4, 0.2]  # a tie: the first class wins
    values = [0, 1, 2] if classes is None else classes
    labels = rng.choice(values, size=(12, 10))
    confidence, correct = naive.naive_top_label(probs, labels, values)
    stats = top_label_stats(probs, labels, n_bins=10, classes=classes)
    assert stats.class_names == (TOP_LABEL,)
    expected = naive.naive_voxel_errors(confidence, correct, 10)["ece"]
    assert top_label_ece(stats) == pytest.approx(expected, rel=1e-12)
    assert top_label_ece(stats.replace(class_names=("x",))) == pytest.approx(expected)


def test_classwise_ece_is_the_mean_of_marginal_eces():
    rng = np.random.default_rng(4)
    probs = rng.dirichlet(np.ones(3), size=400).T
    labels = rng.integers(0, 3, size=400)
    stats = bin_image(probs, labels, n_bins=15)
    assert classwise_ece(stats) == pytest.approx(ece(stats).mean(), rel=1e-14)
    assert classwise_ece(stats, ["class1", "class2"]) == pytest.approx(ece(stats)[1:].mean())
    assert np.isnan(classwise_ece(stats.mask_classes(np.zeros(3, bool))))


def test_one_image_functions_name_what_to_pass_for_a_results():
    """smooth_ece, top_label_ece, classwise_ece and the reliability diagram take one
    BinStats; a Results (or a list) is one TypeError saying what to pass instead."""
    from calibviz import Results
    from calibviz.estimators import classwise_ece, smooth_ece, top_label_ece
    from calibviz.viz import ReliabilityDiagramDisplay

    rng = np.random.default_rng(4)
    stats = bin_image(rng.dirichlet([1, 1], 200).T, rng.integers(0, 2, 200), n_bins=10)
    results = Results(("a", "b"), (stats, stats), {"n_bins": 10})
    for function in (smooth_ece, top_label_ece, classwise_ece,
                     ReliabilityDiagramDisplay.from_stats):
        for given, found in ((results, "got a Results; use results.stats"),
                             ([stats, stats], "got a list; pool several")):
            with pytest.raises(TypeError, match=f"expects one BinStats, {found}"):
                function(given)
    assert np.isfinite(smooth_ece(stats, 1)) and np.isfinite(classwise_ece(stats))
