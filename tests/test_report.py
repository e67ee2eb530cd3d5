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
