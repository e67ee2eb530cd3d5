"""summary.json against a plain re-implementation of nnU-Net v2's
``compute_metrics_on_folder`` (per label ``np.nanmean`` over cases, ``foreground_mean`` the
plain ``np.mean`` over the labels other than 0, so a NaN label mean makes it NaN)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from calibviz import Results, bin_image
from calibviz.nnunet_summary import summary_json

COUNTS = ("Dice", "IoU", "FN", "FP", "TN", "TP", "n_pred", "n_ref")


def nnunet_case(pred: np.ndarray, truth: np.ndarray) -> dict:
    """nnU-Net's compute_metrics of one label: masks in, counts and Dice/IoU out."""
    tp, fp = int((pred & truth).sum()), int((pred & ~truth).sum())
    fn, tn = int((~pred & truth).sum()), int((~pred & ~truth).sum())
    empty = tp + fp + fn == 0
    return {"Dice": np.nan if empty else 2 * tp / (2 * tp + fp + fn),
            "IoU": np.nan if empty else tp / (tp + fp + fn), "FN": fn, "FP": fp, "TN": tn,
            "TP": tp, "n_pred": tp + fp, "n_ref": tp + fn}


def nnunet_means(per_case: list[dict], keys) -> tuple[dict, dict]:
    """``(mean, foreground_mean)`` exactly as nnU-Net v2 computes them."""
    metric_list = list(per_case[0]["metrics"][keys[0]])
    means = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for r in keys:
            means[r] = {m: np.nanmean([i["metrics"][r][m] for i in per_case])
                        for m in metric_list}
        foreground_mean = {}
        for m in metric_list:
            values = [means[k][m] for k in means if k not in (0, "0")]
            foreground_mean[m] = np.mean(values)
    return means, foreground_mean


def _run(cases, values):
    """Results of ``cases`` ``[(probs (C, ...), labels)]`` scored for label ``values``."""
    names = [f"c{v}" for v in values]
    stats = [bin_image(p[values], lab, classes=values, class_names=names) for p, lab in cases]
    options = {"absent": "include", "class_labels": {n: [v] for n, v in zip(names, values)}}
    return Results(tuple(f"k{i}" for i in range(len(cases))), stats, options)


def _cases(seed, n=3, empty_label=None, shape=(8, 7, 5)):
    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(n):
        probs = rng.dirichlet(np.ones(3) * 0.5, size=shape).transpose(3, 0, 1, 2)
        labels = rng.integers(0, 3, size=shape)
        if empty_label is not None:  # empty in every truth and never predicted (p < 0.5)
            labels[labels == empty_label] = 0
            probs[empty_label] = np.minimum(probs[empty_label], 0.4)
        cases.append((probs, labels))
    return cases


@pytest.mark.parametrize(("values", "empty_label"), [
    ([1, 2], 2),       # label 2 NaN in every case: its mean and the foreground mean NaN
    ([0, 1, 2], 2),    # background key "0" left out of the foreground mean
    ([1, 2], None),    # ordinary data
    ([0], None),       # no foreground label: nnU-Net's np.mean([]) is NaN
])
def test_summary_json_equals_nnunets_rule(values, empty_label):
    cases = _cases(31, empty_label=empty_label)
    if values == [0]:  # background only: every voxel label 0
        cases = [(p, np.zeros_like(lab)) for p, lab in cases]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no 'Mean of empty slice' from calibviz
        summary = summary_json(_run(cases, values))
    keys = [str(v) for v in values]
    expected_cases = [{"metrics": {str(v): nnunet_case(p[v] >= 0.5, lab == v)
                                   for v in values}} for p, lab in cases]
    for got, want in zip(summary["metric_per_case"], expected_cases, strict=True):
        for key in keys:
            for name in COUNTS:
                np.testing.assert_equal(got["metrics"][key][name], want["metrics"][key][name])
    # the means of every entry (calibviz's ECE … too) by nnU-Net's rule on calibviz's cases
    means, foreground = nnunet_means(summary["metric_per_case"], keys)
    for key in keys:
        for name, value in means[key].items():
            np.testing.assert_allclose(summary["mean"][key][name], value, rtol=1e-12)
    assert summary["foreground_mean"].keys() == foreground.keys()
    for name, value in foreground.items():
        np.testing.assert_allclose(summary["foreground_mean"][name], value, rtol=1e-12,
                                   err_msg=name)
    if empty_label is not None:  # the case the NaN-skipping mean got wrong
        assert np.isnan(summary["foreground_mean"]["Dice"])
        assert np.isfinite(summary["foreground_mean"]["ECE"])
