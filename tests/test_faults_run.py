"""Runs you can trust: each fault of the attack battery on the run itself (mixed inputs,
reused output folders, stale resumes, exit statuses, usage errors, process faults).

Each test builds the faulty folder in a temporary directory and asserts the exit status, no
traceback, one line naming what is wrong, and that untouched cases equal a clean run.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from calibviz import load_results
from calibviz.cli import app
from calibviz.synthetic import make_case, write_label, write_nifti

runner = CliRunner()
SHAPE = (10, 9, 6)


def evaluate(*args, **kwargs):
    return runner.invoke(app, ["evaluate", *map(str, args)], **kwargs)


def write_float_folder(root: Path, dtypes=("float32",) * 4, n_classes=3) -> tuple[Path, Path]:
    """A NIfTI folder ``root/pred`` (4-D (i, j, k, C)) and ``root/labels``; case ``i`` stored
    as ``dtypes[i]`` (``"uint8-slope"``: uint8 with scl_slope 1/255)."""
    pred, labels = root / "pred", root / "labels"
    for i, dtype in enumerate(dtypes):
        label, probs = make_case(SHAPE, n_classes, seed=i)
        write_label(labels / f"case{i}.nii.gz", label)
        data = np.moveaxis(probs, 0, -1)
        if dtype.endswith("-slope"):
            top = np.iinfo(dtype[:-6]).max
            write_nifti(pred / f"case{i}.nii.gz", np.rint(data * top), dtype=dtype[:-6],
                        slope=1 / top)
        else:
            write_nifti(pred / f"case{i}.nii.gz", data, dtype=np.dtype(dtype))
    return pred, labels


def assert_clean(result, code):
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output


def rows(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "per_image.csv").set_index(["case", "class"]).sort_index()


# ------------------------------------------------------------ one run's results
def test_mixed_input_dtypes_evaluate_and_resume(tmp_path):
    pred, labels = write_float_folder(tmp_path,
                                      ("float32", "float64", "uint16-slope", "uint8-slope"))
    out = tmp_path / "out"
    result = evaluate(pred, labels, "--out", out, "--workers", 1, "--no-figures")
    assert_clean(result, 0)
    assert load_results(out).cases == ("case0", "case1", "case2", "case3")
    again = evaluate(pred, labels, "--out", out, "--workers", 1, "--no-figures", "--resume")
    assert_clean(again, 0)


def test_a_case_with_other_channels_is_that_cases_error(tmp_path):
    pred, labels = write_float_folder(tmp_path)
    label, probs = make_case(SHAPE, 4, seed=9)
    write_nifti(pred / "case1.nii.gz", np.moveaxis(probs, 0, -1))
    out = tmp_path / "out"
    result = evaluate(pred, labels, "--out", out, "--workers", 1, "--no-figures")
    assert_clean(result, 0)
    assert load_results(out).cases == ("case0", "case2", "case3")
    problems = pd.read_csv(out / "problems.csv")
    assert problems["case"].tolist() == ["case1"] and "case1" in problems["message"][0]


@pytest.mark.parametrize("order", [(0, 1, 2, 3), (1, 0, 2, 3), (1, 3, 2, 0)])
def test_the_case_that_cannot_pool_is_the_same_whatever_order_cases_finish(tmp_path, order):
    from calibviz.collector import Collector
    from calibviz.io import discover_cases, evaluate_case
    from calibviz.options import EvalOptions

    pred, labels = write_float_folder(tmp_path)
    label, probs = make_case(SHAPE, 4, seed=9)
    write_nifti(pred / "case1.nii.gz", np.moveaxis(probs, 0, -1))
    cases, found = discover_cases(pred, labels, EvalOptions())
    collector = Collector(cases, found, {})
    for i in order:  # as cases finish in threads, processes or on a cluster
        collector(evaluate_case(cases[i], EvalOptions()))
    results = collector.results()
    assert results.cases == ("case0", "case2", "case3")
    assert [p.case for p in results.problems if p.severity == "error"] == ["case1"]
    assert "of case case0" in results.problems[0].message


def test_out_folder_holds_exactly_one_run(tmp_path):
    pred, labels = write_float_folder(tmp_path)
    out = tmp_path / "out"
    assert_clean(evaluate(pred, labels, "--out", out, "--workers", 1, "--max-case-figures",
                          2), 0)
    (out / "notes.txt").write_text("mine")
    (out / "mine_raw.csv").write_text("mine")  # looks like a report file name; is not ours
    second = evaluate(pred, labels, "--out", out, "--workers", 1)
    assert_clean(second, 2)
    assert "--overwrite" in second.output and "--resume" in second.output
    assert len([line for line in second.output.splitlines() if line.strip()]) == 1
    before = sorted(p.name for p in (out / "figures" / "cases").iterdir())
    third = evaluate(pred, labels, "--out", out, "--workers", 1, "--overwrite", "--no-figures")
    assert_clean(third, 0)
    assert before and not (out / "figures").exists()  # the earlier run's figures are gone
    assert (out / "notes.txt").read_text() == "mine"  # other files are never touched
    assert (out / "mine_raw.csv").read_text() == "mine"
    assert json.loads((out / "run.json").read_text())["figures"] is None


def test_resume_recomputes_cases_whose_inputs_changed(tmp_path):
    pred, labels = write_float_folder(tmp_path)
    out = tmp_path / "out"
    assert_clean(evaluate(pred, labels, "--out", out, "--workers", 1, "--no-figures"), 0)
    # an interrupted run leaves its partial store; simulate one by keeping it
    first = rows(out)
    _interrupted_copy(out)
    label, probs = make_case(SHAPE, 3, seed=42)
    write_nifti(pred / "case2.nii.gz", np.moveaxis(probs, 0, -1))
    _resume_recomputes_case2(pred, labels, out, first)


def test_resume_recomputes_an_input_replaced_with_its_size_and_time_kept(tmp_path):
    """``cp -p`` of another model's file over an input keeps its size (uncompressed NIfTI
    of the same grid) and modification time: the stored case must still be evaluated
    again, not mixed into the resumed run."""
    import os

    pred, labels = write_float_folder(tmp_path)
    for path in sorted(pred.glob("*.nii.gz")):  # uncompressed: same size whatever the values
        write_nifti(path.with_suffix(""), _read(path))
        path.unlink()
    out = tmp_path / "out"
    assert_clean(evaluate(pred, labels, "--out", out, "--workers", 1, "--no-figures"), 0)
    first = rows(out)
    _interrupted_copy(out)
    victim = pred / "case2.nii"
    kept = victim.stat()
    other = tmp_path / "other.nii"
    write_nifti(other, np.moveaxis(make_case(SHAPE, 3, seed=42)[1], 0, -1))
    assert other.stat().st_size == kept.st_size
    other.replace(victim)
    os.utime(victim, ns=(kept.st_atime_ns, kept.st_mtime_ns))
    assert (victim.stat().st_size, victim.stat().st_mtime_ns) == (kept.st_size,
                                                                    kept.st_mtime_ns)
    _resume_recomputes_case2(pred, labels, out, first)


def _resume_recomputes_case2(pred: Path, labels: Path, out: Path, first) -> None:
    """Resume the run in ``out`` whose case2 input changed: case2 is evaluated again
    (saying so), the others are taken as stored (``first``: the rows before)."""
    resumed = evaluate(pred, labels, "--out", out, "--workers", 1, "--no-figures", "--resume")
    assert_clean(resumed, 0)
    assert "case2" in resumed.output and "changed" in resumed.output
    again = rows(out)
    assert not np.allclose(again.loc["case2", "ace"], first.loc["case2", "ace"])
    pd.testing.assert_frame_equal(again.drop(index="case2"), first.drop(index="case2"),
                                  check_dtype=False)


def _read(path: Path) -> np.ndarray:
    import nibabel as nib

    return np.asarray(nib.load(path).dataobj)


def _interrupted_copy(out: Path) -> None:
    """Turn a finished run folder into an interrupted one: partial store back, reports gone."""
    from calibviz.store import PARTIAL_DIR

    saved = out / "saved-partial"
    assert saved.exists(), "the test run keeps a copy of its partial store"
    saved.rename(out / PARTIAL_DIR)
    for name in ("per_image.csv", "summary.csv", "stats.npz", "run.json"):
        (out / name).unlink()


@pytest.fixture(autouse=True)
def _keep_partial(monkeypatch, request):
    """For the resume tests: copy the partial store aside before a run removes it."""
    if "resume" not in request.node.name:
        return
    import shutil

    from calibviz import store

    original = store.PartialStore.finish

    def finish(self):
        if any(self.folder.glob("*.npz")):
            shutil.copytree(self.folder, self.folder.parent / "saved-partial",
                            dirs_exist_ok=True)
        original(self)

    monkeypatch.setattr(store.PartialStore, "finish", finish)


def test_damaged_partial_records_are_recomputed_with_one_line(tmp_path):
    pred, labels = write_float_folder(tmp_path)
    out = tmp_path / "out"
    assert_clean(evaluate(pred, labels, "--out", out, "--workers", 1, "--no-figures"), 0)
    first = rows(out)
    partial = out / ".partial"
    partial.mkdir()
    (partial / "options.json").write_text("{not json")
    (partial / "case0.npz").write_bytes(b"garbage")
    result = evaluate(pred, labels, "--out", out, "--workers", 1, "--no-figures", "--resume")
    assert_clean(result, 0)
    pd.testing.assert_frame_equal(rows(out), first)


def test_finished_run_leaves_no_partial_store_and_resume_claims_nothing(tmp_path):
    pred, labels = write_float_folder(tmp_path)
    out = tmp_path / "out"
    assert_clean(evaluate(pred, labels, "--out", out, "--workers", 1, "--no-figures"), 0)
    assert not (out / ".partial").exists()
    again = evaluate(pred, labels, "--out", out, "--workers", 1, "--no-figures", "--resume")
    assert_clean(again, 0)
    assert "taken from the interrupted run" not in again.output


def test_report_files_follow_the_umask(tmp_path):
    pred, labels = write_float_folder(tmp_path)
    out = tmp_path / "out"
    old = os.umask(0o022)
    try:
        assert_clean(evaluate(pred, labels, "--out", out, "--workers", 1,
                              "--max-case-figures", 1), 0)
    finally:
        os.umask(old)
    for name in ("per_image.csv", "summary.csv", "stats.npz", "run.json", "problems.csv"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o644, name


# ------------------------------------------------------------ exit statuses
@pytest.mark.parametrize("fault", ["missing_prediction", "missing_label", "missing_mask"])
def test_strict_exits_1_for_anything_unpaired(tmp_path, fault):
    pred, labels = write_float_folder(tmp_path)
    masks = tmp_path / "masks"
    for i in range(4):
        write_label(masks / f"case{i}.nii.gz", np.ones(SHAPE, dtype=np.uint8))
    {"missing_prediction": pred / "case1.nii.gz", "missing_label": labels / "case1.nii.gz",
     "missing_mask": masks / "case1.nii.gz"}[fault].unlink()
    out = tmp_path / "out"
    result = evaluate(pred, labels, "--out", out, "--workers", 1, "--no-figures", "--strict",
                      "--mask-dir", masks)
    assert_clean(result, 1)
    run = json.loads((out / "run.json").read_text())
    assert run["cases_skipped"] == 1 and run["cases_ok"] == 3
    lenient = evaluate(pred, labels, "--out", tmp_path / "o2", "--workers", 1, "--no-figures",
                       "--mask-dir", masks)
    assert_clean(lenient, 0)


def test_nothing_evaluated_does_not_point_at_results(tmp_path):
    pred, labels = write_float_folder(tmp_path, ("float32",))
    write_nifti(pred / "case0.nii.gz", np.full((*SHAPE, 3), 7.0, dtype=np.float32))
    result = evaluate(pred, labels, "--out", tmp_path / "out", "--workers", 1)
    assert_clean(result, 1)
    assert "results in" not in result.output


@pytest.mark.parametrize(("args", "expected"), [
    (["--classes", "liver,tumour"], "classes"),
    (["--regions", "WT=1,2;;TC"], "regions"),
    (["--region-preset", "brats2021"], "softmax"),
    (["--npz-key", "probs"], "npz-key"),
    (["--bins", "10000"], "--no-figures"),
    (["--pattern", "/etc/*"], "pattern"),
    (["--scale", "1/0"], "scale"),
])
def test_usage_errors_exit_2_once_before_any_case(tmp_path, args, expected):
    pred, labels = write_float_folder(tmp_path)
    out = tmp_path / "out"
    result = evaluate(pred, labels, "--out", out, "--workers", 1, *args)
    assert_clean(result, 2)
    assert expected in result.output
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1
    assert not (out / "per_image.csv").exists()


def test_scale_fraction_and_version(tmp_path):
    assert runner.invoke(app, ["--version"]).exit_code == 0
    assert runner.invoke(app, ["--version"]).output.strip()


# ------------------------------------------------------------ output folders
def test_out_below_a_file_or_read_only_is_one_line(tmp_path):
    pred, labels = write_float_folder(tmp_path)
    (tmp_path / "file").write_text("x")
    result = evaluate(pred, labels, "--out", tmp_path / "file" / "out", "--workers", 1)
    assert_clean(result, 2)
    assert "file" in result.output


def test_read_only_out_as_unprivileged_user(tmp_path):
    if os.geteuid() != 0 and not hasattr(os, "setuid"):
        pytest.skip("cannot switch user on this platform")
    pred, labels = write_float_folder(tmp_path)
    out = tmp_path / "ro"
    out.mkdir()
    for path in (tmp_path, pred, labels, *pred.iterdir(), *labels.iterdir()):
        path.chmod(path.stat().st_mode | 0o755 if path.is_dir() else 0o644)
    out.chmod(0o555)
    code = ("import sys; from calibviz.cli import app; sys.argv=['calibviz','evaluate',"
            f"{str(pred)!r},{str(labels)!r},'--out',{str(out)!r},'--workers','1']; app()")
    try:
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                user=65534 if os.geteuid() == 0 else None, timeout=300,
                                env={**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "nc"),
                                     "HOME": str(tmp_path)})
    except PermissionError:
        pytest.skip("cannot run as an unprivileged user here")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and str(out) in result.stderr


# ------------------------------------------------------------ process faults
def _cli(*args, env=None):
    return [sys.executable, "-m", "calibviz", *map(str, args)]


@pytest.mark.parametrize("workers", [1, 2])
def test_kill_parent_then_resume_equals_clean_run(tmp_path, workers):
    pred, labels = write_float_folder(tmp_path, ("float32",) * 6)
    clean, out = tmp_path / "clean", tmp_path / "out"
    subprocess.run(_cli("evaluate", pred, labels, "--out", clean, "--workers", 1,
                        "--no-figures", "--quiet"), check=True, timeout=300)
    process = subprocess.Popen(_cli("evaluate", pred, labels, "--out", out, "--workers",
                                    workers, "--no-figures", "--quiet"),
                               start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list((out / ".partial").glob("*.npz")):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    # every child of the killed parent exits by itself
    deadline = time.time() + 20
    while time.time() < deadline and _session_alive(process.pid):
        time.sleep(0.2)
    assert not _session_alive(process.pid), "workers outlived their parent"
    subprocess.run(_cli("evaluate", pred, labels, "--out", out, "--workers", workers,
                        "--no-figures", "--quiet", "--resume"), check=True, timeout=300)
    pd.testing.assert_frame_equal(rows(out), rows(clean))


def _session_alive(session: int) -> bool:
    result = subprocess.run(["ps", "-eo", "sid=,stat="], capture_output=True, text=True)
    return any(int(sid) == session and not stat_.startswith("Z")
               for sid, stat_ in (line.split() for line in result.stdout.splitlines()))


# ------------------------------------------------------------ names
def test_clashing_case_names_all_get_figures(tmp_path):
    pred, labels = tmp_path / "pred", tmp_path / "labels"
    for i, case in enumerate(("case 004", "case_004", "Case_004")):
        label, probs = make_case(SHAPE, 3, seed=i)
        write_label(labels / f"{case}.nii.gz", label)
        write_nifti(pred / f"{case}.nii.gz", np.moveaxis(probs, 0, -1))
    out = tmp_path / "out"
    result = evaluate(pred, labels, "--out", out, "--workers", 1, "--bootstrap", 0)
    assert_clean(result, 0)
    drawn = sorted(p.name for p in (out / "figures" / "cases").iterdir())
    # cases in discovery order (sorted ids): Case_004, "case 004", case_004
    assert drawn == ["Case_004.png", "case_004-2.png", "case_004-3.png"]


def test_hostile_names_are_printed_literally(tmp_path):
    pred, labels = tmp_path / "p[", tmp_path / "labels"
    label, probs = make_case(SHAPE, 3, seed=0)
    for case in ("x]", "good", "ansi\x1b[31mred"):
        write_label(labels / f"{case}.nii.gz", label)
    write_nifti(pred / "good.nii.gz", np.moveaxis(probs, 0, -1))
    write_nifti(pred / "x].nii.gz", np.full((*SHAPE, 3), 5.0, dtype=np.float32))
    write_nifti(pred / "ansi\x1b[31mred.nii.gz", np.full((*SHAPE, 3), 5.0, dtype=np.float32))
    result = evaluate(pred, labels, "--out", tmp_path / "out", "--workers", 1, "--no-figures",
                      "--bootstrap", 0)
    assert_clean(result, 0)
    assert "\x1b[31m" not in result.output and "\\x1b[31m" in result.output
    assert "p[/x].nii.gz" in result.output  # a rich markup lookalike, printed as is


def test_unwritable_partial_store_is_one_line(tmp_path, monkeypatch):
    from calibviz import store

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(store.PartialStore, "save", refuse)
    pred, labels = write_float_folder(tmp_path)
    result = evaluate(pred, labels, "--out", tmp_path / "out", "--workers", 1)
    assert_clean(result, 2)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("error: cannot save finished cases") and "denied" in lines[-1]


def test_bootstrap_too_big_for_the_classes_stops_at_the_first_case(tmp_path):
    """The summary's intervals keep every resample of every class: a run whose classes
    make that too big is refused once the first case shows its classes, not after all."""
    n_classes, rng = 460, np.random.default_rng(0)
    pred, labels = tmp_path / "pred", tmp_path / "labels"
    for i in range(3):
        probs = rng.dirichlet(np.ones(n_classes), size=(4, 3, 2)).astype(np.float32)
        write_nifti(pred / f"case{i}.nii.gz", probs)
        write_nifti(labels / f"case{i}.nii.gz", rng.integers(0, n_classes, (4, 3, 2)),
                    dtype=np.int16)
    out = tmp_path / "out"
    result = evaluate(pred, labels, "--out", out, "--workers", 1, "--no-figures",
                      "--bootstrap", 100000)
    assert_clean(result, 2)
    assert "--bootstrap" in result.output and "459 classes" in result.output
    assert not (out / "per_image.csv").exists()
    assert "1/3" not in result.output  # stopped at the first case
    ok = evaluate(pred, labels, "--out", out, "--workers", 1, "--no-figures",
                  "--bootstrap", 1000)
    assert_clean(ok, 0)


def test_scale_that_a_later_file_ignores_is_that_cases_warning(tmp_path):
    """--scale is checked against the first prediction before any case; a later map stored
    as floats, or as integers with their own scl_slope, is decoded as stored (its numbers
    are those of a run without --scale) and the run says so for that case."""
    pred, labels = write_float_folder(tmp_path, ("uint8", "float32", "uint16-slope",
                                                 "uint8-slope"))
    out = tmp_path / "out"
    assert_clean(evaluate(pred, labels, "--out", out, "--workers", 1, "--no-figures",
                          "--scale", "1/255", "--bootstrap", 0), 0)
    problems = pd.read_csv(out / "problems.csv")
    ignored = problems[problems["message"].str.contains("--scale")]
    assert sorted(ignored["case"]) == ["case1", "case2"]
    assert (ignored["severity"] == "warning").all()
    assert ignored["message"].str.contains("float32").any()
    assert ignored["message"].str.contains("scl_slope").any()
    alone = tmp_path / "alone"
    assert_clean(evaluate(pred, labels, "--out", alone, "--workers", 1, "--no-figures",
                          "--pattern", "case[123]*", "--bootstrap", 0), 0)
    pd.testing.assert_frame_equal(rows(out).loc[["case1", "case2", "case3"]], rows(alone))


def test_ignore_label_of_a_scored_class_is_one_usage_error(tmp_path):
    """The ignore label conflicts with the classes of every case alike: the run stops at
    the first case with one line (exit 2), not one 'skipped case' per case."""
    pred, labels = write_float_folder(tmp_path)
    out = tmp_path / "out"
    result = evaluate(pred, labels, "--out", out, "--workers", 1, "--no-figures",
                      "--ignore-label", 1)
    assert_clean(result, 2)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert "cannot be both ignored and scored" in " ".join(result.output.split())
    assert not any("skipped case" in line for line in lines)
    assert not (out / "per_image.csv").exists()


@pytest.mark.parametrize("flag", [[], ["--overwrite"], ["--resume"]])
def test_a_second_run_into_a_folder_being_written_is_refused(tmp_path, flag):
    """Two runs writing one folder (a job submitted twice) would mix their cases and
    outputs: while one holds the folder, another is one usage error, whatever its flags."""
    import fcntl

    pred, labels = write_float_folder(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    held = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as the running one holds it
        result = evaluate(pred, labels, "--out", out, "--workers", 1, "--no-figures", *flag)
        assert_clean(result, 2)
        assert f"another calibviz run is writing to {out}" in " ".join(result.output.split())
        assert list(out.iterdir()) == []
    finally:
        os.close(held)
    assert_clean(evaluate(pred, labels, "--out", out, "--workers", 1, "--no-figures"), 0)


def test_interrupted_run_is_refused_by_readers_until_resumed(tmp_path):
    """A run killed after its CSVs and stats.npz but before run.json (``.partial/`` still
    there, no run.json) is no finished run: report, plot, compare, sweep and load_results
    say so in one line and point at --resume; resuming makes it readable."""
    from calibviz import save_results
    from calibviz.store import PARTIAL_DIR

    pred, labels = write_float_folder(tmp_path)
    out, other = tmp_path / "out", tmp_path / "other"
    assert_clean(evaluate(pred, labels, "--out", other, "--workers", 1, "--no-figures"), 0)
    assert_clean(evaluate(pred, labels, "--out", out, "--workers", 1, "--no-figures"), 0)
    (out / "saved-partial").rename(out / PARTIAL_DIR)  # killed before run.json was written
    for name in ("run.json", "problems.csv"):
        (out / name).unlink(missing_ok=True)
    assert (out / "stats.npz").is_file() and (out / "per_image.csv").is_file()
    said = f"{out} holds an interrupted run"
    for command in (["report", out], ["plot", out], ["compare", other, out],
                    ["compare", out, other], ["sweep", out, "--bins", "5"],
                    ["report", other, "--compare", out]):
        result = runner.invoke(app, list(map(str, command)))
        assert_clean(result, 2)
        line = result.output.strip()
        assert said in line and "--resume" in line and len(line.splitlines()) == 1, line
    for path in (out, out / "stats.npz"):
        with pytest.raises(ValueError, match="holds an interrupted run.*--resume"):
            load_results(path)
    (out / "stats.npz").unlink()  # killed even earlier: per_image.csv only
    for command in (["report", out], ["compare", other, out]):
        assert said in runner.invoke(app, list(map(str, command))).output
    # finished: readable again; a stats.npz saved by the library alone is unaffected
    assert_clean(evaluate(pred, labels, "--out", out, "--workers", 1, "--no-figures",
                          "--resume"), 0)
    assert_clean(runner.invoke(app, ["report", str(out)]), 0)
    alone = tmp_path / "alone"
    alone.mkdir()
    save_results(alone / "stats.npz", load_results(out))
    assert load_results(alone).cases == load_results(out).cases
