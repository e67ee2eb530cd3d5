"""``calibviz evaluate`` and ``calibviz demo`` end to end with Typer's CliRunner."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from calibviz import evaluate_folder, load_results, micro_metrics, per_image_metrics
from calibviz.cli import app
from calibviz.options import EvalOptions
from calibviz.run import run_evaluation

runner = CliRunner()


def evaluate(*args):
    result = runner.invoke(app, ["evaluate", *map(str, args)])
    return result


def test_csv_numbers_equal_library_numbers(demo, tmp_path):
    out = tmp_path / "run"
    result = evaluate(demo.nnunet, demo.labels, "--out", out, "--no-figures", "--workers", 1)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "per_image.csv")
    assert list(table.columns[:4]) == ["case", "class", "n_voxels", "n_truth"]
    for column in ("ece", "ace", "mce", "brier", "dice", "absent"):
        assert column in table.columns
    library = evaluate_folder(demo.nnunet, demo.labels)
    metrics = per_image_metrics(library.stats)
    assert sorted(set(table["case"])) == sorted(library.cases)
    for i, case in enumerate(library.cases):
        rows = table[table["case"] == case]
        assert list(rows["class"]) == list(library.stats[i].class_names)
        for name in ("ece", "ace", "mce", "brier", "dice"):
            np.testing.assert_allclose(rows[name], metrics[name][i], rtol=1e-9)
        np.testing.assert_array_equal(rows["n_truth"], library.stats[i].n_truth)
    summary = pd.read_csv(out / "summary.csv")
    micro = micro_metrics(library.stats)
    liver = summary[(summary.metric == "ace") & (summary["class"] == "liver")].iloc[0]
    assert liver["micro"] == pytest.approx(micro["ace"][0], rel=1e-9)
    assert liver["mean"] == pytest.approx(np.mean(metrics["ace"][:, 0]), rel=1e-9)
    saved = load_results(out)
    assert saved.cases == tuple(library.cases)
    assert all(a.equals(b) for a, b in zip(saved.stats, library.stats))
    run = json.loads((out / "run.json").read_text())
    assert run["cases_ok"] == 5 and run["cases_skipped"] == 0
    assert run["options"]["n_bins"] == 20 and run["versions"]["numpy"]
    assert "calibration over 5 images" in result.output.lower()


def test_two_workers_equal_one(demo, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert evaluate(demo.nnunet, demo.labels, "--out", one, "--workers", 1, "--no-figures",
                    "--quiet").exit_code == 0
    assert evaluate(demo.nnunet, demo.labels, "--out", two, "--workers", 2, "--no-figures",
                    "--quiet").exit_code == 0
    assert (one / "per_image.csv").read_text() == (two / "per_image.csv").read_text()
    assert (one / "summary.csv").read_text() == (two / "summary.csv").read_text()


def test_interrupted_then_resumed_equals_uninterrupted(demo, tmp_path):
    out = tmp_path / "resumed"

    def interrupt_after_two(done, total):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_evaluation(demo.nnunet, demo.labels, out, EvalOptions(), workers=1, figures=False,
                       progress=interrupt_after_two)
    assert len(list((out / ".partial").glob("*.npz"))) == 2
    assert not (out / "per_image.csv").exists()
    result = evaluate(demo.nnunet, demo.labels, "--out", out, "--resume", "--no-figures",
                      "--workers", 1)
    assert result.exit_code == 0, result.output
    assert "2 taken from the interrupted run" in result.output
    full = tmp_path / "full"
    evaluate(demo.nnunet, demo.labels, "--out", full, "--no-figures", "--workers", 1)
    assert (out / "per_image.csv").read_text() == (full / "per_image.csv").read_text()


def test_resume_refuses_changed_options(demo, tmp_path):
    out = tmp_path / "run"

    def interrupt_after_one(done, total):
        if done == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_evaluation(demo.nnunet, demo.labels, out, EvalOptions(), workers=1, figures=False,
                       progress=interrupt_after_one)
    result = evaluate(demo.nnunet, demo.labels, "--out", out, "--resume", "--bins", 10)
    assert result.exit_code == 2
    assert "options differ" in result.output and "n_bins" in result.output


def test_reference_csv_style_reads_like_the_authors_scripts(demo, tmp_path):
    out = tmp_path / "ref"
    result = evaluate(demo.nnunet, demo.labels, "--out", out, "--csv-style", "reference",
                      "--no-figures", "--quiet")
    assert result.exit_code == 0, result.output
    tidy = pd.read_csv(out / "per_image.csv")
    cases = sorted(set(tidy["case"]))
    for metric, stem in (("ace", "macro_ace"), ("ece", "macro_ece"), ("mce", "macro_mce"),
                         ("dice", "mean_dice")):
        raw = pd.read_csv(out / f"{stem}_raw.csv")
        assert list(raw.columns) == ["filename", "liver", "tumour", "vessel", "mean"]
        assert [name.split(".")[0] for name in raw["filename"]] == cases
        assert all(name.endswith(".npz") for name in raw["filename"])  # with its extension
        per_case = tidy.pivot(index="case", columns="class", values=metric)
        np.testing.assert_allclose(pd.read_csv(out / f"{stem}_raw.csv")["mean"],
                                   per_case.mean(axis=1).to_numpy(), rtol=1e-9)
        summary = pd.read_csv(out / f"{stem}_summary.csv")
        assert list(summary.columns) == [
            "class", "mean", "median", "max", "min", "90percentile", "std", "notnans"]
    metrics = pd.read_csv(out / "metrics.csv", header=None)
    assert metrics[0].tolist() == ["macro_ece", "macro_ace", "macro_mce", "micro_ece",
                                   "micro_ace", "micro_mce", "missing_classes"]
    for name in ("micro_ace_raw.csv", "missing_classes_raw.csv", "micro_ece_summary.csv"):
        assert (out / name).exists()


@pytest.fixture()
def broken_copy(demo, tmp_path):
    import shutil

    pred = tmp_path / "pred"
    shutil.copytree(demo.nnunet, pred)
    victim = sorted(pred.glob("*.npz"))[1]
    victim.write_bytes(victim.read_bytes()[:200])  # truncated archive
    return pred, victim.name[: -len(".npz")]


def test_broken_case_is_reported_and_others_evaluated(demo, broken_copy, tmp_path):
    pred, broken = broken_copy
    out = tmp_path / "run"
    result = evaluate(pred, demo.labels, "--out", out, "--no-figures")
    assert result.exit_code == 0, result.output
    problems = pd.read_csv(out / "problems.csv")
    assert broken in set(problems["case"])
    assert "skipped" in result.output
    table = pd.read_csv(out / "per_image.csv")
    assert broken not in set(table["case"])
    assert len(set(table["case"])) == 4
    full = evaluate_folder(demo.nnunet, demo.labels)
    expected = per_image_metrics([s for c, s in zip(full.cases, full.stats) if c != broken])
    np.testing.assert_allclose(
        table["ace"].to_numpy().reshape(4, -1), expected["ace"], rtol=1e-9
    )
    strict = evaluate(pred, demo.labels, "--out", tmp_path / "strict", "--no-figures",
                      "--strict")
    assert strict.exit_code == 1


def test_progress_counts_the_failed_cases_as_they_fail(demo, broken_copy, tmp_path):
    pred, _ = broken_copy
    calls, old_style = [], []
    run_evaluation(pred, demo.labels, tmp_path / "three", EvalOptions(), workers=1,
                   figures=False, progress=lambda done, total, failed: calls.append(
                       (done, total, failed)))
    assert calls[-1] == (5, 5, 1)
    assert [c[2] for c in calls] == sorted(c[2] for c in calls)  # never goes back
    run_evaluation(pred, demo.labels, tmp_path / "two", EvalOptions(), workers=1,
                   figures=False, progress=lambda done, total: old_style.append((done, total)))
    assert old_style[-1] == (5, 5)  # a two-argument callback is called as before


def test_progress_bar_shows_failed_cases():
    import io

    from rich.console import Console

    from calibviz.cli.console import ProgressDisplay

    for failed, shown in ((0, False), (2, True)):
        console = Console(file=io.StringIO(), width=120, force_terminal=False)
        with ProgressDisplay(console=console) as display:
            display.update(3, 5, failed)
        text = console.file.getvalue()
        assert "3/5" in text
        assert ("2 failed" in text) is shown


@pytest.mark.parametrize("width", [36, 60, 80, 132])
def test_tables_never_cut_a_number(width):
    """Whatever the terminal's width, every number of a table is printed whole and no line
    is wider than the terminal: names wrap, then columns move to a further table."""
    import io

    from rich.console import Console, Group
    from rich.text import Text

    from calibviz.cli.console import fitted_tables

    rng = np.random.default_rng(width)
    names = ["liver", "left_kidney_cortex_with_a_long_name", "[bold]t", "肝臓"]
    headers = ["class", *(f"M{j}\nmacro" for j in range(7))]
    rows = [[Text(name), *(f"{x:.4f}\n±{x / 7:.4f}" for x in rng.random(7))]
            for name in names]
    console = Console(file=io.StringIO(), width=width, force_terminal=False)
    console.print(Group(*fitted_tables(Text("a title [x]"), headers, rows, width=width)))
    text = console.file.getvalue()
    assert max(console.measure(line).maximum for line in text.splitlines()) <= width
    assert "…" not in text and "[bold]t" in text and "[x]" in text
    for row in rows:
        for cell in row[1:]:
            for number in cell.split("\n"):
                assert number in text, (number, width)


def test_summary_and_comparison_tables_fit_80_columns(demo, tmp_path):
    """Long class and model names on an 80-column terminal (a log file, CI) keep every
    number whole in evaluate's summary and compare's table."""
    classes = "background=0,liver_parenchyma_left_lobe=1,tumour=2,hepatic_vessel_tree=3"
    runs = []
    for name in ("baseline_model_with_a_long_name", "temperature_scaled_calibrated_v2"):
        out = tmp_path / name
        result = evaluate(demo.monai, demo.labels, "--postfix", "prob", "--classes", classes,
                          "--out", out, "--no-figures", "--workers", 1, "--name", name)
        assert result.exit_code == 0, result.output
        assert "…" not in result.output
        summary = pd.read_csv(out / "summary.csv")
        micro = summary[(summary["metric"] == "ace") & (summary["class"] != "mean")]["micro"]
        assert len(micro) == 3
        assert all(f"{value:.4f}" in result.output for value in micro)
        runs.append(out)
    result = runner.invoke(app, ["compare", *map(str, runs)])
    assert result.exit_code == 0, result.output
    assert "…" not in result.output and "[95 % CI]" in result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80


def test_demo_into_an_unwritable_place_is_one_line(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    result = runner.invoke(app, ["demo", str(blocker / "demo"), "--cases", "2",
                                 "--no-figures", "--quiet"])
    assert result.exit_code == 2
    assert "cannot write the demo data" in result.output and str(blocker) in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_truncated_label_gz(demo, tmp_path):
    import shutil

    labels = tmp_path / "labels"
    shutil.copytree(demo.labels, labels)
    victim = sorted(labels.glob("*.nii.gz"))[0]
    compressed = gzip.compress(gzip.decompress(victim.read_bytes()))
    victim.write_bytes(compressed[: len(compressed) // 2])
    result = evaluate(demo.nnunet, labels, "--out", tmp_path / "run", "--no-figures")
    assert result.exit_code == 0
    assert "Traceback" not in result.output
    problems = pd.read_csv(tmp_path / "run" / "problems.csv")
    assert victim.name.split(".")[0] in set(problems["case"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing_pred", "missing_labels"], "missing_pred"),
        (["{pred}", "{labels}", "--bins", "0"], "--bins"),
        (["{pred}", "{labels}", "--closure", "middle"], "middle"),
        (["{pred}", "{labels}", "--format", "bmp"], "bmp"),
    ],
)
def test_usage_errors_exit_2_without_traceback(demo, tmp_path, args, message):
    args = [a.format(pred=demo.nnunet, labels=demo.labels) for a in args]
    result = runner.invoke(app, ["evaluate", *args, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    )


def test_out_inside_the_prediction_folder_and_one_folder_twice_are_usage_errors(demo, tmp_path):
    import shutil

    nn = tmp_path / "nn"
    shutil.copytree(demo.nnunet, nn)
    before = sorted(p.name for p in nn.iterdir())
    for args, words in (([nn, demo.labels, "--out", nn], [f"is the prediction folder {nn}"]),
                        ([nn, demo.labels, "--out", nn / "calib"],
                         [f"lies inside the prediction folder {nn}"]),
                        ([demo.labels, demo.labels, "--out", tmp_path / "o"],
                         ["is the label folder"])):
        result = runner.invoke(app, ["evaluate", *map(str, args), "--no-figures"],
                               env={"COLUMNS": "300"})
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
        for word in words:
            assert word in " ".join(result.output.split()), result.output
    assert sorted(p.name for p in nn.iterdir()) == before  # nothing written


def test_help_explains_every_option():
    result = runner.invoke(app, ["evaluate", "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0
    for option in ("--out", "--bins", "--closure", "--binning", "--format", "--classes",
                   "--regions", "--region-preset", "--input-format", "--include-background",
                   "--absent", "--mask-dir",
                   "--ignore-label", "--workers", "--resume", "--strict", "--figures",
                   "--csv-style", "--quiet"):
        assert option in result.output
    assert "Example: calibviz evaluate" in result.output


def test_demo_end_to_end(tmp_path):
    folder = tmp_path / "demo"
    result = runner.invoke(app, ["demo", str(folder), "--cases", "3", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert (folder / "results" / "per_image.csv").exists()
    assert (folder / "results" / "figures" / "dataset_reliability_histogram.png").exists()
    assert len(list((folder / "results" / "figures" / "cases").glob("*.png"))) == 3
    # the over-confident model is worse calibrated than the calibrated one
    calibrated = evaluate(folder / "monai_calibrated", folder / "labels", "--postfix", "prob",
                          "--classes", "background=0,liver=1,tumour=2,vessel=3",
                          "--out", folder / "monai", "--no-figures", "--quiet")
    assert calibrated.exit_code == 0, calibrated.output
    over = pd.read_csv(folder / "results" / "summary.csv")
    good = pd.read_csv(folder / "monai" / "summary.csv")
    pick = (over.metric == "ece") & (over["class"] == "liver")
    assert over[pick]["micro"].iloc[0] > 3 * good[pick]["micro"].iloc[0]
    # running it again in the same folder replaces the earlier demo
    again = runner.invoke(app, ["demo", str(folder), "--cases", "2", "--no-figures", "--quiet"])
    assert again.exit_code == 0, again.output
    assert len(list((folder / "labels").glob("*.nii.gz"))) == 2


def test_demo_refuses_a_foreign_folder(tmp_path):
    (tmp_path / "thesis.tex").write_text("precious")
    result = runner.invoke(app, ["demo", str(tmp_path)])
    assert result.exit_code == 2
    assert "not empty" in result.output
    assert (tmp_path / "thesis.tex").exists()


def test_automatic_workers_stay_in_process_for_small_folders(demo, tmp_path):
    auto = evaluate(demo.nnunet, demo.labels, "--out", tmp_path / "auto", "--no-figures",
                    "--quiet")
    one = evaluate(demo.nnunet, demo.labels, "--out", tmp_path / "one", "--no-figures",
                   "--quiet", "--workers", 1)
    assert auto.exit_code == one.exit_code == 0
    assert json.loads((tmp_path / "auto" / "run.json").read_text())["options"]["workers"] == 1
    assert (tmp_path / "auto" / "per_image.csv").read_text() == \
        (tmp_path / "one" / "per_image.csv").read_text()


def test_figures_drawn_by_worker_processes_equal_those_drawn_here(demo, tmp_path,
                                                                  monkeypatch):
    from PIL import Image

    import calibviz.runfigures
    import calibviz.viz.render
    from calibviz.viz.render import DATASET_FIGURE
    from calibviz.viz.worker import CAN_FORK, FigureWorker

    monkeypatch.setattr(calibviz.runfigures, "default_workers", lambda: 2)  # even on 1 core
    answers = []
    answer = FigureWorker._answer

    def spy(self):
        answers.append(answer(self))
        return answers[-1]

    monkeypatch.setattr(FigureWorker, "_answer", spy)
    here_calls = []  # what this process draws itself
    for name in ("render_case_figures", "render_dataset_figure"):
        original = getattr(calibviz.viz.render, name)

        def recorded(*args, _original=original, _name=name, **kwargs):
            here_calls.append((_name, len(args[0])))
            return _original(*args, **kwargs)

        monkeypatch.setattr(calibviz.viz.render, name, recorded)
    here, there = tmp_path / "here", tmp_path / "there"
    assert evaluate(demo.nnunet, demo.labels, "--out", here, "--workers", 1, "--quiet",
                    "--max-case-figures", 3, "--bootstrap", 0).exit_code == 0
    here_calls.clear()
    result = evaluate(demo.nnunet, demo.labels, "--out", there, "--workers", 2, "--quiet",
                      "--max-case-figures", 3, "--bootstrap", 0)
    assert result.exit_code == 0, result.output
    drawn = sorted(p.relative_to(here) for p in (here / "figures").rglob("*.png"))
    assert len(drawn) == 4
    assert drawn == sorted(p.relative_to(there) for p in (there / "figures").rglob("*.png"))
    for name in drawn:
        assert np.array_equal(np.asarray(Image.open(here / name)),
                              np.asarray(Image.open(there / name))), name
    run = json.loads((there / "run.json").read_text())
    assert run["figures"]["n_drawn"] == 3 and not run["warnings"]
    assert len(answers) == 1  # all drawn by the worker (the dataset figure where it forks)
    assert answers[0]["prepared"]  # with the case figure it built while cases were run
    assert sorted(answers[0]["cases"]) == sorted((there / "figures" / "cases").glob("*.png"))
    assert answers[0]["dataset"] == (there / "figures" / f"{DATASET_FIGURE}.png"
                                     if CAN_FORK else None)
    assert [call for call in here_calls if call[1]] == (  # nothing left to draw here
        [] if CAN_FORK else [("render_dataset_figure", 5)])


@pytest.mark.parametrize("step", ["start_figures", "render_dataset_figure"])
def test_figure_failure_keeps_the_reports(demo, tmp_path, monkeypatch, step):
    import calibviz.viz.render

    def broken(*args, **kwargs):
        raise RuntimeError("no display fonts")

    monkeypatch.setattr(calibviz.viz.render, step, broken)  # starting, or drawing, fails
    out = tmp_path / "run"
    result = evaluate(demo.nnunet, demo.labels, "--out", out, "--workers", 1)
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(out / "per_image.csv")) == 15
    problems = pd.read_csv(out / "problems.csv")
    assert problems["message"].str.contains("figures could not be drawn").any()
    assert not list(out.rglob("*.tmp"))


def test_summary_json_reads_like_nnunets(demo, tmp_path):
    out = tmp_path / "run"
    result = evaluate(demo.nnunet, demo.labels, "--out", out, "--no-figures", "--quiet",
                      "--bootstrap", 0)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"metric_per_case", "mean", "foreground_mean"}
    table = pd.read_csv(out / "per_image.csv").set_index(["case", "class"])
    names = {"1": "liver", "2": "tumour", "3": "vessel"}  # nnU-Net keys are label values
    for entry in summary["metric_per_case"]:
        case = entry["prediction_file"].removesuffix(".npz")
        assert entry["reference_file"] == f"{case}.nii.gz"
        for key, metrics in entry["metrics"].items():
            row = table.loc[(case, names[key])]
            for ours, theirs in (("dice", "Dice"), ("ece", "ECE"), ("ace", "ACE"),
                                 ("mce", "MCE"), ("brier", "Brier")):
                np.testing.assert_allclose(metrics[theirs], row[ours], rtol=1e-9)
            assert metrics["n_ref"] == row["n_truth"]
    dice_means = [summary["mean"][k]["Dice"] for k in ("1", "2", "3")]
    np.testing.assert_allclose(summary["foreground_mean"]["Dice"], np.mean(dice_means))


def test_fine_bins_keep_exact_statistics_for_sweeps(demo, tmp_path):
    fine, direct = tmp_path / "fine", tmp_path / "direct"
    assert evaluate(demo.nnunet, demo.labels, "--out", fine, "--fine-bins", 60, "--bins", 20,
                    "--no-figures", "--quiet", "--bootstrap", 0).exit_code == 0
    assert evaluate(demo.nnunet, demo.labels, "--out", direct, "--bins", 20,
                    "--no-figures", "--quiet", "--bootstrap", 0).exit_code == 0
    coarse, reference = load_results(fine), load_results(direct)
    assert coarse.stats[0].n_bins == 20
    assert load_results(fine / "stats_fine.npz").stats[0].n_bins == 60
    for a, b in zip(coarse.stats, reference.stats):
        for name in ("count", "sum_y", "tp", "fp", "fn", "tn"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        assert a.equals(b, rtol=1e-12)
    sweep = runner.invoke(app, ["sweep", str(fine), "--bins", "5,12,30,60"])
    assert sweep.exit_code == 0, sweep.output
    table = pd.read_csv(fine / "sweep" / "sweep.csv")
    assert sorted(set(table["bins"])) == [5, 12, 30, 60]
    bad = evaluate(demo.nnunet, demo.labels, "--out", tmp_path / "bad", "--fine-bins", 50,
                   "--bins", 20)
    assert bad.exit_code == 2 and "--fine-bins 50" in bad.output


def test_the_command_not_the_library_tunes_the_garbage_collector():
    import subprocess
    import sys

    from calibviz.gctune import GC_THRESHOLDS

    probe = ("import gc, sys\n"
             "before = gc.get_threshold()\n"
             "import calibviz, calibviz.cli, calibviz.run\n"
             "imported = gc.get_threshold()\n"
             "sys.argv = ['calibviz', '--version']\n"
             "try:\n"
             "    calibviz.cli.main()\n"
             "except SystemExit:\n"
             "    pass\n"
             "print(before == imported, gc.get_threshold())")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    unchanged, after = done.stdout.strip().splitlines()[-1].split(" ", 1)
    assert unchanged == "True"  # importing calibviz leaves a user's process as it was
    assert after == str(GC_THRESHOLDS)
    assert GC_THRESHOLDS[2] > 10  # full collections rarer than Python's default


@pytest.mark.parametrize("script_name, reruns", [("calibviz", False), ("my_pipeline.py", True)])
def test_spawned_processes_of_the_command_do_not_rerun_its_console_script(
        tmp_path, script_name, reruns):
    """A spawned process runs the parent's main module again unless it has a module name;
    the console script (what pip writes: it imports the whole command line) is named
    ``calibviz.__main__`` so that figure and pool processes skip it; another program's
    script is left alone (its processes may need it)."""
    import subprocess
    import sys

    script = tmp_path / script_name
    script.write_text(
        "import sys\n"
        "from calibviz.cli import _spawn_without_script\n"
        "if __name__ == '__main__':\n"
        "    from concurrent.futures import ProcessPoolExecutor\n"
        "    from multiprocessing import get_context\n"
        "    _spawn_without_script()\n"
        "    with ProcessPoolExecutor(1, mp_context=get_context('spawn')) as pool:\n"
        "        print(pool.submit(eval, \"'calibviz.cli' in __import__('sys').modules\")"
        ".result())\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          check=True, cwd=tmp_path)
    assert done.stdout.strip().splitlines()[-1] == str(reruns)


# ------------------------------------------------ numeric options, checked before anything runs
@pytest.fixture(scope="module")
def small_run(demo, tmp_path_factory):
    """A finished run of the demo's nnU-Net folder (no intervals, no figures)."""
    out = tmp_path_factory.mktemp("run") / "run"
    run_evaluation(demo.nnunet, demo.labels, out, EvalOptions(), workers=1, figures=False,
                   n_bootstrap=0)
    return out


BAD_NUMBERS = [
    (["evaluate", "{pred}", "{labels}"], "--seed", "-1"),
    (["evaluate", "{pred}", "{labels}"], "--seed", str(2**64)),
    (["evaluate", "{pred}", "{labels}"], "--bootstrap", "-1"),
    (["evaluate", "{pred}", "{labels}"], "--bootstrap", "100000000"),
    (["evaluate", "{pred}", "{labels}"], "--bins", "1000000000"),
    (["evaluate", "{pred}", "{labels}"], "--fine-bins", "200000000"),
    (["evaluate", "{pred}", "{labels}"], "--ignore-label", str(10**20)),
    (["compare", "{run}", "{run}"], "--seed", "-1"),
    (["compare", "{run}", "{run}"], "--bootstrap", "100000000"),
    (["report", "{run}"], "--seed", "-1"),
    (["report", "{run}"], "--bootstrap", "100000000"),
    (["plot", "{run}", "--kind", "dataset"], "--band", "100000000"),
    (["sweep", "{run}"], "--bins", "5,1000000000"),
]


@pytest.mark.parametrize(("command", "option", "value"), BAD_NUMBERS)
def test_out_of_range_numbers_are_usage_errors_naming_the_option(demo, small_run, tmp_path,
                                                                 command, option, value):
    """Every command checks its numeric options the same way, before reading anything: one
    usage error naming the option (exit 2), no traceback, nothing written."""
    args = [a.format(pred=demo.nnunet, labels=demo.labels, run=small_run) for a in command]
    out = tmp_path / "out"
    result = runner.invoke(app, [*args, option, value, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert option in result.output and value.split(",")[-1] in result.output
    assert "Traceback" not in result.output and not isinstance(result.exception, ValueError)
    assert not out.exists()


def test_library_run_checks_seed_bootstrap_and_fine_bins_before_any_case(demo, tmp_path):
    from calibviz.run import UsageError

    for options, name in (({"seed": -1}, "--seed"), ({"n_bootstrap": 10**8}, "--bootstrap"),
                          ({"fine_bins": 2 * 10**8}, "--fine-bins"),
                          ({"n_bootstrap": 2.5}, "--bootstrap")):
        out = tmp_path / name.strip("-")
        with pytest.raises(UsageError, match=name):
            run_evaluation(demo.nnunet, demo.labels, out, EvalOptions(), workers=1,
                           figures=False, **options)
        assert not out.exists()


def test_evaluate_scale_on_float_maps_is_a_usage_error(demo, tmp_path):
    """--scale that the maps would ignore is refused, never recorded in run.json."""
    out = tmp_path / "out"
    result = evaluate(demo.monai, demo.labels, "--out", out, "--scale", "1/255", "--workers", 1,
                      "--no-figures", "--postfix", "prob")
    assert result.exit_code == 2, result.output
    assert "--scale" in result.output and "float32" in result.output
    assert not out.exists()


def test_figures_of_too_many_bins_are_refused_before_any_case(demo, tmp_path):
    out = tmp_path / "run"
    result = evaluate(demo.nnunet, demo.labels, "--out", out, "--bins", 600)
    assert result.exit_code == 2 and "at most 500 bins" in result.output
    assert "--no-figures" in result.output and not out.exists()


@pytest.mark.parametrize("workers", [1, 2])
def test_evaluate_figures_of_many_classes_show_sixteen_and_say_so(tmp_path, workers):
    """An 18-channel model (17 scored classes): figures of the 16 with the highest mean ACE,
    said on the terminal, with the command that draws the others."""
    from calibviz.synthetic import write_nifti
    from calibviz.viz.selection import figure_classes

    rng = np.random.default_rng(3)
    for i in range(2):
        probs = rng.dirichlet(np.ones(18) * 0.5, size=(6, 5, 4)).astype(np.float32)
        write_nifti(tmp_path / "pred" / f"c{i}.nii.gz", probs)
        write_nifti(tmp_path / "labels" / f"c{i}.nii.gz", rng.integers(0, 18, (6, 5, 4)),
                    dtype=np.int16)
    out = tmp_path / "out"
    result = evaluate(tmp_path / "pred", tmp_path / "labels", "--out", out, "--workers",
                      workers, "--bootstrap", 100)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "figures show 16 of 17 classes (those with the highest mean ACE)" in text
    assert f"calibviz plot {out} --classes" in text
    shown, _ = figure_classes(load_results(out))
    assert len(shown) == 16 and (out / "figures" / "cases" / "c0.png").exists()


def test_evaluate_folder_takes_the_run_level_options(tmp_path):
    """absent, bootstrap and seed (the command line's --absent, --bootstrap, --seed) are
    recorded in the Results, so that its summary is the one evaluate would write."""
    from calibviz.report import summary_table
    from calibviz.synthetic import make_case, write_label, write_monai

    for i in range(3):
        labels, probs = make_case((10, 9, 6), 3, seed=i)
        labels[labels == 2] = 0 if i == 0 else 2  # class 2 absent from case 0
        write_label(tmp_path / "labels" / f"case{i}.nii.gz", labels)
        write_monai(tmp_path / "pred", f"case{i}", probs)
    results = evaluate_folder(tmp_path / "pred", tmp_path / "labels", absent="exclude",
                              bootstrap=50, seed=3)
    assert {k: results.options[k] for k in ("absent", "bootstrap", "seed")} == {
        "absent": "exclude", "bootstrap": 50, "seed": 3}
    expected = summary_table(results, absent="exclude", n_bootstrap=50, seed=3)
    pd.testing.assert_frame_equal(results.summary, expected)
    assert not results.summary.equals(summary_table(results, absent="include", n_bootstrap=50,
                                                    seed=3))
    with pytest.raises(ValueError, match="absent"):
        evaluate_folder(tmp_path / "pred", tmp_path / "labels", absent="drop")
    with pytest.raises(TypeError, match="unknown option.*absnt.*absent, bootstrap, seed"):
        evaluate_folder(tmp_path / "pred", tmp_path / "labels", absnt="exclude")


def test_demo_cases_are_capped_before_anything_is_written(tmp_path):
    """A typo such as --cases 100000 would write tens of GB: refused with the cap and the
    size it would write, before the folder is touched; the cap itself is accepted."""
    from calibviz.demo import MAX_DEMO_CASES, demo_bytes, write_demo_dataset

    folder = tmp_path / "demo"
    for cases in (MAX_DEMO_CASES + 1, 100000):
        result = runner.invoke(app, ["demo", str(folder), "--cases", str(cases), "--quiet"])
        assert result.exit_code == 2 and "Traceback" not in result.output
        line = result.output.strip()
        assert len(line.splitlines()) == 1, line
        assert f"--cases {cases}" in line and f"at most {MAX_DEMO_CASES}" in line, line
        assert f"{demo_bytes(cases) / 1e9:.1f} GB" in line, line
        assert not folder.exists()
    with pytest.raises(ValueError, match=f"at most {MAX_DEMO_CASES}"):
        write_demo_dataset(folder, n_cases=MAX_DEMO_CASES + 1)
    assert not folder.exists()
    # the estimate is an upper bound of what is written (float32 maps, before compression)
    written = write_demo_dataset(folder, n_cases=2, shape=(8, 8, 4)).root
    size = sum(p.stat().st_size for p in written.rglob("*") if p.is_file())
    assert size <= demo_bytes(2, shape=(8, 8, 4)) + 64 * 1024
