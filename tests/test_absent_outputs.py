"""One run, every output, one absent-class rule (A1, A2): per_image.csv, summary.csv,
summary.json, the loaded Results' aggregates, the HTML headline and ``compare``'s run values
all equal a naive float64 computation from the voxels under the run's ``--absent`` policy."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import calibviz
from calibviz.cli import app
from calibviz.synthetic import make_case, write_label, write_nifti

from . import naive

N_BINS = 20
CLASSES = ("label1", "label2")
METRICS = ("ece", "ace", "mce", "dce", "brier", "dice")


def _nanmean(values, axis=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(np.asarray(values, dtype=float), axis=axis)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """4 cases, classes 1 and 2 scored: c1 lacks class 2 in its truth but predicts it
    (include: Dice 0), c2 lacks it in truth and prediction (include: Dice NaN)."""
    root = tmp_path_factory.mktemp("absent")
    cases = {}
    for i in range(4):
        labels, probs = make_case((12, 10, 6), 3, seed=700 + i)
        if i in (1, 2):
            labels[labels == 2] = 0
        if i == 2:
            probs[2] *= 0.01
            probs /= probs.sum(axis=0)
        probs = probs.astype(np.float32)
        write_label(root / "lab" / f"c{i}.nii.gz", labels)
        write_nifti(root / "pred" / f"c{i}.nii.gz", np.moveaxis(probs, 0, -1))
        cases[f"c{i}"] = (probs, labels)
    assert (np.argmax(cases["c1"][0], axis=0) == 2).any()
    assert not (np.argmax(cases["c2"][0], axis=0) == 2).any()
    return root, cases


def _naive_pairs(cases):
    """Per case: the naive per-bin sums of classes 1, 2 and their argmax confusion counts."""
    out = {}
    for case, (probs, labels) in cases.items():
        sums = naive.naive_bin(probs[1:], labels, n_bins=N_BINS, classes=[1, 2])
        seg = np.argmax(probs, axis=0)
        for c, value in enumerate((1, 2)):
            pred, truth = seg == value, labels == value
            sums["tp"][c], sums["fp"][c] = (pred & truth).sum(), (pred & ~truth).sum()
            sums["fn"][c] = (~pred & truth).sum()
        out[case] = sums
    return out


def _metrics(sums) -> dict:
    values = naive.naive_errors(sums)
    values["dce"] = naive.naive_debiased_ce(sums["count"], sums["sum_p"], sums["sum_y"])
    tp, fp, fn = (np.asarray(sums[k], float) for k in ("tp", "fp", "fn"))
    with np.errstate(invalid="ignore", divide="ignore"):
        values["dice"] = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
    return values


def naive_run(cases, policy):
    """``(per_image {metric: [n, C]}, micro {metric: [C]}, kept bool [n, C])`` by hand."""
    pairs = _naive_pairs(cases)
    absent = np.array([[not (labels == v).any() for v in (1, 2)]
                       for _, labels in cases.values()])
    kept = {"include": np.ones_like(absent), "exclude": ~absent,
            "drop-case": np.repeat(~absent.any(axis=1, keepdims=True), 2, axis=1)}[policy]
    per = {m: np.full(absent.shape, np.nan) for m in METRICS}
    pooled = {k: np.zeros_like(v, dtype=float) for k, v in next(iter(pairs.values())).items()}
    for i, sums in enumerate(pairs.values()):
        values = _metrics(sums)
        for c in range(2):
            if not kept[i, c]:
                continue
            for m in METRICS:
                per[m][i, c] = values[m][c]
            for k in pooled:
                pooled[k][c] += np.asarray(sums[k], float)[c]
    return per, _metrics(pooled), kept


def evaluate(folder, policy):
    root, _ = folder
    out = root / f"run_{policy}"
    if not out.exists():
        result = CliRunner().invoke(app, [
            "evaluate", str(root / "pred"), str(root / "lab"), "--out", str(out),
            "--absent", policy, "--no-figures", "--bootstrap", "0", "--workers", "1",
            "--quiet"])
        assert result.exit_code == 0, result.output
    return out


POLICIES = ["include", "exclude", "drop-case"]


@pytest.mark.parametrize("policy", POLICIES)
def test_csvs_equal_the_naive_computation(folder, policy):
    per, micro, kept = naive_run(folder[1], policy)
    out = evaluate(folder, policy)
    table = pd.read_csv(out / "per_image.csv")
    for m in METRICS:
        got = table[m].to_numpy().reshape(4, 2)
        np.testing.assert_allclose(got, per[m], rtol=1e-9, atol=1e-12, err_msg=m)
        assert np.array_equal(np.isnan(got), np.isnan(per[m])), m
    summary = pd.read_csv(out / "summary.csv").set_index(["metric", "class"])
    for m in METRICS:
        for c, name in enumerate(CLASSES):
            row = summary.loc[(m, name)]
            np.testing.assert_allclose(row["mean"], _nanmean(per[m][:, c]), rtol=1e-9)
            assert row["notnans"] == np.isfinite(per[m][:, c]).sum()
            np.testing.assert_allclose(row["micro"], micro[m][c], rtol=1e-9, err_msg=m)
        row = summary.loc[(m, "mean")]
        np.testing.assert_allclose(row["mean"], _nanmean(_nanmean(per[m], axis=1)), rtol=1e-9)
        np.testing.assert_allclose(row["micro"], _nanmean(micro[m]), rtol=1e-9)
    if policy != "include":  # the policy changes the numbers: this test can fail
        include, _, _ = naive_run(folder[1], "include")
        assert not np.array_equal(include["dice"], per["dice"], equal_nan=True)


@pytest.mark.parametrize("policy", POLICIES)
def test_loaded_results_aggregate_like_the_csvs(folder, policy):
    out = evaluate(folder, policy)
    results = calibviz.load_results(out)
    assert results.options["absent"] == policy
    table = pd.read_csv(out / "per_image.csv")
    summary = pd.read_csv(out / "summary.csv").set_index(["metric", "class"])
    per_image = calibviz.per_image_metrics(results)
    micro = calibviz.micro_metrics(results)
    macro = calibviz.macro_summary(results)
    for m in METRICS:
        np.testing.assert_allclose(per_image[m], table[m].to_numpy().reshape(4, 2),
                                   rtol=1e-9, atol=1e-12)
        for c, name in enumerate((*CLASSES, "mean")):
            np.testing.assert_allclose(macro[m]["mean"][c], summary.loc[(m, name), "mean"],
                                       rtol=1e-9)
            if name != "mean":
                np.testing.assert_allclose(micro[m][c], summary.loc[(m, name), "micro"],
                                           rtol=1e-9)
    pd.testing.assert_frame_equal(results.per_image.reset_index(drop=True),
                                  table.reset_index(drop=True), check_dtype=False, rtol=1e-9)
    _, _, kept = naive_run(folder[1], policy)
    histogram = calibviz.reliability_histogram(results)
    assert histogram.n_images == int(kept.any(axis=1).sum())
    assert histogram.counts.sum(axis=(1, 2)).tolist() == [
        int(sum((s.nonempty[c]).sum() for s, k in zip(results.stats, kept[:, c]) if k))
        for c in range(2)]


@pytest.mark.parametrize("policy", POLICIES)
def test_summary_json_follows_the_policy_and_nnunets_means(folder, policy):
    per, _, kept = naive_run(folder[1], policy)
    out = evaluate(folder, policy)
    summary = json.loads((out / "summary.json").read_text())
    keys = ("1", "2")
    names = {"dice": "Dice", "ece": "ECE", "ace": "ACE", "mce": "MCE", "brier": "Brier"}
    for i, entry in enumerate(summary["metric_per_case"]):
        for c, key in enumerate(keys):
            got = entry["metrics"][key]
            for ours, theirs in names.items():
                np.testing.assert_allclose(got[theirs], per[ours][i, c], rtol=1e-9,
                                           err_msg=f"{policy} {theirs} case {i} label {key}")
            assert np.isnan(got["IoU"]) == np.isnan(per["dice"][i, c])
            if not kept[i, c]:  # a left-out pair is NaN for every entry
                assert all(np.isnan(v) for v in got.values()), got
    # nnU-Net: per label nanmean over cases; foreground mean np.mean over labels (NaN stays)
    for key in keys:
        for name, value in summary["mean"][key].items():
            column = [e["metrics"][key][name] for e in summary["metric_per_case"]]
            np.testing.assert_allclose(value, _nanmean(column), rtol=1e-12)
    for name, value in summary["foreground_mean"].items():
        np.testing.assert_allclose(value, np.mean([summary["mean"][k][name] for k in keys]),
                                   rtol=1e-12)
    for c, key in enumerate(keys):
        np.testing.assert_allclose(summary["mean"][key]["Dice"], _nanmean(per["dice"][:, c]),
                                   rtol=1e-9)


@pytest.mark.parametrize("policy", POLICIES)
def test_report_headline_and_run_values_agree(folder, policy):
    from calibviz.html.context import headline, number
    from calibviz.run_values import load_run

    per, micro, _ = naive_run(folder[1], policy)
    out = evaluate(folder, policy)
    results = calibviz.load_results(out)
    table = headline(out, results, n_bootstrap=0, seed=0, confidence=0.95)
    column = [m["key"] for m in table["metrics"]].index("dice")
    for c, row in enumerate(table["rows"]):
        cell = row["cells"][column]
        mean = _nanmean(per["dice"][:, c]) if c < 2 else _nanmean(_nanmean(per["dice"], 1))
        assert cell["mean"] == number(mean)
        assert cell["micro"] == number(micro["dice"][c] if c < 2 else _nanmean(micro["dice"]))
    run = load_run(out)
    assert run.absent == policy
    for m in METRICS:
        expected = np.column_stack([per[m], _nanmean(per[m], axis=1)])
        np.testing.assert_allclose(run.values[m], expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("policy", POLICIES)
def test_report_states_dices_rule_under_the_policy(folder, policy):
    from calibviz.html.context import provenance

    out = evaluate(folder, policy)
    results = calibviz.load_results(out)
    facts = dict(provenance(out, results, {}, [], title=None, version="x")["facts"])
    assert facts["Absent classes"] == policy
    assert ("0 with false positives on empty truth" in facts["Dice rule"]) == (policy == "include")
    if policy != "include":
        assert f"--absent {policy}" in facts["Dice rule"]


@pytest.mark.parametrize("policy", POLICIES)
def test_compare_uses_the_same_rule(folder, policy):
    from calibviz.comparison import compare_runs

    per, micro, _ = naive_run(folder[1], policy)
    out = evaluate(folder, policy)
    comparison = compare_runs(out, out, names=["a", "b"], n_bootstrap=0)
    for m in METRICS:
        rows = comparison.micro[comparison.micro["metric"] == m].set_index("class")
        for c, name in enumerate(CLASSES):
            np.testing.assert_allclose(rows.loc[name, "micro_baseline"], micro[m][c],
                                       rtol=1e-9, err_msg=m)
        table = comparison.table[comparison.table["metric"] == m].set_index("class")
        for c, name in enumerate(CLASSES):
            np.testing.assert_allclose(table.loc[name, "mean_baseline"],
                                       _nanmean(per[m][:, c]), rtol=1e-9, err_msg=m)
            assert table.loc[name, "n"] == np.isfinite(per[m][:, c]).sum()
