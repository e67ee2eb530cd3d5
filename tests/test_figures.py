"""Rendering a run's figures to files, `calibviz plot`, and image regression of the two
main figures against committed baselines (regenerate with CALIBVIZ_UPDATE_BASELINES=1)."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import typer
from matplotlib.testing.compare import compare_images
from typer.testing import CliRunner

from calibviz import Results, bin_image, save_results
from calibviz.cli_plot import plot
from calibviz.figures import (
    mean_ace,
    render_case_figure,
    render_dataset_figure,
    render_figures,
    safe_name,
    select_cases,
)

BASELINE = Path(__file__).parent / "baseline"
NAMES = ("background", "liver", "tumour")


def make_results(n_cases=5, seed=0) -> Results:
    rng = np.random.default_rng(seed)
    stats = []
    for i in range(n_cases):
        probs = rng.dirichlet(np.ones(3), size=400).T  # float64 [3, 400]
        sharpen = 1.0 + 0.5 * i  # later cases are more over-confident
        truth = probs ** (1 / sharpen)
        truth /= truth.sum(axis=0)
        labels = (rng.random(400) > np.cumsum(truth, axis=0)).sum(axis=0)
        stats.append(bin_image(probs, labels, n_bins=10, class_names=NAMES))
    return Results(cases=[f"case/{i:03d}" for i in range(n_cases)], stats=stats,
                   options={"n_bins": 10})


@pytest.fixture(scope="module")
def results():
    return make_results()


def naive_mean_ace(stats):
    out = []
    for s in stats:
        values = []
        for c in range(s.n_classes):
            gaps = [abs(s.sum_p[c, k] / s.count[c, k] - s.sum_y[c, k] / s.count[c, k])
                    for k in range(s.n_bins) if s.count[c, k] > 0]
            values.append(sum(gaps) / len(gaps))
        out.append(sum(values) / len(values))
    return np.array(out)


def test_mean_ace_and_worst_selection(results):
    expected = naive_mean_ace(results.stats)
    np.testing.assert_allclose(mean_ace(results.stats), expected)
    worst, phrase = select_cases(results, "worst 2")
    assert worst == list(np.argsort(-expected)[:2]) and phrase == "worst 2 by ACE"
    assert select_cases(results, "Worst 3 by ACE")[0] == list(np.argsort(-expected)[:3])
    assert select_cases(results, None, max_cases=10) == ([0, 1, 2, 3, 4], "all cases")
    capped, phrase = select_cases(results, None, max_cases=2)
    assert capped == worst and phrase == "worst 2 by ACE"
    assert select_cases(results, ["case/003", "case/001"])[0] == [3, 1]
    assert select_cases(results, "case/003, case/001")[0] == [3, 1]
    with pytest.raises(ValueError, match="unknown case id.*nope"):
        select_cases(results, ["nope"])


def test_render_figures_writes_files_and_counts(results, tmp_path):
    summary = render_figures(results, tmp_path, max_cases=3, dpi=40)
    assert summary["n_drawn"] == 3 and summary["n_skipped"] == 2 and summary["n_cases"] == 5
    assert summary["dataset"] == tmp_path / "dataset_reliability_histogram.png"
    assert summary["dataset"].read_bytes()[:4] == b"\x89PNG"
    assert len(summary["cases"]) == 3
    worst = select_cases(results, "worst 3")[0]
    assert [p.name for p in summary["cases"]] == [
        f"{safe_name(results.cases[i])}.png" for i in worst]
    assert all(p.parent == tmp_path / "cases" and p.exists() for p in summary["cases"])


def test_render_figures_kinds_formats_and_classes(results, tmp_path):
    summary = render_figures(results, tmp_path, kind="dataset", fmt="pdf",
                             classes=["tumour", "1"], norm="log")
    assert summary["cases"] == [] and summary["n_drawn"] == 0
    assert summary["dataset"].read_bytes()[:4] == b"%PDF"
    summary = render_figures(results, tmp_path, kind="case", cases=["case/002"], fmt="svg")
    assert summary["dataset"] is None and summary["n_drawn"] == 1
    assert summary["cases"][0] == tmp_path / "cases" / "case_002.svg"
    for bad, match in [({"kind": "all"}, "unknown kind"), ({"fmt": "gif"}, "format"),
                       ({"classes": ["spleen"]}, "unknown class"),
                       ({"norm": "sqrt"}, "unknown norm"), ({"absent": "drop"}, "absent")]:
        with pytest.raises(ValueError, match=match):
            render_figures(results, tmp_path, **bad)


def test_render_case_figure_in_worker_processes(results, tmp_path):
    summary = render_figures(results, tmp_path, kind="case", cases="worst 2", workers=2,
                             dpi=30)
    assert len(summary["cases"]) == 2 and all(p.exists() for p in summary["cases"])


# ------------------------------------------------------------------------ CLI
@pytest.fixture()
def app():
    application = typer.Typer()
    application.command("plot")(plot)

    @application.callback()
    def main():  # a group, as in the real app
        """calibviz"""

    return application


@pytest.fixture()
def run_dir(results, tmp_path):
    save_results(tmp_path / "run" / "stats.npz", results)
    return tmp_path / "run"


def test_cli_plot_writes_and_reports(app, run_dir):
    result = CliRunner().invoke(app, ["plot", str(run_dir), "--max-cases", "2", "--dpi", "30"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 4  # two cases, the dataset figure, the summary
    assert lines[-1].startswith("drew 2 of 5 case figures (worst 2 by ACE)")
    assert (run_dir / "figures" / "dataset_reliability_histogram.png").exists()
    assert len(list((run_dir / "figures" / "cases").glob("*.png"))) == 2


def test_cli_plot_options(app, run_dir, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [
        "plot", str(run_dir / "stats.npz"), "--kind", "case", "--cases", "case/001",
        "--classes", "liver", "--format", "pdf", "--preset", "single", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "cases" / "case_001.pdf").exists()
    assert "drew 1 of 5 case figures (selected cases)" in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["--kind", "x"], "unknown kind"), (["--cases", "nope"], "unknown case id"),
    (["--classes", "spleen"], "unknown class"), (["--format", "gif"], "unknown figure format"),
    (["--preset", "poster"], "unknown preset"), (["--norm", "sqrt"], "unknown norm"),
    (["--cmap", "nocmap"], "unknown colour map"),
])
def test_cli_plot_bad_input_is_one_line_and_exit_2(app, run_dir, args, message):
    result = CliRunner().invoke(app, ["plot", str(run_dir), *args])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_cli_plot_missing_results(app, tmp_path):
    result = CliRunner().invoke(app, ["plot", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "no statistics file" in result.output
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    result = CliRunner().invoke(app, ["plot", str(tmp_path / "bad.npz")])
    assert result.exit_code == 2 and "Traceback" not in result.output


# ------------------------------------------------------------- image regression
def _regression(name: str, render, tmp_path):
    actual = render(tmp_path / name)
    expected = BASELINE / name
    if os.environ.get("CALIBVIZ_UPDATE_BASELINES") or not expected.exists():
        if not os.environ.get("CALIBVIZ_UPDATE_BASELINES"):
            pytest.fail(f"no baseline {expected}; run with CALIBVIZ_UPDATE_BASELINES=1")
        BASELINE.mkdir(exist_ok=True)
        shutil.copy(actual, expected)
    failure = compare_images(str(expected), str(actual), tol=6)
    assert failure is None, failure


def test_image_regression_case_figure(results, tmp_path):
    _regression("case_figure.png", lambda path: render_case_figure(
        "case 004", results.stats[4], path, dpi=60), tmp_path)


def test_image_regression_dataset_figure(results, tmp_path):
    _regression("dataset_figure.png", lambda path: render_dataset_figure(
        results.stats, path, dpi=60, title="regression"), tmp_path)
