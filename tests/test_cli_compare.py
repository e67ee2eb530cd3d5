"""``calibviz compare`` end to end: the demo's two simulated models of known calibration,
a model against itself, and bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from calibviz.cli import app
from calibviz.demo import write_demo_dataset
from calibviz.options import EvalOptions
from calibviz.run import run_evaluation

runner = CliRunner()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The over-confident and the calibrated demo model evaluated on 20 images."""
    root = tmp_path_factory.mktemp("compare")
    data = write_demo_dataset(root / "d", n_cases=20, shape=(14, 12, 8))
    over = run_evaluation(data.nnunet, data.labels, root / "over", EvalOptions(), workers=1,
                          figures=False, n_bootstrap=0).out_dir
    calibrated = run_evaluation(
        data.monai, data.labels, root / "cal",
        EvalOptions(postfix="prob", classes="background=0,liver=1,tumour=2,vessel=3"),
        workers=1, figures=False, n_bootstrap=0).out_dir
    return over, calibrated


def test_the_calibrated_model_is_found_better(runs, tmp_path):
    over, calibrated = runs
    out = tmp_path / "cmp"
    result = runner.invoke(app, ["compare", str(over), str(calibrated), "--names",
                                 "over,cal", "--out", str(out), "--bootstrap", "2000"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "comparison.csv")
    ace = table[(table.metric == "ace") & (table["class"] == "mean")].iloc[0]
    assert ace["model"] == "cal" and ace["baseline"] == "over" and ace["n"] == 20
    assert ace["mean_diff"] < 0 and ace["ci_high"] < 0
    assert ace["wilcoxon_p_holm"] < 0.01
    assert "cal: lower ACE" in result.output
    assert (out / "comparison.png").exists() and (out / "comparison_micro.csv").exists()


def test_a_model_against_itself_shows_no_difference(runs, tmp_path):
    over, _ = runs
    result = runner.invoke(app, ["compare", str(over), str(over), "--out", str(tmp_path),
                                 "--bootstrap", "500", "--no-figures", "--quiet"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == ""
    table = pd.read_csv(tmp_path / "comparison.csv")
    for column in ("wilcoxon_p", "ttest_p"):
        values = table[column].to_numpy()
        assert np.all(np.isnan(values) | (values == 1))
    assert (table["ci_low"] <= 0).all() and (table["ci_high"] >= 0).all()


@pytest.mark.parametrize("fault", ["one folder", "not results", "no common case",
                                   "other classes"])
def test_bad_input_is_one_line_and_exit_2(runs, tmp_path, fault):
    over, calibrated = runs
    args = {
        "one folder": [over],
        "not results": [over, tmp_path],
        "no common case": [over, _reference_folder(tmp_path, ["x1", "x2", "x3"],
                                                   ["liver", "tumour", "vessel"])],
        "other classes": [over, _reference_folder(tmp_path, ["liver_000"], ["kidney"])],
    }[fault]
    result = runner.invoke(app, ["compare", *map(str, args)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1


def _reference_folder(root, cases, classes):
    folder = root / "reference"
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for stem in ("macro_ace", "macro_ece", "macro_mce", "mean_dice"):
        values = rng.random((len(cases), len(classes)))
        table = pd.DataFrame(values, columns=classes)
        table.insert(0, "filename", [f"{c}.nii.gz" for c in cases])
        table["mean"] = values.mean(axis=1)
        table.to_csv(folder / f"{stem}_raw.csv", index=False)
    return folder


@pytest.mark.parametrize("n_bootstrap", ["1", "2", "3"])
def test_few_resamples_draw_the_figure_and_keep_honest_intervals(runs, tmp_path, n_bootstrap):
    over, calibrated = runs
    out = tmp_path / "cmp"
    result = runner.invoke(app, ["compare", str(over), str(calibrated), "--out", str(out),
                                 "--bootstrap", n_bootstrap])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and (out / "comparison.png").exists()
    table = pd.read_csv(out / "comparison.csv")
    shown = table["ci_low"].notna()
    assert ((table.loc[shown, "ci_low"] <= table.loc[shown, "mean_diff"])
            & (table.loc[shown, "mean_diff"] <= table.loc[shown, "ci_high"])).all()
    gone = table["ci_note"].fillna("").str.startswith("discarded")
    assert table.loc[gone, "ci_low"].isna().all()
    if gone.any():
        notes = (out / "comparison_notes.txt").read_text()
        assert notes.count("does not contain the estimate") >= gone.sum()
        assert "note:" in result.output


def test_one_paired_case_has_no_interval_and_says_so(runs, tmp_path):
    import shutil

    from calibviz import Results, load_results, save_results

    over, calibrated = runs
    results = load_results(calibrated)
    one = tmp_path / "one"
    one.mkdir()
    save_results(one / "stats.npz", Results(results.cases[:1], results.stats[:1],
                                            results.options))
    shutil.copy(calibrated / "run.json", one / "run.json")
    out = tmp_path / "cmp"
    result = runner.invoke(app, ["compare", str(over), str(one), "--out", str(out),
                                 "--bootstrap", "200", "--no-figures"],
                           env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "comparison.csv")
    assert table["ci_low"].isna().all() and (table["ci_note"] == "fewer than 2 images").all()
    assert "(no interval)" in result.output and "only 1 paired image" in result.output, \
        result.output


def test_per_image_csv_folder_of_other_bins_is_refused(runs, tmp_path):
    import json
    import shutil

    over, calibrated = runs
    csv_only = tmp_path / "csv_only"
    csv_only.mkdir()
    shutil.copy(calibrated / "per_image.csv", csv_only)
    run_json = json.loads((calibrated / "run.json").read_text())
    run_json["options"]["n_bins"] = 10
    (csv_only / "run.json").write_text(json.dumps(run_json))
    result = runner.invoke(app, ["compare", str(over), str(csv_only)])
    assert result.exit_code == 2, result.output
    assert "bins 20 vs 10" in result.output and "Traceback" not in result.output
    (csv_only / "run.json").unlink()
    result = runner.invoke(app, ["compare", str(over), str(csv_only), "--bootstrap", "10"],
                           env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "records no bin conventions" in result.output
