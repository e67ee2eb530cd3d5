"""`calibviz plot`: options, output lines, and one clear line with exit status 2 on bad
input."""

import pytest
import typer
from typer.testing import CliRunner

from calibviz import Results, save_results
from calibviz.cli.plot import plot

from .viz_data import make_results


@pytest.fixture(scope="module")
def results():
    return make_results()


@pytest.fixture()
def app():
    application = typer.Typer(rich_markup_mode=None, pretty_exceptions_enable=False)
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
        "--classes", "liver", "--format", "pdf", "--size-preset", "single", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "cases" / "case_001.pdf").exists()
    assert "drew 1 of 5 case figures (selected cases)" in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["--kind", "x"], "unknown kind"), (["--cases", "nope"], "unknown case id"),
    (["--classes", "spleen"], "unknown class"), (["--cmap", "nocmap"], "unknown colour map"),
    (["--classes", "2"], "record no label values"), (["--font-size", "1e5"], "--font-size"),
    (["--font-size", "0"], "--font-size"), (["--dpi", "2400", "--width", "100"], "--dpi"),
    (["--dpi", "5"], "--dpi"), (["--dpi", "1200", "--width", "100"], "pixels wide"),
    (["--width", "-1"], "--width"),
])
def test_cli_plot_bad_input_is_one_line_and_exit_2(app, run_dir, args, message):
    result = CliRunner().invoke(app, ["plot", str(run_dir), *args])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_cli_plot_unwritable_output_is_one_line_naming_it(app, run_dir, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    result = CliRunner().invoke(app, ["plot", str(run_dir), "--out", str(blocker / "figs"),
                                      "--kind", "dataset", "--dpi", "30"])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {blocker / 'figs'}")
    assert "Errno" not in result.output and ".tmp" not in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize(("args", "choices"), [
    (["--format", "gif"], "'png', 'pdf', 'svg'"), (["--norm", "sqrt"], "'power', 'log', 'linear'"),
    (["--size-preset", "poster"], "'screen', 'single', 'double'"),
])
def test_cli_plot_bad_choice_lists_the_library_choices_and_exit_2(app, run_dir, args, choices):
    result = CliRunner().invoke(app, ["plot", str(run_dir), *args])
    assert result.exit_code == 2
    assert f"Invalid value for '{args[0]}'" in result.output and choices in result.output
    assert "Traceback" not in result.output


def test_cli_plot_classes_by_label_value(app, tmp_path):
    results = make_results(2)
    labelled = Results(results.cases, results.stats,
                       {**results.options, "class_labels": {"background": [0], "liver": [1],
                                                            "tumour": [2]}})
    save_results(tmp_path / "run" / "stats.npz", labelled)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["plot", str(tmp_path / "run"), "--kind", "case",
                                      "--classes", "2,liver", "--dpi", "30", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert len(list((out / "cases").glob("*.png"))) == 2
    result = CliRunner().invoke(app, ["plot", str(tmp_path / "run"), "--classes", "7"])
    assert result.exit_code == 2
    assert "unknown class '7'; known: background, liver, tumour (label values: background=0, "\
        "liver=1, tumour=2)" in result.output


@pytest.mark.parametrize("folder", ["pred_dir", "label_dir", "mask_dir"])
def test_cli_plot_out_inside_the_runs_input_folders_is_refused(app, tmp_path, folder):
    """Figures written into the run's prediction, label or mask folder would be listed by
    the next evaluate there; the run records its folders, so plot can tell."""
    inputs = {key: tmp_path / key for key in ("pred_dir", "label_dir", "mask_dir")}
    for path in inputs.values():
        path.mkdir()
    results = make_results(2)
    save_results(tmp_path / "run" / "stats.npz", Results(
        results.cases, results.stats,
        {**results.options, **{key: str(path) for key, path in inputs.items()}}))
    out = inputs[folder] / "figures"
    result = CliRunner().invoke(app, ["plot", str(tmp_path / "run"), "--out", str(out),
                                      "--dpi", "30"])
    assert result.exit_code == 2, result.output
    assert f"lies inside the {folder.split('_')[0].replace('pred', 'prediction')} folder" \
        in " ".join(result.output.split())
    assert not out.exists()
    fine = CliRunner().invoke(app, ["plot", str(tmp_path / "run"), "--out",
                                    str(tmp_path / "figs"), "--dpi", "30", "--kind", "dataset"])
    assert fine.exit_code == 0, fine.output


def test_cli_plot_missing_results(app, tmp_path):
    result = CliRunner().invoke(app, ["plot", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "no statistics file" in result.output
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    result = CliRunner().invoke(app, ["plot", str(tmp_path / "bad.npz")])
    assert result.exit_code == 2 and "Traceback" not in result.output


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage", "no fields"])
def test_damaged_stats_npz_is_one_line_and_exit_2(run_dir, damage):
    from calibviz.cli import app as real_app

    path = run_dir / "stats.npz"
    data = path.read_bytes()
    path.write_bytes({"empty": b"", "truncated": data[: len(data) // 2],
                      "garbage": b"\x00\x01nonsense" * 10,
                      "no fields": _npz_without_fields()}[damage])
    result = CliRunner().invoke(real_app, ["plot", str(run_dir)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "Aborted" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "stats.npz" in lines[0]


def _npz_without_fields() -> bytes:
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, something=np.arange(3))
    return buffer.getvalue()


def test_cli_plot_in_its_own_process_draws_what_this_one_draws(tmp_path):
    """A fresh ``calibviz plot`` process draws the dataset figure and some case figures in a
    fork of itself (where it can): the same files, the same pixels."""
    import subprocess
    import sys

    import numpy as np
    from PIL import Image

    from calibviz.viz import render_figures

    results = make_results(14)  # the fork draws 2 of them
    run_dir = tmp_path / "run"
    save_results(run_dir / "stats.npz", results)
    command = [sys.executable, "-m", "calibviz", "plot", str(run_dir), "--dpi", "30",
               "--max-cases", "14", "--out", str(tmp_path / "there")]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    here = render_figures(results, tmp_path / "here", dpi=30, max_cases=14)
    for path in [here["dataset"], *here["cases"]]:
        other = tmp_path / "there" / path.relative_to(tmp_path / "here")
        assert np.array_equal(np.asarray(Image.open(path)), np.asarray(Image.open(other)))
    assert len(done.stdout.splitlines()) == len(here["cases"]) + 2


@pytest.mark.parametrize(("given", "drawn"), [([], "drop-case"), (["--absent", "include"],
                                                                  "include")])
def test_cli_plot_draws_with_the_runs_absent_policy(app, tmp_path, monkeypatch, given, drawn):
    """A1: without --absent, plot draws what the run's summary counts (its own policy)."""
    import calibviz.viz
    from calibviz.aggregate import absent_policy

    from .conftest import random_images

    images = random_images(n_images=3)
    run = tmp_path / "run"
    save_results(run / "stats.npz", Results(("a", "b", "c"), images, {"absent": "drop-case"}))
    seen = {}

    def fake(loaded, out_dir, **options):
        seen["absent"] = absent_policy(loaded, options["absent"])
        return {"cases": [], "dataset": None, "n_drawn": 0, "n_skipped": 0, "n_cases": 3,
                "selection": "", "classes": None, "class_selection": ""}

    monkeypatch.setattr(calibviz.viz, "render_figures", fake)
    result = CliRunner().invoke(app, ["plot", str(run), *given])
    assert seen == {"absent": drawn}, result.output
