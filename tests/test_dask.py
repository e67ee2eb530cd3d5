"""Evaluating on a Dask cluster (issue 15): a real ``LocalCluster`` of two worker processes,
started and closed here; results equal a local run byte for byte, and faults (a killed
worker, a case raising on a worker, a corrupt file, an interrupted client) lose nothing."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from calibviz.cli import app
from calibviz.io import discover_cases, evaluate_case
from calibviz.options import EvalOptions
from calibviz.run import UsageError, evaluate_folder, run_evaluation
from calibviz.synthetic import make_case, write_label, write_nifti

runner = CliRunner()
SHAPE = (12, 10, 8)
CSVS = ("per_image.csv", "summary.csv", "problems.csv")


def write_folder(root: Path, n: int = 6) -> tuple[Path, Path]:
    pred, labels = root / "pred", root / "labels"
    for i in range(n):
        label, probs = make_case(SHAPE, 3, seed=i)
        write_label(labels / f"case{i}.nii.gz", label)
        write_nifti(pred / f"case{i}.nii.gz", np.moveaxis(probs, 0, -1))
    return pred, labels


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp("dask"))


@pytest.fixture(scope="module")
def local_run(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "out"
    run_evaluation(*folder, out, EvalOptions(), workers=1, figures=False)
    return out


def children() -> set[int]:
    """This process's descendants, except multiprocessing's resource tracker (started once
    with the first spawned process, it lives as long as this interpreter)."""
    psutil = pytest.importorskip("psutil")
    pids = set()
    for process in psutil.Process().children(recursive=True):
        try:
            if "resource_tracker" not in " ".join(process.cmdline()):
                pids.add(process.pid)
        except psutil.Error:  # exited meanwhile
            pass
    return pids


def assert_gone(pids: set[int], timeout: float = 20.0) -> None:
    """Every process in ``pids`` has exited (waiting up to ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while (left := pids & children()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"processes left behind: {sorted(left)}"


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    before = children()
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=":0")
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()
    assert_gone(children() - before)


def assert_same_outputs(out: Path, reference: Path) -> None:
    for name in CSVS:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    with np.load(out / "stats.npz") as a, np.load(reference / "stats.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            if key == "options_json":  # the run's metadata: workers differ
                options = [json.loads(str(f[key])) for f in (a, b)]
                assert [{**o, "workers": 0} for o in options] == [
                    {**options[1], "workers": 0}] * 2
            else:
                np.testing.assert_array_equal(a[key], b[key], err_msg=key)


# ------------------------------------------------------------------ same results
def test_cluster_run_equals_local_run(folder, local_run, client, tmp_path):
    report = run_evaluation(*folder, tmp_path / "out", EvalOptions(), client=client,
                            figures=False)
    assert report.results.options["workers"] == 2
    assert_same_outputs(tmp_path / "out", local_run)
    assert not (tmp_path / "out" / ".partial").exists()


def test_evaluate_folder_with_a_client(folder, client):
    local = evaluate_folder(*folder, workers=1)
    remote = evaluate_folder(*folder, client=client)
    assert remote.cases == local.cases == tuple(f"case{i}" for i in range(6))
    assert all(a.equals(b) for a, b in zip(remote.stats, local.stats, strict=True))
    assert remote.problems == local.problems


def test_cli_scheduler_local_starts_and_closes_its_cluster(folder, local_run, tmp_path):
    pytest.importorskip("distributed")
    before = children()
    result = runner.invoke(app, ["evaluate", *map(str, folder), "--out", str(tmp_path / "o"),
                                 "--scheduler", "local:2", "--no-figures", "--quiet"])
    assert result.exit_code == 0, result.output
    assert_same_outputs(tmp_path / "o", local_run)
    assert_gone(children() - before)


# ------------------------------------------------------------------------ faults
def test_corrupt_file_is_reported_with_its_message(folder, client, tmp_path):
    pred, labels = write_folder(tmp_path / "data", n=4)
    (pred / "case2.nii.gz").write_bytes(b"\x1f\x8b not a gzip stream at all")
    run_evaluation(pred, labels, tmp_path / "local", EvalOptions(), workers=1, figures=False)
    report = run_evaluation(pred, labels, tmp_path / "dask", EvalOptions(), client=client,
                            figures=False)
    assert report.results.skipped == ("case2",)
    assert "case case2:" in report.problems[0].message
    assert_same_outputs(tmp_path / "dask", tmp_path / "local")


def raise_on_case2(case, options):
    """Runs on a worker: a failure evaluate_case does not catch (a bug, not bad input)."""
    if case.case_id == "case2":
        raise RuntimeError("reader exploded")
    return evaluate_case(case, options)


def test_a_case_raising_on_a_worker_becomes_its_error(folder, client):
    from calibviz.dask_backend import evaluate_on_cluster

    cases, _ = discover_cases(*folder, EvalOptions())
    got = []
    used = evaluate_on_cluster(cases, EvalOptions(), client, got.append, function=raise_on_case2)
    assert used == 2 and sorted(r.case_id for r in got) == [c.case_id for c in cases]
    failed = next(r for r in got if r.case_id == "case2")
    assert not failed.ok
    assert failed.problems[0].message == ("case case2: evaluation failed on a Dask worker: "
                                          "RuntimeError: reader exploded")
    assert all(r.ok for r in got if r.case_id != "case2")


def slow_case(case, options):
    time.sleep(0.8)
    return evaluate_case(case, options)


def test_a_worker_killed_mid_case_loses_and_duplicates_nothing(folder, client):
    from calibviz.dask_backend import evaluate_on_cluster

    cases, _ = discover_cases(*folder, EvalOptions())
    expected = {c.case_id: evaluate_case(c, EvalOptions()).stats for c in cases}
    pids = client.run(os.getpid)
    got, killed = [], []

    def on_result(result):
        got.append(result)
        if len(got) == 2:  # the other cases are running or queued on both workers
            busy = [a for a, keys in client.processing().items() if keys and a in pids]
            os.kill(pids[busy[0]], signal.SIGKILL)
            killed.append(client.processing()[busy[0]])

    evaluate_on_cluster(cases, EvalOptions(), client, on_result, function=slow_case)
    assert killed and killed[0], "no case was running on the killed worker"
    assert sorted(r.case_id for r in got) == sorted(expected)  # each once
    assert all(r.ok and not r.problems for r in got)
    assert all(r.stats.equals(expected[r.case_id]) for r in got)
    client.wait_for_workers(2, timeout=60)  # the nanny restarted it


def always_die(case, options):
    if case.case_id == "case1":
        os._exit(1)
    return evaluate_case(case, options)


def test_a_case_that_kills_its_workers_is_reported(folder, client):
    from calibviz.dask_backend import evaluate_on_cluster

    cases, _ = discover_cases(*folder, EvalOptions())
    scheduler = client.cluster.scheduler
    allowed, scheduler.allowed_failures = scheduler.allowed_failures, 0
    got = []
    try:
        evaluate_on_cluster(cases[:2], EvalOptions(), client, got.append, function=always_die)
    finally:
        scheduler.allowed_failures = allowed
    assert [r.case_id for r in got] == ["case0", "case1"]
    assert got[0].ok and not got[1].ok
    assert got[1].problems[0].message.startswith(
        "case case1: the worker evaluating it died (KilledWorker:")
    client.wait_for_workers(2, timeout=60)


def test_interrupted_client_leaves_a_resumable_out(folder, local_run, client, tmp_path):
    out = tmp_path / "out"

    def progress(done, total):
        if done >= 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_evaluation(*folder, out, EvalOptions(), client=client, figures=False,
                       progress=progress)
    assert len(list((out / ".partial").glob("*.npz"))) >= 2
    assert not (out / "per_image.csv").exists()
    report = run_evaluation(*folder, out, EvalOptions(), client=client, figures=False,
                            resume=True)
    assert report.n_resumed >= 2
    assert_same_outputs(out, local_run)


# ------------------------------------------------------------------- usage errors
def test_scheduler_usage_errors(folder, tmp_path):
    with pytest.raises(UsageError, match="expected a scheduler address"):
        run_evaluation(*folder, tmp_path / "a", EvalOptions(), scheduler="local:0")
    with pytest.raises(UsageError, match="cannot be combined with --workers"):
        run_evaluation(*folder, tmp_path / "b", EvalOptions(), scheduler="local:2", workers=2)


def test_worker_processes_are_capped_per_core(folder, tmp_path):
    """local:1000 on two cores started ~1000 processes (100 GB) and evaluated nothing; the
    same cap holds for --workers and evaluate_folder(workers=...)."""
    from calibviz.loop import PROCESSES_PER_CORE, default_workers

    too_many = PROCESSES_PER_CORE * default_workers() + 1
    with pytest.raises(UsageError, match=f"--scheduler local:{too_many}: {too_many} worker "
                                         "processes for this machine's"):
        run_evaluation(*folder, tmp_path / "a", EvalOptions(), scheduler=f"local:{too_many}")
    with pytest.raises(UsageError, match=f"--workers {too_many}: .* use at most "
                                         f"{too_many - 1}"):
        run_evaluation(*folder, tmp_path / "b", EvalOptions(), workers=too_many)
    with pytest.raises(ValueError, match=f"workers={too_many}"):
        evaluate_folder(*folder, workers=too_many)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_client_that_is_not_one_is_named(folder):
    distributed = pytest.importorskip("distributed")
    with pytest.raises(TypeError, match="client must be a distributed.Client, got str .*"
                                        r"distributed.Client\(address\)"):
        evaluate_folder(*folder, client="tcp://127.0.0.1:1")
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                       dashboard_address=None)
    closed = distributed.Client(cluster)
    closed.close()
    cluster.close()
    with pytest.raises(ValueError, match="the Dask client is closed"):
        evaluate_folder(*folder, client=closed)


def test_scheduler_without_dask_says_how_to_install(folder, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed fails
    result = runner.invoke(app, ["evaluate", *map(str, folder), "--out", str(tmp_path / "o"),
                                 "--scheduler", "local:2"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: --scheduler needs dask.distributed: pip install 'calibviz[dask]'"]
    assert not (tmp_path / "o").exists()


def test_unreachable_scheduler_is_a_usage_error(folder, tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    import calibviz.dask_backend as backend

    monkeypatch.setattr(backend, "CONNECT_TIMEOUT", "2s")
    with pytest.raises(UsageError, match="cannot connect to the Dask scheduler"):
        run_evaluation(*folder, tmp_path / "c", EvalOptions(), scheduler="tcp://127.0.0.1:9")


def _settings(keys):
    import dask

    return {key: dask.config.get(key) for key in keys}


def test_local_scheduler_workers_run_with_less_monitoring():
    pytest.importorskip("distributed")
    from calibviz.dask_backend import LOCAL_CONFIG, connect

    with connect("local:1") as client:
        assert list(client.run(_settings, list(LOCAL_CONFIG)).values()) == [LOCAL_CONFIG]
        assert LOCAL_CONFIG["distributed.worker.profile.enabled"] is False
        if "MALLOC_TRIM_THRESHOLD_" not in os.environ:  # glibc's adaptive allocator kept
            assert list(client.run(os.environ.get, "MALLOC_TRIM_THRESHOLD_").values()) == [None]
