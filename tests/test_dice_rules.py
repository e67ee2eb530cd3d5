"""Dice as users compute it: the argmax segmentation of a softmax map (nnU-Net, MONAI
inference) or each channel thresholded at p >= 0.5 (the paper, MONAI AsDiscrete)."""

from __future__ import annotations

import numpy as np
import pytest

from calibviz import bin_image, dice, evaluate_folder
from calibviz.synthetic import write_label, write_nifti


def _hand_dice(pred: np.ndarray, truth: np.ndarray) -> float:
    tp = np.sum(pred & truth)
    denominator = pred.sum() + truth.sum()
    return np.nan if denominator == 0 else 2 * tp / denominator


def _folder(tmp_path, probs, labels):
    write_label(tmp_path / "labels" / "c.nii.gz", labels)
    write_nifti(tmp_path / "pred" / "c.nii.gz", np.moveaxis(probs, 0, -1))
    return tmp_path / "pred", tmp_path / "labels"


def _softmax_with_ties(shape=(6, 5, 4), seed=0):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet([1, 1, 1], size=shape).transpose(3, 0, 1, 2).astype(np.float32)
    probs[:, 0, 0, 0] = [0.5, 0.5, 0.0]      # a tie: the lowest channel wins
    probs[:, 1, 0, 0] = [0.25, 0.25, 0.5]    # exactly 0.5: positive under the threshold rule
    probs[:, 2, 0, 0] = [0.4, 0.3, 0.3]      # argmax 0, nothing reaches 0.5
    labels = rng.integers(0, 3, size=shape).astype(np.uint8)
    return probs, labels


def test_argmax_is_the_default_for_softmax_maps(tmp_path):
    probs, labels = _softmax_with_ties()
    result = evaluate_folder(*_folder(tmp_path, probs, labels), include_background=True)
    argmax = np.argmax(probs, axis=0)  # numpy: lowest index wins ties
    expected = [_hand_dice(argmax == c, labels == c) for c in range(3)]
    np.testing.assert_allclose(dice(result.stats[0]), expected)
    assert result.options["dice_rule"] == "argmax"


def test_threshold_rule_is_p_at_least_one_half(tmp_path):
    probs, labels = _softmax_with_ties()
    result = evaluate_folder(*_folder(tmp_path, probs, labels), include_background=True,
                             dice="threshold")
    expected = [_hand_dice(probs[c] >= 0.5, labels == c) for c in range(3)]
    np.testing.assert_allclose(dice(result.stats[0]), expected)
    # the library's bin_image applies the same threshold rule
    direct = bin_image(probs, labels, n_bins=20)
    np.testing.assert_allclose(dice(direct), expected)


def test_argmax_on_independent_channels_is_a_usage_error(tmp_path):
    rng = np.random.default_rng(1)
    probs = rng.random((2, 6, 5, 4)).astype(np.float32)  # two sigmoid channels
    labels = rng.integers(0, 3, size=(6, 5, 4)).astype(np.uint8)
    pred, lab = _folder(tmp_path, probs, labels)
    with pytest.raises(ValueError, match="--dice argmax needs a softmax"):
        evaluate_folder(pred, lab, dice="argmax", classes="a=1,b=2")


def test_empty_truth_conventions():
    # empty truth and empty prediction: NaN; empty truth with false positives: 0
    probs = np.array([[0.9, 0.1, 0.2]])
    truth = np.array([0, 0, 0])
    assert dice(bin_image(probs[0], truth, classes=[1]))[0] == 0.0
    assert np.isnan(dice(bin_image(np.array([0.1, 0.2]), np.array([0, 0]), classes=[1]))[0])


def test_argmax_of_regions_of_a_softmax(tmp_path):
    probs, labels = _softmax_with_ties(seed=3)
    result = evaluate_folder(*_folder(tmp_path, probs, labels),
                             classes="background=0,a=1,b=2", regions="ab=1,2;b=2")
    argmax = np.argmax(probs, axis=0)
    expected = [_hand_dice(np.isin(argmax, [1, 2]), np.isin(labels, [1, 2])),
                _hand_dice(argmax == 2, labels == 2)]
    np.testing.assert_allclose(dice(result.stats[0]), expected)
