"""Report tables: per-image rows, summaries equal the aggregate functions, problems."""

from __future__ import annotations

import numpy as np
import pandas as pd

from calibviz import Results, macro_summary, micro_metrics, per_image_metrics
from calibviz.io import Problem
from calibviz.report import (
    CLASS_MEAN,
    per_image_table,
    problems_table,
    reference_tables,
    summary_table,
    write_reports,
)

from .conftest import random_images


def _results(absent="include"):
    images = random_images(n_images=4)
    return Results(tuple(f"case{i}" for i in range(4)), images, {"absent": absent})


def test_per_image_rows_equal_the_metric_functions():
    results = _results()
    table = per_image_table(results)
    assert len(table) == 4 * 3
    expected = per_image_metrics(results.stats)
    for metric, values in expected.items():
        np.testing.assert_array_equal(table[metric].to_numpy().reshape(4, 3), values)
    assert table["n_truth"].tolist() == [int(v) for s in results.stats for v in s.n_truth]


def test_summary_intervals_bracket_the_values_and_equal_the_bootstrap_module():
    from calibviz.aggregate import with_class_mean
    from calibviz.bootstrap import macro_mean_interval, micro_interval

    results = _results()
    table = summary_table(results, n_bootstrap=500, seed=3).set_index(["metric", "class"])
    per_image = per_image_metrics(results.stats)
    low, high = macro_mean_interval(with_class_mean(per_image["ace"]), 500, 3)
    micro_low, micro_high = micro_interval(results.stats, ("ace",), 500, 3)["ace"]
    for c, name in enumerate(results.class_names):
        row = table.loc[("ace", name)]
        assert row["ci_low"] == low[c] and row["ci_high"] == high[c]
        assert row["micro_ci_low"] == micro_low[c] and row["micro_ci_high"] == micro_high[c]
        assert row["ci_low"] <= row["mean"] <= row["ci_high"]
        assert row["micro_ci_low"] <= row["micro"] <= row["micro_ci_high"]
    assert np.isnan(summary_table(results)["ci_low"]).all()  # no resamples, no intervals


def test_summary_rows_equal_macro_summary_and_micro_metrics():
    results = _results()
    table = summary_table(results).set_index(["metric", "class"])
    macro = macro_summary(results.stats)
    micro = micro_metrics(results.stats)
    for metric in macro:
        for c, name in enumerate([*results.class_names, CLASS_MEAN]):
            row = table.loc[(metric, name)]
            np.testing.assert_allclose(row["mean"], macro[metric]["mean"][c])
            np.testing.assert_allclose(row["p90"], macro[metric]["p90"][c])
            if name != CLASS_MEAN:
                np.testing.assert_allclose(row["micro"], micro[metric][c])


def test_exclude_policy_reaches_the_tables():
    results = _results("exclude")
    table = per_image_table(results, absent="exclude")
    absent = table["absent"].to_numpy()
    assert absent.any() and np.isnan(table.loc[absent, "ace"]).all()


def test_problems_table_has_fixed_columns_even_when_empty():
    assert list(problems_table([]).columns) == ["case", "file", "severity", "message"]
    table = problems_table([Problem("a", "f", "m", "warning")])
    assert table.iloc[0].tolist() == ["a", "f", "warning", "m"]


def test_reference_tables_mean_column_is_the_class_mean():
    results = _results()
    tables = reference_tables(results)
    assert any(name.endswith("_raw.csv") for name in tables)
    raw, header = tables["macro_ace_raw.csv"]
    assert header and tables["metrics.csv"][1] is False
    values = raw.drop(columns=["filename", "mean"]).to_numpy()
    np.testing.assert_allclose(raw["mean"], np.nanmean(values, axis=1))


def test_evaluate_records_discarded_summary_intervals_as_warnings(tmp_path):
    """A run whose micro ACE interval misses the micro ACE (each image fills a bin alone):
    summary.csv leaves it blank, problems.csv and run.json carry one warning naming it."""
    import json

    import pandas as pd

    from calibviz.options import EvalOptions
    from calibviz.run import run_evaluation
    from calibviz.synthetic import write_label, write_nifti

    rng = np.random.default_rng(22)
    for i in range(10):
        fg = np.full(8 * 8 * 8, 0.025, np.float32)
        labels = (rng.random(fg.size) < 0.3).astype(np.uint8)
        fg[:40] = (2 * i + 3) / 40  # bin i + 1 of 20, gap 0, in this image only
        labels[:40] = 0
        labels[:2 * i + 3] = 1
        write_label(tmp_path / "lab" / f"c{i}.nii.gz", labels.reshape(8, 8, 8))
        write_nifti(tmp_path / "pred" / f"c{i}.nii.gz",
                    np.stack([1 - fg, fg], axis=-1).reshape(8, 8, 8, 2))
    out = run_evaluation(tmp_path / "pred", tmp_path / "lab", tmp_path / "run", EvalOptions(),
                         workers=1, figures=False, n_bootstrap=300).out_dir
    summary = pd.read_csv(out / "summary.csv")
    ace = summary[(summary.metric == "ace") & (summary["class"] == "label1")].iloc[0]
    assert np.isnan(ace["micro_ci_low"]) and np.isnan(ace["micro_ci_high"])
    shown = summary["micro_ci_low"].notna()
    assert ((summary.loc[shown, "micro_ci_low"] <= summary.loc[shown, "micro"])
            & (summary.loc[shown, "micro"] <= summary.loc[shown, "micro_ci_high"])).all()
    problems = pd.read_csv(out / "problems.csv")
    named = problems[problems.message.str.contains("micro ace of label1", regex=False)]
    assert len(named) == 1 and named.iloc[0]["severity"] == "warning"
    assert named.iloc[0]["file"].endswith("summary.csv")
    assert f"estimate {ace['micro']:.4g}" in named.iloc[0]["message"]
    warnings = json.loads((out / "run.json").read_text())["warnings"]
    assert any("micro ace of label1" in w for w in warnings)


def test_tables_of_a_results_default_to_its_absent_policy():
    """A1: per_image_table, summary_table and reference_tables of a Results use the policy its
    run recorded unless ``absent=`` is given."""
    for policy in ("exclude", "drop-case"):
        results = _results(policy)
        for function in (per_image_table, summary_table):
            own = function(results)
            pd.testing.assert_frame_equal(own, function(results, absent=policy))
            assert not own.equals(function(results, absent="include"))
            pd.testing.assert_frame_equal(function(results, absent="include"),
                                          function(_results("include")))
        own = reference_tables(results)
        explicit = reference_tables(results, absent=policy)
        for name, (table, _) in own.items():
            pd.testing.assert_frame_equal(table, explicit[name][0])


def test_names_a_spreadsheet_would_run_are_warned_about(tmp_path):
    """Case ids and class names are written to the CSVs as they are (they must match the
    files they name); one beginning with = + - @ is a formula to Excel: a warning each."""
    stats = random_images(n_images=2)
    named = [s.replace(class_names=("bg", "=HYPERLINK(\"x\")", "liver")) for s in stats]
    results = Results(("=cmd|' calc'!A0", "case_2"), named, {"n_bins": 10})
    problems: list[Problem] = []
    write_reports(results, tmp_path, problems=problems)
    warned = [p.message for p in problems if "formula" in p.message]
    assert len(warned) == 2 and all(p.severity == "warning" for p in problems)
    assert "case id \"=cmd|' calc'!A0\" begins with '='" in warned[0]
    assert "class name '=HYPERLINK(\"x\")'" in warned[1]
    assert (tmp_path / "per_image.csv").read_text().count("=cmd|' calc'!A0") == 3
