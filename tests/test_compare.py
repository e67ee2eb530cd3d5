"""Paired comparison of models (spec §10) and bootstrap intervals (spec §4)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from calibviz import bin_image, micro_metrics, pool
from calibviz.bootstrap import (
    SumArrays,
    bootstrap_means,
    macro_mean_interval,
    metrics_from_sums,
    micro_interval,
    micro_samples,
    percentile_interval,
    resample_weights,
)
from calibviz.comparison import compare, compare_runs, verdict
from calibviz.metrics import METRICS
from calibviz.paired import holm, paired_tests, percent_change
from calibviz.run_values import COLUMNS, MICRO_COLUMNS, RunValues, load_run, strip_case

CLASSES = ("background", "liver", "tumour", "vessel")


def write_run(folder: Path, cases, stats, options=None) -> Path:
    """A calibviz results folder (``stats.npz``); the one place that knows the store module."""
    from calibviz import Results, save_results

    save_results(Path(folder) / "stats.npz",
                 Results(cases=tuple(cases), stats=tuple(stats), options=options or {}))
    return Path(folder)


def random_images(n_images, n_classes=3, *, seed=0, n_voxels=400, n_bins=10, power=1.0,
                  binning="hard", names=None):
    """Per-image BinStats of random softmax maps whose labels are drawn from ``p**power``
    (``power = 1``: calibrated)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_images):
        probs = rng.dirichlet(np.ones(n_classes) * 0.6, size=n_voxels).T
        truth = probs**power / (probs**power).sum(axis=0)
        labels = (rng.random(n_voxels) > np.cumsum(truth, axis=0)).sum(axis=0)
        labels = np.minimum(labels, n_classes - 1)
        out.append(bin_image(probs, labels, n_bins=n_bins, binning=binning,
                             class_names=names))
    return out


def reference_field(shape, rng, n_classes=4):
    """float64 ``(C, *shape)`` smooth class probabilities q (softmax of box-smoothed noise)."""
    logits = rng.normal(scale=4.0, size=(n_classes, *shape))
    for _ in range(2):
        for axis in range(1, logits.ndim):
            logits = (logits + np.roll(logits, 1, axis) + np.roll(logits, -1, axis)) / 3
    logits += np.array([1.5, 0.5, -0.5, -1.0])[:n_classes].reshape(-1, *[1] * len(shape))
    q = np.exp(logits - logits.max(axis=0))
    return q / q.sum(axis=0)


def sample_labels(q, rng):
    """Labels drawn per voxel from ``Categorical(q)``: a model predicting q is calibrated."""
    return np.minimum((rng.random(q.shape[1:]) > np.cumsum(q, axis=0)).sum(axis=0),
                      q.shape[0] - 1)


def sharpen(q, temperature):
    """``softmax(log q / T)``: over-confident for ``T < 1`` (the demo's second model)."""
    logits = np.log(np.clip(q, 1e-12, None)) / temperature
    p = np.exp(logits - logits.max(axis=0))
    return p / p.sum(axis=0)


@pytest.fixture(scope="module")
def demo_models():
    """20 images scored by a calibrated and an over-confident model, simulated as
    ``calibviz demo`` does: labels sampled from q; calibrated predicts q, over-confident
    ``softmax(log q / 0.5)``."""
    rng = np.random.default_rng(3)
    calibrated, overconfident = [], []
    for _ in range(20):
        q = reference_field((14, 14, 8), rng)
        labels = sample_labels(q, rng)
        calibrated.append(bin_image(q, labels, n_bins=10, class_names=CLASSES))
        overconfident.append(bin_image(sharpen(q, 0.5), labels, n_bins=10,
                                       class_names=CLASSES))
    cases = [f"case_{i:02d}" for i in range(20)]
    return cases, calibrated, overconfident


def write_reference(folder: Path, metric_file: str, cases, values, classes,
                    mean=None, duplicate_mean=True) -> Path:
    """A reference-layout ``*_raw.csv``: filename, classes…, mean (twice, as the authors')."""
    folder.mkdir(parents=True, exist_ok=True)
    values = np.asarray(values, dtype=np.float64)
    mean = np.nanmean(values, axis=1) if mean is None else np.asarray(mean)
    header = ["filename", *classes, "mean", *(["mean"] if duplicate_mean else [])]
    rows = [[c, *v, m, *([m] if duplicate_mean else [])]
            for c, v, m in zip(cases, values.tolist(), mean.tolist(), strict=True)]
    pd.DataFrame(rows, columns=header).to_csv(folder / metric_file, index=False)
    return folder


# --------------------------------------------------------------------------- statistics
def test_holm_equals_hand_computation():
    p = [0.01, 0.04, 0.03, 0.005, np.nan]
    # m = 4 finite: sorted 0.005, 0.01, 0.03, 0.04 -> 4*0.005, 3*0.01, 2*0.03, 1*0.04
    # = 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    expected = [0.03, 0.06, 0.06, 0.02, np.nan]
    np.testing.assert_allclose(holm(p), expected, rtol=1e-12)
    np.testing.assert_allclose(holm([0.5, 0.9]), [1.0, 1.0])  # capped at 1
    assert np.isnan(holm([np.nan, np.nan])).all()
    assert holm([]).shape == (0,)


def test_paired_tests_equal_scipy():
    rng = np.random.default_rng(1)
    a = rng.gamma(2.0, 0.01, size=30)
    b = a * rng.lognormal(-0.1, 0.3, size=30)
    t_p, w_p = paired_tests(b, a)
    assert t_p == scipy_stats.ttest_rel(b, a).pvalue
    assert w_p == scipy_stats.wilcoxon(b, a).pvalue
    assert all(math.isnan(p) for p in paired_tests(b[:1], a[:1]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t_p, w_p = paired_tests(a, a)
    assert math.isnan(t_p) and w_p == 1.0


def test_percent_change_is_the_papers_rule():
    model = np.array([0.3, 0.1, 0.5, 0.2])
    base = np.array([0.2, 0.2, 0.0, 0.4])
    changes = [(0.3 - 0.2) / 0.2 * 100, (0.1 - 0.2) / 0.2 * 100, (0.2 - 0.4) / 0.4 * 100]
    mean, std, n = percent_change(model, base)
    assert n == 3
    assert mean == pytest.approx(np.mean(changes))
    assert std == pytest.approx(np.sqrt(np.mean((np.array(changes) - np.mean(changes)) ** 2)))


def test_strip_case():
    assert strip_case("a/b/case_1.nii.gz") == "case_1"
    assert strip_case("case_1.NII") == "case_1"
    assert strip_case("case_1") == "case_1"


# --------------------------------------------------------------------------- bootstrap
def hand_bootstrap_means(values, n_bootstrap, seed):
    """The documented draw order written as a plain loop."""
    rng = np.random.default_rng(seed)
    n = values.shape[0]
    out = []
    for _ in range(n_bootstrap):
        drawn = (rng.random(n) * n).astype(np.int64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out.append(np.nanmean(values[drawn], axis=0))
    return np.array(out)


def hand_honest(estimate, low, high, n_images):
    """The honesty rules written as a plain loop: NaN for fewer than two images or a NaN
    estimate; NaN (and discarded) for an interval missing its estimate beyond rounding."""
    out_low, out_high, gone = [], [], []
    for e, lo, hi, n in zip(estimate, low, high, n_images, strict=True):
        tol = 1e-9 * max(abs(e), abs(lo), abs(hi)) if math.isfinite(lo + hi) else 0.0
        if n < 2 or not math.isfinite(e) or not math.isfinite(lo + hi):
            out_low.append(math.nan), out_high.append(math.nan), gone.append(False)
        elif lo > e + tol or hi < e - tol:
            out_low.append(math.nan), out_high.append(math.nan), gone.append(True)
        else:
            out_low.append(min(lo, e)), out_high.append(max(hi, e)), gone.append(False)
    return np.array(out_low), np.array(out_high), np.array(gone)


def test_bootstrap_equals_hand_written_loop():
    rng = np.random.default_rng(5)
    values = rng.normal(size=(13, 4))
    values[[1, 4], 2] = np.nan
    values[:, 3] = np.nan
    values[0, 3] = 1.5  # one finite value: many resamples miss it
    expected = hand_bootstrap_means(values, 300, seed=7)
    for chunk in (1, 7, 300):
        got = bootstrap_means(values, 300, seed=7, chunk=chunk)
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
    low, high = macro_mean_interval(values, 300, seed=7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        hand = np.nanpercentile(expected, [2.5, 97.5], axis=0)
        means = np.nanmean(values, axis=0)
    hand_low, hand_high, _ = hand_honest(means, hand[0], hand[1],
                                         np.isfinite(values).sum(axis=0))
    assert np.isnan(hand_low[3])  # one finite value: no interval (it was [1.5, 1.5])
    np.testing.assert_allclose(low, hand_low, rtol=1e-12)
    np.testing.assert_allclose(high, hand_high, rtol=1e-12)


def test_resample_weights_are_multiplicities():
    weights = np.vstack(list(resample_weights(9, 50, seed=2, chunk=8)))
    assert weights.shape == (50, 9)
    assert (weights.sum(axis=1) == 9).all()
    rng = np.random.default_rng(2)
    first = np.bincount((rng.random(9) * 9).astype(int), minlength=9)
    np.testing.assert_array_equal(weights[0], first)


def test_zero_resamples_give_nan_and_bad_settings_raise():
    low, high = macro_mean_interval(np.ones((5, 2)), n_bootstrap=0)
    assert np.isnan(low).all() and np.isnan(high).all()
    images = random_images(3)
    out = micro_interval(images, ("ece",), n_bootstrap=0)
    assert np.isnan(out["ece"][0]).all()
    with pytest.raises(ValueError, match="n_bootstrap"):
        macro_mean_interval(np.ones((5, 2)), n_bootstrap=-1)
    with pytest.raises(ValueError, match="confidence"):
        macro_mean_interval(np.ones((5, 2)), confidence=1.5)


@pytest.mark.parametrize("binning", ["hard", "soft"])
def test_metrics_from_sums_equal_metrics_module(binning):
    images = random_images(6, 4, seed=11, binning=binning)
    for image in [*images, pool(images)]:
        got = metrics_from_sums(SumArrays.stack([image]).total())
        for name, function in METRICS.items():
            np.testing.assert_allclose(got[name], function(image), rtol=1e-12, atol=1e-14,
                                       equal_nan=True)
    batch = metrics_from_sums(SumArrays.stack(images))  # leading image axis
    for name, function in METRICS.items():
        expected = np.stack([function(s) for s in images])
        np.testing.assert_allclose(batch[name], expected, rtol=1e-12, equal_nan=True)


def test_micro_samples_equal_pooling_loop():
    images = random_images(7, 3, seed=4)
    samples = micro_samples([SumArrays.stack(images)], ("ece", "ace", "brier"), 5, seed=9)[0]
    rng = np.random.default_rng(9)
    for r in range(5):
        drawn = (rng.random(7) * 7).astype(int)
        expected = micro_metrics([images[i] for i in drawn])
        for name in ("ece", "ace", "brier"):
            np.testing.assert_allclose(samples[name][r], expected[name], rtol=1e-10)


def test_micro_interval_contains_value_and_shrinks_with_more_images():
    small = random_images(10, 3, seed=21, power=1.6)
    large = random_images(80, 3, seed=22, power=1.6)
    widths = []
    for images in (small, large):
        value = micro_metrics(images)
        intervals = micro_interval(images, ("ece", "ace", "mce", "brier"), 2000, seed=0)
        for name, (low, high) in intervals.items():
            assert (low <= value[name]).all() and (value[name] <= high).all(), name
        widths.append(np.mean(intervals["ece"][1] - intervals["ece"][0]))
    assert widths[1] < 0.6 * widths[0]


def test_micro_interval_honours_absent_policy():
    images = random_images(6, 3, seed=8)
    stack = SumArrays.stack(images, absent="exclude")
    np.testing.assert_allclose(metrics_from_sums(stack.total())["ece"],
                               micro_metrics(images, absent="exclude")["ece"], rtol=1e-12)


def test_percentile_interval_skips_nan():
    samples = np.array([[1.0], [np.nan], [3.0]])
    low, high = percentile_interval(samples, 0.5)
    assert low[0] == pytest.approx(1.5) and high[0] == pytest.approx(2.5)


# --------------------------------------------------------------------------- reference layout
def test_reference_pair_gives_paper_statistics(tmp_path):
    classes = ["class0", "class1", "class2"]
    a_vals = [[0.10, 0.20, 0.30], [0.05, 0.10, 0.40], [0.20, 0.00, 0.10]]
    b_vals = [[0.08, 0.10, 0.20], [0.06, 0.05, 0.30], [0.10, 0.02, 0.05]]
    a = write_reference(tmp_path / "baseline", "macro_ace_raw.csv",
                        ["c1.nii.gz", "c2.nii.gz", "c3.nii.gz", "only_a.nii.gz"],
                        [*a_vals, [0.1, 0.1, 0.1]], classes)
    b = write_reference(tmp_path / "soft", "macro_ace_raw.csv",
                        ["c3.nii.gz", "c1.nii.gz", "c2.nii.gz"],
                        [b_vals[2], b_vals[0], b_vals[1]], classes)
    result = compare_runs(a, b, n_bootstrap=500)
    table = result.table
    assert list(table.columns) == list(COLUMNS)
    assert set(table["metric"]) == {"ace"}
    assert list(table["class"]) == [*classes, "mean"]
    row = table.set_index("class").loc["mean"]
    a_mean = np.mean(a_vals, axis=1)
    b_mean = np.mean(b_vals, axis=1)
    assert row["n"] == 3
    assert row["ttest_p"] == pytest.approx(scipy_stats.ttest_rel(b_mean, a_mean).pvalue,
                                           rel=1e-12)
    change = (b_mean - a_mean) / a_mean * 100
    assert row["pct_change_mean"] == pytest.approx(change.mean())
    assert row["pct_change_std"] == pytest.approx(np.std(change))
    assert row["rel_change_of_means"] == pytest.approx((b_mean.mean() - a_mean.mean())
                                                       / a_mean.mean())
    # class1 of c3 has a zero baseline: left out of the percentage (paper's rule)
    class1 = table.set_index("class").loc["class1"]
    assert class1["pct_change_n"] == 2
    assert result.micro.empty and list(result.micro.columns) == list(MICRO_COLUMNS)
    assert result.unpaired.to_dict("records") == [
        {"model": "soft", "case": "only_a", "only_in": "baseline"}]


def test_reference_mean_column_is_the_one_tested(tmp_path):
    classes = ["liver", "tumour"]
    a = write_reference(tmp_path / "a", "macro_ece_raw.csv", ["x", "y", "z"],
                        [[0.1, 0.2], [0.3, 0.4], [0.2, 0.2]], classes, mean=[0.5, 0.6, 0.8],
                        duplicate_mean=False)
    b = write_reference(tmp_path / "b", "macro_ece_raw.csv", ["x", "y", "z"],
                        [[0.1, 0.1], [0.2, 0.3], [0.2, 0.1]], classes, mean=[0.4, 0.5, 0.6])
    row = compare(a, b, n_bootstrap=0).set_index("class").loc["mean"]
    assert row["ttest_p"] == pytest.approx(
        scipy_stats.ttest_rel([0.4, 0.5, 0.6], [0.5, 0.6, 0.8]).pvalue)
    assert np.isnan(row["ci_low"])  # n_bootstrap = 0


def test_reference_against_calibviz_run(tmp_path, demo_models):
    cases, calibrated, _ = demo_models
    run = write_run(tmp_path / "run", cases, calibrated)
    values = RunValues.from_stats("x", cases, calibrated).values
    ref = write_reference(tmp_path / "ref", "macro_ace_raw.csv",
                          [f"{c}.npz" for c in cases], values["ace"][:, :-1],
                          list(CLASSES))
    result = compare_runs(ref, run, n_bootstrap=200)
    assert set(result.table["metric"]) == {"ace"}
    assert (result.table["mean_diff"].abs() < 1e-12).all()
    assert result.micro.empty


# --------------------------------------------------------------------------- calibviz runs
def test_calibrated_model_has_lower_ace(tmp_path, demo_models):
    cases, calibrated, overconfident = demo_models
    base = write_run(tmp_path / "overconfident", cases, overconfident)
    other = write_run(tmp_path / "calibrated", cases, calibrated)
    result = compare_runs(base, other, n_bootstrap=2000)
    table = result.table
    n_rows = len(METRICS) * (len(CLASSES) + 1)
    assert len(table) == n_rows and list(table.columns) == list(COLUMNS)
    row = table[(table["metric"] == "ace") & (table["class"] == "mean")].iloc[0]
    assert row["n"] == 20 and row["model"] == "calibrated" and row["baseline"] == "overconfident"
    assert row["mean_diff"] < 0 and row["ci_high"] < 0
    assert row["wilcoxon_p"] < 0.01 and row["wilcoxon_p_holm"] < 0.01
    assert verdict(row).startswith("lower ACE, p < ")
    # Holm within the comparison, per test
    np.testing.assert_allclose(table["wilcoxon_p_holm"], holm(table["wilcoxon_p"]))
    np.testing.assert_allclose(table["ttest_p_holm"], holm(table["ttest_p"]))
    # micro table: per class, values equal pooled metrics, interval around the difference
    micro = result.micro
    assert list(micro.columns) == list(MICRO_COLUMNS)
    assert len(micro) == len(METRICS) * len(CLASSES)  # every metric computable from sums
    pooled_base = micro_metrics(overconfident)
    pooled_model = micro_metrics(calibrated)
    ace_rows = micro[micro["metric"] == "ace"]
    np.testing.assert_allclose(ace_rows["micro_baseline"], pooled_base["ace"], rtol=1e-12)
    np.testing.assert_allclose(ace_rows["micro_model"], pooled_model["ace"], rtol=1e-12)
    assert (ace_rows["ci_low"] <= ace_rows["micro_diff"]).all()
    assert (ace_rows["micro_diff"] <= ace_rows["ci_high"]).all()


def test_model_against_itself(tmp_path, demo_models):
    cases, calibrated, _ = demo_models
    run = write_run(tmp_path / "run", cases, calibrated)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = compare_runs(run, run, names=["a", "b"], n_bootstrap=300)
    table = result.table
    for column in ("ttest_p", "wilcoxon_p", "ttest_p_holm", "wilcoxon_p_holm"):
        p = table[column].to_numpy()
        assert np.all(np.isnan(p) | (p == 1.0)), column
    ok = table["n"] > 0
    assert (table.loc[ok, "ci_low"] <= 0).all() and (table.loc[ok, "ci_high"] >= 0).all()
    assert (result.micro["micro_diff"].fillna(0) == 0).all()
    assert all(v.startswith("no evidence") or v.startswith("too few")
               for v in table.apply(verdict, axis=1))


def test_bootstrap_interval_equals_macro_interval_of_differences(tmp_path, demo_models):
    cases, calibrated, overconfident = demo_models
    result = compare_runs(RunValues.from_stats("over", cases, overconfident),
                          RunValues.from_stats("cal", cases, calibrated), n_bootstrap=400,
                          seed=3)
    differences = result.differences("cal", "ece")
    low, high = macro_mean_interval(differences.to_numpy(), 400, seed=3)
    rows = result.table[result.table["metric"] == "ece"]
    np.testing.assert_allclose(rows["ci_low"], low, rtol=1e-12)
    np.testing.assert_allclose(rows["ci_high"], high, rtol=1e-12)


def test_cases_paired_by_id_and_classes_by_name(tmp_path, demo_models):
    cases, calibrated, overconfident = demo_models
    names = CLASSES
    reordered = [s.select(list(reversed(names))) for s in calibrated]
    base = write_run(tmp_path / "a", cases[:15], overconfident[:15])
    other = write_run(tmp_path / "b", [f"{c}.nii.gz" for c in cases[5:]][::-1],
                      reordered[5:][::-1])
    result = compare_runs(base, other, n_bootstrap=100)
    expected = compare_runs(RunValues.from_stats("a", cases[5:15], overconfident[5:15]),
                            RunValues.from_stats("b", cases[5:15], calibrated[5:15]),
                            n_bootstrap=100)
    pd.testing.assert_frame_equal(result.table, expected.table)
    pd.testing.assert_frame_equal(result.micro, expected.micro)
    only = result.unpaired.groupby("only_in")["case"].apply(sorted).to_dict()
    assert only == {"a": cases[:5], "b": cases[15:]}


def write_per_image_csv(folder: Path, cases, stats) -> Path:
    """``per_image.csv`` as ``calibviz evaluate`` writes it (case, class, …, metrics, …)."""
    rows = []
    for case, image in zip(cases, stats, strict=True):
        values = {name: function(image) for name, function in METRICS.items()}
        for c, name in enumerate(image.class_names):
            rows.append({"case": case, "class": name, "n_voxels": int(image.n_voxels[c]),
                         "n_truth": int(image.n_truth[c]),
                         **{m: float(v[c]) for m, v in values.items()},
                         "absent": bool(image.absent[c]), "n_clipped": 0})
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(folder / "per_image.csv", index=False)
    return folder


def test_per_image_csv_run_equals_stats_run(tmp_path, demo_models):
    cases, calibrated, overconfident = demo_models
    folder = write_per_image_csv(tmp_path / "csv_only", cases, calibrated)
    from_csv = load_run(folder)
    from_stats = RunValues.from_stats("x", cases, calibrated)
    assert from_csv.kind == "calibviz" and from_csv.stats is None
    for metric in METRICS:
        np.testing.assert_allclose(from_csv.values[metric], from_stats.values[metric],
                                   rtol=1e-9, equal_nan=True)
    tidy = from_csv.per_image
    assert list(tidy.columns) == ["case", "class", "metric", "value"]
    assert len(tidy) == len(cases) * (len(CLASSES) + 1) * len(METRICS)
    base = write_run(tmp_path / "base", cases, overconfident)
    result = compare_runs(base, folder, n_bootstrap=50)
    assert result.micro.empty and len(result.table) == len(METRICS) * (len(CLASSES) + 1)


def _absent_class0(stats):
    """``stats`` as if class 0 were absent from the truth: its outcomes 0, its positives
    false positives (the voxels and predictions unchanged)."""
    zero = np.ones(stats.n_classes)
    zero[0] = 0
    return stats.replace(sum_y=stats.sum_y * zero[:, None], sum_py=stats.sum_py * zero[:, None],
                         tp=stats.tp * zero.astype(int), fn=stats.fn * zero.astype(int),
                         fp=stats.fp + stats.tp * (1 - zero.astype(int)),
                         tn=stats.tn + stats.fn * (1 - zero.astype(int)))


def test_absent_policy_from_run_options(tmp_path):
    images = random_images(5, 3, seed=2, n_voxels=40)
    images = [_absent_class0(s) for s in images]  # class 0 absent everywhere
    run = write_run(tmp_path / "ex", [f"c{i}" for i in range(5)], images,
                    options={"absent": "exclude"})
    loaded = load_run(run)
    assert loaded.absent == "exclude" and np.isnan(loaded.values["ece"][:, 0]).all()
    include = write_run(tmp_path / "in", [f"c{i}" for i in range(5)], images,
                        options={"absent": "include"})
    with pytest.raises(ValueError, match="absent policy"):
        compare(run, include)
    table = compare(run, include, absent="include", n_bootstrap=10)
    assert (table["n"] == 5).all()


# --------------------------------------------------------------------------- bad input
def test_bad_inputs_raise_one_clear_error(tmp_path, demo_models):
    cases, calibrated, overconfident = demo_models
    run = write_run(tmp_path / "run", cases, calibrated)
    with pytest.raises(ValueError, match=r"baseline and at least one other.*run"):
        compare(run)
    elsewhere = write_run(tmp_path / "elsewhere", [f"other_{c}" for c in cases], calibrated)
    with pytest.raises(ValueError, match=r"no common case between .*run.*elsewhere"):
        compare(run, elsewhere)
    renamed = [s.replace(class_names=("bg", "a", "b", "c")) for s in calibrated]
    classes = write_run(tmp_path / "classes", cases, renamed)
    with pytest.raises(ValueError, match=r"different classes: .*run.*'liver'.*classes.*'bg'"):
        compare(run, classes)
    top = [s.join(s.select([0]).replace(class_names=("top-label",))) for s in calibrated]
    with_top = write_run(tmp_path / "with_top", cases, top)
    with pytest.raises(ValueError, match=r"only .*with_top has the top-label row: evaluate "
                                         r"both with --top-label, or both without it"):
        compare(run, with_top)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty: not a results folder"):
        compare(run, tmp_path / "empty")
    with pytest.raises(ValueError, match="missing: not a folder"):
        compare(run, tmp_path / "missing")
    rng = np.random.default_rng(0)
    coarse = []
    for _ in cases:
        q = reference_field((6, 6, 4), rng)
        coarse.append(bin_image(q, sample_labels(q, rng), n_bins=5,
                                class_names=CLASSES))
    bins = write_run(tmp_path / "bins", cases, coarse)
    with pytest.raises(ValueError, match=r"bin conventions between .*run.*bins.*bins 10 vs 5"):
        compare(run, bins)
    with pytest.raises(ValueError, match="names"):
        compare(run, run, names=["a"])


def test_duplicate_case_ids_after_stripping_raise(tmp_path, demo_models):
    cases, calibrated, _ = demo_models
    with pytest.raises(ValueError, match=r"'x'.*more than once.*case_00"):
        RunValues.from_stats("x", ["case_00.nii", "case_00.nii.gz"], calibrated[:2])


def test_per_image_only_comparison_ignores_bin_conventions(tmp_path, demo_models):
    cases, calibrated, _ = demo_models
    run = write_run(tmp_path / "run", cases, calibrated)
    values = RunValues.from_stats("x", cases, calibrated).values
    ref = write_reference(tmp_path / "ref", "mean_dice_raw.csv", cases, values["dice"][:, :-1],
                          list(CLASSES))
    table = compare(run, ref, n_bootstrap=10)
    assert set(table["metric"]) == {"dice"}


def test_reference_folder_with_bad_header(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    pd.DataFrame({"name": ["a"], "class0": [0.1]}).to_csv(folder / "macro_ace_raw.csv",
                                                          index=False)
    with pytest.raises(ValueError, match=r"macro_ace_raw.csv: expected the header"):
        load_run(folder)


# --------------------------------------------------------------------------- verdict, figure
def test_verdict_wording():
    row = {"metric": "ace", "mean_diff": 0.01, "wilcoxon_p_holm": 0.0213, "n": 30}
    assert verdict(row) == "higher ACE, p = 0.021 (Wilcoxon, Holm)"
    assert verdict({**row, "wilcoxon_p_holm": 0.41}).startswith("no evidence of a difference")
    too_few = verdict({**row, "wilcoxon_p_holm": np.nan, "n": 1})
    assert too_few == "too few pairs to test ACE (n = 1)"


def test_plot_comparison(tmp_path, demo_models):
    from matplotlib.figure import Figure

    from calibviz.viz import save_figure
    from calibviz.viz.comparison import PairedDifferencesDisplay, plot_comparison

    cases, calibrated, overconfident = demo_models
    result = compare_runs(RunValues.from_stats("overconfident", cases, overconfident),
                          RunValues.from_stats("calibrated", cases, calibrated),
                          n_bootstrap=200)
    figure = plot_comparison(result, metrics=["ece", "ace", "mce", "dice"])
    assert isinstance(figure, Figure)
    titles = [ax.get_title() for ax in figure.axes]
    assert "ACE: model − baseline\nmean: lower, p < 0.001" in titles
    assert any(t.startswith("overconfident") for t in titles)  # histogram panels
    assert any(t.startswith("calibrated") for t in titles)
    path = save_figure(figure, tmp_path / "comparison.png")
    assert path.stat().st_size > 10_000
    table_only = plot_comparison(result.table, histograms=True)
    assert not any(t.startswith("calibrated") for t in [a.get_title() for a in table_only.axes])
    display = PairedDifferencesDisplay(result.differences("calibrated", "ace")).plot()
    assert len(display.points_) == len(CLASSES) + 1
    assert display.zero_line_.get_ydata()[0] == 0


def test_pooled_curve_band_equals_a_resampling_loop_and_holds_the_curve():
    from calibviz.bootstrap import pooled_frequency_band

    rng = np.random.default_rng(5)
    images = [bin_image(rng.dirichlet([1, 1, 1], size=200).T.astype(np.float32),
                        rng.integers(0, 3, size=200), n_bins=5) for _ in range(12)]
    low, high = pooled_frequency_band(images, 300, seed=2)
    # the same draws by hand: uniforms per resample, floor(u·n)
    draws = np.random.default_rng(2).random((300, 12))
    picked = np.minimum((draws * 12).astype(int), 11)
    samples = []
    for row in picked:
        total = sum(images[i] for i in row)
        samples.append(np.vstack([total.frequency, total.sum_classes().frequency]))
    samples = np.array(samples)
    np.testing.assert_allclose(low, np.nanpercentile(samples, 2.5, axis=0), rtol=1e-12)
    np.testing.assert_allclose(high, np.nanpercentile(samples, 97.5, axis=0), rtol=1e-12)
    curve = pool(images).frequency
    inside = np.isfinite(curve)
    assert np.all((low[:-1][inside] <= curve[inside] + 1e-12)
                  & (curve[inside] <= high[:-1][inside] + 1e-12))


# ------------------------------------------------ settings checked before any resample
def _few_images(n_bins=5, n_images=4):
    rng = np.random.default_rng(1)
    return [bin_image(rng.dirichlet([1, 1, 1], size=50).T.astype(np.float32),
                      rng.integers(0, 3, size=50), n_bins=n_bins) for _ in range(n_images)]


@pytest.mark.parametrize(("settings", "name"), [
    ({"seed": -1}, "seed"), ({"seed": 2**64}, "seed"), ({"seed": 1.5}, "seed"),
    ({"n_bootstrap": 10**8}, "n_bootstrap"), ({"n_bootstrap": -1}, "n_bootstrap"),
    ({"n_bootstrap": float("nan")}, "n_bootstrap"), ({"confidence": 1.0}, "confidence"),
])
def test_every_bootstrap_entry_point_names_a_bad_setting(settings, name):
    from calibviz.bootstrap import (
        bootstrap_samples,
        macro_mean_interval,
        micro_interval,
        pooled_frequency_band,
        resample_weights,
    )

    images = _few_images()
    values = np.arange(8.0).reshape(4, 2)
    resampling = {k: v for k, v in settings.items() if k != "confidence"}
    calls = [lambda: macro_mean_interval(values, **{"n_bootstrap": 10, **settings}),
             lambda: micro_interval(images, **{"n_bootstrap": 10, **settings}),
             lambda: pooled_frequency_band(images, **{"n_bootstrap": 10, **settings})]
    if resampling:
        calls += [lambda: bootstrap_samples(**{"n_bootstrap": 10, **resampling},
                                            values=values),
                  lambda: next(resample_weights(4, **{"n_bootstrap": 10, **resampling}))]
    for call in calls:
        with pytest.raises(ValueError, match=name):
            call()


def test_compare_runs_checks_its_settings_before_reading(tmp_path):
    for settings, name in (({"seed": -1}, "seed"), ({"n_bootstrap": 10**8}, "n_bootstrap")):
        with pytest.raises(ValueError, match=name):
            compare_runs(tmp_path / "missing_a", tmp_path / "missing_b", **settings)


def test_resamples_that_would_not_fit_in_memory_are_refused_up_front(tmp_path):
    """Percentiles keep every resample: a band whose resamples outgrow the budget is
    refused before anything is drawn, naming the count and the memory."""
    from calibviz import Results
    from calibviz.bootstrap import SAMPLES_BYTES, check_band, pooled_frequency_band
    from calibviz.viz import render_figures

    images = _few_images(n_bins=2000)
    n = SAMPLES_BYTES // (8 * 4 * 2000) + 1  # 3 classes and all pooled, 2000 bins
    with pytest.raises(ValueError, match="GiB"):
        check_band(n, 3, 2000)
    with pytest.raises(ValueError, match=str(n)):
        pooled_frequency_band(images, n)
    results = Results(tuple(f"c{i}" for i in range(4)), tuple(images), {})
    with pytest.raises(ValueError, match="at most 500 bins"):  # its bins are refused first
        render_figures(results, tmp_path / "fig", kind="dataset", band=n)
    assert not (tmp_path / "fig").exists()
    check_band(n - 1, 3, 2000)  # just fits


def test_band_of_no_resamples_is_nan():
    from calibviz.bootstrap import pooled_frequency_band

    low, high = pooled_frequency_band(_few_images(), 0)
    assert low.shape == (4, 5) and np.isnan(low).all() and np.isnan(high).all()


@pytest.mark.parametrize("value", ["abc", "0.1.2", "[1]"])
def test_non_numbers_in_result_tables_name_file_column_and_line(tmp_path, demo_models, value):
    cases, calibrated, _ = demo_models
    folder = write_per_image_csv(tmp_path / "csv_only", cases, calibrated)
    table = pd.read_csv(folder / "per_image.csv")
    table["ace"] = table["ace"].astype(object)
    table.loc[3, "ace"] = value
    table.to_csv(folder / "per_image.csv", index=False)
    with pytest.raises(ValueError) as caught:
        load_run(folder)
    assert str(caught.value) == (f"{folder / 'per_image.csv'}: column 'ace' holds {value!r} "
                                 "on line 5; expected a number")
    values = RunValues.from_stats("x", cases, calibrated).values
    ref = write_reference(tmp_path / "ref", "macro_ace_raw.csv", cases, values["ace"][:, :-1],
                          list(CLASSES))
    path = ref / "macro_ace_raw.csv"
    lines = path.read_text().splitlines()
    cells = lines[2].split(",")
    cells[1] = value.replace(",", ";")
    lines[2] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=rf"macro_ace_raw.csv: column '{CLASSES[0]}' holds .* "
                                         r"on line 3; expected a number"):
        load_run(ref)


# --------------------------------------------------------------------------- honest intervals
def lonely_bin_images(n_images=10, seed=22):
    """Images whose bulk sits in bin 0 (gap 0.275) and whose 40 other voxels fill a bin no
    other image fills, with gap 0: every resample that misses an image loses a zero-gap bin,
    so the micro ACE of nearly every resample is above the observed one."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_images):
        fg = np.full(400, 0.025)
        labels = (rng.random(400) < 0.3).astype(np.uint8)
        k = i + 1
        fg[:40] = (2 * k + 1) / 40
        labels[:40] = 0
        labels[:2 * k + 1] = 1
        out.append(bin_image(np.stack([1 - fg, fg]), labels, n_bins=20,
                             class_names=["bg", "fg"]).select(["fg"]))
    return out


def hand_micro_interval(images, metric, n_bootstrap, seed):
    """Percentile interval of the micro metric of resampled image lists (a plain loop)."""
    rng = np.random.default_rng(seed)
    n = len(images)
    samples = []
    for _ in range(n_bootstrap):
        drawn = (rng.random(n) * n).astype(np.int64)
        samples.append(micro_metrics([images[i] for i in drawn])[metric])
    return np.percentile(np.array(samples), [2.5, 97.5], axis=0)


def test_micro_interval_that_misses_its_value_is_discarded():
    images = lonely_bin_images()
    value = micro_metrics(images)
    got = micro_interval(images, ("ace", "ece"), 300, seed=1)
    for metric in ("ace", "ece"):
        raw = hand_micro_interval(images, metric, 300, seed=1)
        low, high, gone = hand_honest(value[metric], raw[0], raw[1], [len(images)])
        np.testing.assert_allclose(got[metric][0], low, rtol=1e-10)
        np.testing.assert_allclose(got[metric][1], high, rtol=1e-10)
        assert gone[0] == (metric == "ace")  # the construction's point: ACE is missed


def test_summary_notes_name_each_discarded_interval():
    from calibviz import Results
    from calibviz.report import summary_notes

    images = lonely_bin_images()
    results = Results([f"c{i}" for i in range(10)], images, {})
    table, notes = summary_notes(results, n_bootstrap=300, seed=1)
    row = table[(table.metric == "ace") & (table["class"] == "fg")].iloc[0]
    assert math.isnan(row["micro_ci_low"]) and math.isnan(row["micro_ci_high"])
    raw = hand_micro_interval(images, "ace", 300, seed=1)
    note = next(n for n in notes if "micro ace of fg" in n)
    assert f"[{raw[0][0]:.4g}, {raw[1][0]:.4g}]" in note and f"{row['micro']:.4g}" in note
    assert "does not resample this statistic well" in note
    for column, value in (("ci", "mean"), ("micro_ci", "micro")):  # the rule, every row
        low, high = table[f"{column}_low"], table[f"{column}_high"]
        shown = low.notna()
        assert ((low[shown] <= table.loc[shown, value])
                & (table.loc[shown, value] <= high[shown])).all()


def test_one_image_has_no_interval():
    from calibviz import Results
    from calibviz.report import summary_table

    images = random_images(1, 3, seed=5)
    table = summary_table(Results(["c0"], images, {}), n_bootstrap=200)
    for column in ("ci_low", "ci_high", "micro_ci_low", "micro_ci_high"):
        assert table[column].isna().all(), column
    low, high = macro_mean_interval(np.array([[0.1, np.nan], [np.nan, np.nan]]), 100)
    assert np.isnan(low).all() and np.isnan(high).all()
    assert all(np.isnan(v).all() for pair in micro_interval(images, ("ece",), 100).values()
               for v in pair)


def test_compare_of_one_pair_blanks_intervals_and_says_so(demo_models):
    cases, calibrated, overconfident = demo_models
    result = compare_runs(RunValues.from_stats("a", cases, overconfident),
                          RunValues.from_stats("b", cases[:1], calibrated[:1]),
                          n_bootstrap=200)
    for table in (result.table, result.micro):
        assert table["ci_low"].isna().all() and table["ci_high"].isna().all()
        assert (table["ci_note"] == "fewer than 2 images").all()
    assert any("only 1 paired image" in n for n in result.notes)
    two = compare_runs(RunValues.from_stats("a", cases, overconfident),
                       RunValues.from_stats("b", cases[:2], calibrated[:2]), n_bootstrap=200)
    assert any("only 2 paired image" in n for n in two.notes)
    full = compare_runs(RunValues.from_stats("a", cases, overconfident),
                        RunValues.from_stats("b", cases, calibrated), n_bootstrap=200)
    assert not any("paired image" in n for n in full.notes)


@pytest.mark.parametrize("n_bootstrap", [1, 2, 3])
def test_compare_with_few_resamples_keeps_only_intervals_holding_the_estimate(
        demo_models, n_bootstrap):
    cases, calibrated, overconfident = demo_models
    result = compare_runs(RunValues.from_stats("over", cases, overconfident),
                          RunValues.from_stats("cal", cases, calibrated),
                          n_bootstrap=n_bootstrap, seed=4)
    table = result.table
    n_metrics = table["metric"].nunique()
    differences = np.concatenate([result.differences("cal", m).to_numpy()
                                  for m in pd.unique(table["metric"])], axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        hand = np.percentile(hand_bootstrap_means(differences, n_bootstrap, 4), [2.5, 97.5],
                             axis=0)
    low, high, gone = hand_honest(table["mean_diff"].to_numpy(), hand[0], hand[1],
                                  table["n"].to_numpy())
    np.testing.assert_allclose(table["ci_low"], low, rtol=1e-10)
    np.testing.assert_allclose(table["ci_high"], high, rtol=1e-10)
    assert gone.any() and len(table) == n_metrics * (len(CLASSES) + 1)
    assert table.loc[gone, "ci_note"].str.startswith("discarded").all()
    assert sum("does not contain the estimate" in n for n in result.notes) >= gone.sum()
    micro = result.micro
    shown = micro["ci_low"].notna()
    assert ((micro.loc[shown, "ci_low"] <= micro.loc[shown, "micro_diff"])
            & (micro.loc[shown, "micro_diff"] <= micro.loc[shown, "ci_high"])).all()
    from calibviz.viz.comparison import plot_comparison

    plot_comparison(result)  # intervals not holding the mean were a matplotlib error


def test_figure_draws_intervals_that_miss_the_mean_as_absent():
    from calibviz.viz.comparison import PairedDifferencesDisplay

    differences = pd.DataFrame({"a": [0.1, 0.3], "b": [0.2, 0.2], "mean": [0.1, 0.2]})
    display = PairedDifferencesDisplay(differences, mean_diff=[0.2, 0.2, 0.15],
                                       ci_low=[0.25, np.nan, 0.1], ci_high=[0.3, np.nan, 0.2],
                                       metric="ece").plot()
    drawn_x = display.means_.lines[0].get_xdata()
    assert list(drawn_x) == [2.0]  # only the interval holding its mean
    assert list(display.bare_means_.get_xdata()) == [0.0, 1.0]


# --------------------------------------------------------------------------- conventions, A3
def _csv_run(folder: Path, cases, stats, options=None, classes=None) -> Path:
    """A results folder with per_image.csv and (with ``options``) run.json only."""
    import json

    write_per_image_csv(folder, cases, stats)
    if options is not None:
        names = list(classes or stats[0].class_names)
        (folder / "run.json").write_text(json.dumps({"options": options, "classes": names}))
    return folder


def _coarse(cases, n_bins=5, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in cases:
        q = reference_field((6, 6, 4), rng)
        out.append(bin_image(q, sample_labels(q, rng), n_bins=n_bins, class_names=CLASSES))
    return out


def test_per_image_csv_runs_are_checked_with_their_run_json(tmp_path, demo_models):
    cases, calibrated, overconfident = demo_models
    recorded = {"n_bins": 10, "closure": "right", "binning": "hard", "empty_weight": 0.01,
                "absent": "include"}
    run = write_run(tmp_path / "run", cases, calibrated, options={"absent": "include"})
    coarse = _csv_run(tmp_path / "coarse", cases, _coarse(cases), {**recorded, "n_bins": 5})
    with pytest.raises(ValueError, match=r"bin conventions between .*run.*coarse.*bins 10 vs 5"):
        compare(run, coarse)
    exclude = _csv_run(tmp_path / "excl", cases, overconfident, {**recorded,
                                                                 "absent": "exclude"})
    with pytest.raises(ValueError, match=r"absent policy 'include' vs 'exclude'"):
        compare(run, exclude)
    left = _csv_run(tmp_path / "left", cases, overconfident, {**recorded, "closure": "left"})
    with pytest.raises(ValueError, match=r"closure 'right' vs 'left'"):
        compare(left.parent / "excl", left)  # two CSV-only folders
    with pytest.raises(ValueError, match=r"absent policy 'exclude'.*needs the run's stats.npz"):
        compare(run, exclude, absent="include")
    wrong = _csv_run(tmp_path / "wrong", cases, overconfident, recorded,
                     classes=["a", "b", "c", "d"])
    with pytest.raises(ValueError, match=r"run.json lists the classes .*'a'.*per_image.csv"):
        compare(run, wrong)
    same = _csv_run(tmp_path / "same", cases, overconfident, recorded)
    result = compare_runs(run, same, n_bootstrap=20)
    assert not any("records no bin conventions" in n for n in result.notes)
    assert result.runs[1].absent == "include"


def test_unrecorded_conventions_are_compared_with_a_note(tmp_path, demo_models):
    cases, calibrated, overconfident = demo_models
    run = write_run(tmp_path / "run", cases, calibrated)
    bare = _csv_run(tmp_path / "bare", cases, _coarse(cases))  # no run.json
    result = compare_runs(run, bare, n_bootstrap=20)
    assert len(result.table) and len(result.notes) >= 1
    assert any(n.startswith(f"{bare}: no stats.npz or run.json records no bin conventions")
               for n in result.notes)


# --------------------------------------------------------------------------- Results, D15
def test_compare_accepts_results_objects(tmp_path, demo_models):
    from calibviz import Results

    cases, calibrated, overconfident = demo_models
    over = Results(cases, overconfident, {"absent": "include", "pred_dir": "/x/over"})
    cal = Results(cases, calibrated, {"absent": "include", "pred_dir": "/y/cal"})
    a = write_run(tmp_path / "over", cases, overconfident, {"absent": "include"})
    b = write_run(tmp_path / "cal", cases, calibrated, {"absent": "include"})
    got = compare(over, cal, n_bootstrap=50)
    pd.testing.assert_frame_equal(got, compare(a, b, n_bootstrap=50))
    assert set(got["model"]) == {"cal"} and set(got["baseline"]) == {"over"}
    with pytest.raises(TypeError, match=r"expected a results folder \(path\), a "
                                        r"calibviz.Results or a RunValues; got list"):
        compare(over, [cal])
