"""Dataset scale: cases/s and MB/s of ``evaluate`` with the local pool (1 and 2 workers) and a
2-worker Dask ``LocalCluster``, next to the bare read rate of the same files, in total and in
the steady state (after the workers' start); then where case figures are drawn faster.

Run: ``python benchmarks/bench_scale.py`` (``--cases 40 --shape 192,192,96``, a few minutes
on 2 cores; ``--quick`` for 16 cases of 64x64x32). The folder (4-class smooth softmax maps as
``.nii.gz``) is generated once into ``~/.cache/calibviz-bench/scale``.

* "API" rows: :func:`calibviz.run.run_evaluation` (``figures=False``: discovery, the partial
  store, the reports) from this process, whose imports and compiled kernels are warm; the
  pool's workers and a fresh LocalCluster's workers start cold (imports, kernel cache) inside
  the timed run. The LocalCluster is the one ``--scheduler local:2`` starts
  (:func:`calibviz.dask_backend.connect`), started before the timed runs. "steady" is the
  rate after the first ``max(4, n/10)`` cases.
* "CLI" rows: ``calibviz evaluate --no-figures`` in a fresh process, what a user waits for
  (interpreter start and imports included; ``--scheduler local:2`` also starts its cluster).

MB are the stored voxels (prediction float32 + label uint8) per second; CPU and peak memory
are those of this process and all its children together (CPU per case; the LocalCluster's
idle workers are counted in the API rows that use it; the CLI rows count the command's
processes only), sampled every 50 ms. As the 1-worker run
already uses both cores part of the time (the kernel's 2 threads, channels read ahead), the
summary also compares the rates with "2 cores' worth" of its CPU per case.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's calibviz, not an installed one
os.environ["PYTHONPATH"] = os.pathsep.join(  # ...in the pool's and the cluster's workers too
    [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])

from calibviz.options import EvalOptions  # noqa: E402
from calibviz.run import run_evaluation  # noqa: E402

CACHE = Path.home() / ".cache" / "calibviz-bench" / "scale"
N_CLASSES = 4
DISTINCT = 16  # cases generated; the others are hard links to them
CSVS = ("per_image.csv", "summary.csv")


# ------------------------------------------------------------------------- the folder
def _upsample(coarse: np.ndarray, shape) -> np.ndarray:
    """Trilinear upsampling of a coarse grid to ``shape`` (separable, float32)."""
    out = coarse
    for axis, size in enumerate(shape):
        n = coarse.shape[axis]
        pos = np.linspace(0, n - 1, size)
        low = np.minimum(np.floor(pos).astype(int), n - 2)
        weights = np.zeros((size, n), np.float32)
        weights[np.arange(size), low] = 1 - (pos - low)
        weights[np.arange(size), low + 1] = pos - low
        out = np.moveaxis(np.tensordot(weights, out, axes=([1], [axis])), 0, axis)
    return out


def smooth_case(shape, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels ``shape`` uint8 and smooth softmax probabilities ``(i, j, k, C)`` float32."""
    rng = np.random.default_rng(seed)
    coarse = tuple(max(2, s // 8) for s in shape)
    field = np.stack([_upsample(rng.normal(size=coarse).astype(np.float32), shape)
                      for _ in range(N_CLASSES)], axis=-1)
    noise = np.stack([_upsample(rng.normal(scale=0.6, size=coarse).astype(np.float32), shape)
                      for _ in range(N_CLASSES)], axis=-1)
    labels = np.argmax(field + noise, axis=-1).astype(np.uint8)
    logits = 3.0 * field
    logits -= logits.max(axis=-1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=-1, keepdims=True)
    return labels, probs


def _save(path: Path, array: np.ndarray) -> None:
    import nibabel as nib
    from isal import igzip

    image = nib.Nifti1Image(array, np.eye(4))
    image.header.set_data_dtype(array.dtype)
    path.write_bytes(igzip.compress(image.to_bytes(), compresslevel=1))


def dataset(n_cases: int, shape) -> tuple[Path, Path]:
    """``pred/`` and ``labels/`` of ``n_cases`` cases, generated once into the cache."""
    root = CACHE / f"{n_cases}x{'x'.join(map(str, shape))}"
    pred, labels = root / "pred", root / "labels"
    if (root / "complete").exists():
        return pred, labels
    start = time.perf_counter()
    pred.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    for index in range(n_cases):
        name = f"case_{index:03d}.nii.gz"
        for folder in (pred, labels):
            (folder / name).unlink(missing_ok=True)
        if index < DISTINCT:
            label, probs = smooth_case(shape, index)
            _save(labels / name, label)
            _save(pred / name, probs)
        else:
            source = f"case_{index % DISTINCT:03d}.nii.gz"
            os.link(pred / source, pred / name)
            os.link(labels / source, labels / name)
    (root / "complete").touch()
    print(f"  (generated {n_cases} cases into {root} in {time.perf_counter() - start:.0f} s)")
    return pred, labels


# ----------------------------------------------------------------------- measuring
class Usage:
    """Peak resident memory and CPU seconds of this process and its children (each child's
    CPU as last seen, so workers that exit during the run count too), sampled in a thread;
    ``children_only``: of the children alone (a command run in a process of its own)."""

    def __init__(self, interval: float = 0.05, children_only: bool = False) -> None:
        import psutil

        self.process, self.interval, self.peak = psutil.Process(), interval, 0
        self.children_only = children_only
        self._stop = threading.Event()
        self._cpu: dict[int, list[float]] = {}  # pid -> [first seen, last seen]

    @staticmethod
    def _seconds(proc) -> float:
        times = proc.cpu_times()
        return times.user + times.system

    def _sample(self, initial: bool = False) -> None:
        total = 0
        mine = [] if self.children_only else [self.process]
        for proc in [*mine, *self.process.children(recursive=True)]:
            with contextlib.suppress(Exception):  # exited meanwhile
                total += proc.memory_info().rss
                seconds = self._seconds(proc)
                first = seconds if initial else 0.0  # a child started since: all its CPU
                self._cpu.setdefault(proc.pid, [first, seconds])[1] = seconds
        self.peak = max(self.peak, total)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            time.sleep(self.interval)

    @property
    def cpu(self) -> float:
        return sum(last - first for first, last in self._cpu.values())

    def __enter__(self) -> Usage:
        self._sample(initial=True)  # what runs already: counted from now on
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


class Row:
    """One measured way of evaluating the folder: seconds, peak memory, steady rate."""

    def __init__(self, name: str, seconds: float, usage: Usage, n_cases: int,
                 stamps: list[float] | None = None) -> None:
        self.name, self.seconds, self.n = name, seconds, n_cases
        self.peak, self.cpu = usage.peak, usage.cpu
        self.rate = n_cases / seconds
        self.steady = None
        skip = max(4, n_cases // 10)
        if stamps and len(stamps) > skip + 1 and stamps[-1] > stamps[skip - 1]:
            self.steady = (len(stamps) - skip) / (stamps[-1] - stamps[skip - 1])

    def show(self, megabytes: float) -> None:
        steady = (f"  steady {self.steady:6.2f} cases/s {self.steady * megabytes:6.1f} MB/s"
                  if self.steady else "")
        print(f"  {self.name:<36} {self.seconds:6.2f} s {self.rate:6.2f} cases/s "
              f"{self.rate * megabytes:6.1f} MB/s{steady}  CPU {self.cpu / self.n:5.2f} s/case"
              f"  peak {self.peak / 2**20:5.0f} MiB")


def api_run(name: str, pred: Path, labels: Path, out: Path, n_cases: int, **how) -> Row:
    """``run_evaluation`` (no figures) into ``out``, timing each finished case."""
    stamps: list[float] = []
    with Usage() as memory:
        start = time.perf_counter()
        run_evaluation(pred, labels, out, EvalOptions(), figures=False, overwrite=True,
                       progress=lambda done, total: stamps.append(time.perf_counter()), **how)
        seconds = time.perf_counter() - start
    stamps = [t - start for t in stamps[1:]]  # the first call reports 0 done
    return Row(name, seconds, memory, n_cases, stamps)


def cli_run(name: str, pred: Path, labels: Path, out: Path, n_cases: int, *flags) -> Row:
    argv = [sys.executable, "-m", "calibviz", "evaluate", str(pred), str(labels), "--out",
            str(out), "--no-figures", "--quiet", "--overwrite", *flags]
    with Usage(children_only=True) as memory:
        start = time.perf_counter()
        subprocess.run(argv, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
    return Row(name, seconds, memory, n_cases)


def bare_read(pred: Path, labels: Path, n_cases: int) -> Row:
    import nibabel as nib

    with Usage() as memory:
        start = time.perf_counter()
        for path in sorted(pred.glob("*.nii.gz")):
            nib.load(path).get_fdata()
            nib.load(labels / path.name).get_fdata()
        seconds = time.perf_counter() - start
    return Row("bare read (nibabel get_fdata)", seconds, memory, n_cases)


def same_csvs(a: Path, b: Path) -> bool:
    return all((a / n).read_bytes() == (b / n).read_bytes() for n in CSVS)


def case_megabytes(shape) -> float:
    return int(np.prod(shape)) * (N_CLASSES * 4 + 1) / 1e6


# ------------------------------------------------------------------------- figures
def figure_bytes(case_id: str, stats, fmt: str) -> bytes:
    """On a worker: one case's figure, returned as the file's bytes."""
    from calibviz.viz.render import render_case_figure

    with tempfile.TemporaryDirectory() as folder:
        return render_case_figure(case_id, stats, Path(folder) / f"figure.{fmt}").read_bytes()


def figures_on_cluster(client, results, out: Path) -> None:
    from distributed import as_completed

    from calibviz.store import write_atomic
    from calibviz.viz.render import safe_name

    futures = {client.submit(figure_bytes, case, stats, "png", pure=False): case
               for case, stats in zip(results.cases, results.stats)}
    for future in as_completed(futures):
        write_atomic(out / f"{safe_name(futures[future])}.png", future.result())


def compare_figures(client, results, n_figures: int, root: Path) -> None:
    from calibviz.results import Results
    from calibviz.viz.render import render_figures

    many = Results(tuple(f"fig{i:03d}" for i in range(n_figures)),
                   tuple(results.stats[i % len(results)] for i in range(n_figures)),
                   results.options)
    print(f"== {n_figures} case figures (PNG), 2 processes each way ==")
    timings = {}
    for name, draw in (
        ("after the run, on the client", lambda: render_figures(
            many, root / "client", kind="case", max_cases=n_figures, workers=2)),
        ("on the Dask workers (PNG bytes)", lambda: figures_on_cluster(
            client, many, root / "cluster")),
    ):
        (root / "cluster").mkdir(exist_ok=True)
        with Usage() as memory:
            start = time.perf_counter()
            draw()
            timings[name] = time.perf_counter() - start
        print(f"  {name:<34} {timings[name]:7.2f} s  {n_figures / timings[name]:6.1f} "
              f"figures/s  peak {memory.peak / 2**20:6.0f} MiB")
    assert len(list((root / "cluster").glob("*.png"))) == n_figures
    client_s, cluster_s = timings.values()
    print(f"  workers / client time: {cluster_s / client_s:.2f}")


# ------------------------------------------------------------- the client's share
def echo(result):
    return result


def client_limits(client, results, pred: Path, labels: Path, root: Path) -> None:
    """What the client does per case, whatever the cluster's size: saving the finished case
    in the partial store (with its inputs' fingerprint), and one Dask task's round trip
    (submit, schedule, return a case's result) with the workers doing nothing."""
    from distributed import as_completed

    from calibviz.io import CaseResult
    from calibviz.store import PartialStore, input_fingerprint

    store = PartialStore(root)
    store.open({}, resume=False)
    start = time.perf_counter()
    for case, stats in zip(results.cases, results.stats):
        store.save(case, stats, [], input_fingerprint(
            [pred / f"{case}.nii.gz", labels / f"{case}.nii.gz"]))
    save = (time.perf_counter() - start) / len(results)
    payload = client.scatter(CaseResult(results.cases[0], results.stats[0], []),
                             broadcast=True)  # on the workers: only results travel back
    n_tasks = 400
    start = time.perf_counter()
    futures = [client.submit(echo, payload, pure=False) for _ in range(n_tasks)]
    for future in as_completed(futures):
        future.result()
    task = (time.perf_counter() - start) / n_tasks
    print(f"== the client's share per case ==\n  partial store save {save * 1e3:.1f} ms, "
          f"Dask round trip {task * 1e3:.1f} ms: the client saturates near "
          f"{1 / (save + task):.0f} cases/s")


# ---------------------------------------------------------------------------- main
def pool_rows(pred, labels, n_cases, out: Path) -> dict[str, Row]:
    rows = {f"pool{w}": api_run(f"API: local pool, {w} worker{'s' * (w > 1)}", pred, labels,
                                out / f"pool{w}", n_cases, workers=w) for w in (1, 2)}
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= 2:
        with one_core():
            rows["core1"] = api_run("API: 1 worker held to 1 core", pred, labels,
                                    out / "core1", n_cases, workers=1)
        assert same_csvs(out / "pool1", out / "core1"), "CSVs differ"
    return rows


@contextlib.contextmanager
def one_core():
    """This thread, and the threads it starts (the case threads, the kernel's), on one
    core: the scaling baseline (one worker already uses both cores when it may)."""
    cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cores)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, cores)


def cluster_rows(pred, labels, n_cases, out: Path, client) -> dict[str, Row]:
    rows = {run: api_run(f"API: LocalCluster(2), {run} workers", pred, labels,
                         out / f"cluster-{run}", n_cases, client=client)
            for run in ("fresh", "warm")}
    assert all(same_csvs(out / "pool1", out / name)
               for name in ("pool2", "cluster-fresh", "cluster-warm")), "CSVs differ"
    return rows


def cli_rows(pred, labels, n_cases, out: Path) -> dict[str, Row]:
    rows = {f"cli{w}": cli_run(f"CLI: --workers {w}", pred, labels, out / f"cli{w}", n_cases,
                               "--workers", str(w)) for w in (1, 2)}
    rows["cli-dask"] = cli_run("CLI: --scheduler local:2 (starts it)", pred, labels,
                               out / "cli-dask", n_cases, "--scheduler", "local:2")
    assert all(same_csvs(out / "pool1", out / n) for n in ("cli1", "cli2", "cli-dask"))
    return rows


def summary(rows: dict[str, Row], read: Row) -> None:
    def ratio(a: str, b: str, attr: str = "rate") -> str:
        x, y = getattr(rows[a], attr), getattr(rows[b], attr)
        return f"{x / y:.2f}" if x and y else "-"

    print(f"  2 workers / 1 (target >= 1.7): API {ratio('pool2', 'pool1')} total, "
          f"{ratio('pool2', 'pool1', 'steady')} steady"
          + (f"; CLI {ratio('cli2', 'cli1')}" if "cli1" in rows else ""))
    if "core1" in rows:
        print(f"  scaling with cores, 2 workers on 2 cores / 1 worker held to 1 core: API "
              f"{ratio('pool2', 'core1')} total, {ratio('pool2', 'core1', 'steady')} steady")
    print(f"  LocalCluster / pool of 2 (target >= 0.90): fresh {ratio('fresh', 'pool2')} "
          f"total, {ratio('fresh', 'pool2', 'steady')} steady; warm {ratio('warm', 'pool2')} "
          f"total, {ratio('warm', 'pool2', 'steady')} steady"
          + (f"; CLI {ratio('cli-dask', 'cli2')}" if "cli2" in rows else ""))
    print(f"  evaluate (1 worker) / bare read rate: {rows['pool1'].rate / read.rate:.2f}")
    one = rows["pool1"]
    bound = 2 * one.n / one.cpu  # both cores busy with the 1-worker run's CPU per case
    print(f"  2 cores' worth of the 1-worker run's CPU ({one.cpu / one.n:.2f} s/case): "
          f"{bound:.2f} cases/s; the 1-worker run reaches {one.rate / bound:.0%} of it, the "
          f"pool of 2 {rows['pool2'].rate / bound:.0%} ({(rows['pool2'].steady or 0) / bound:.0%}"
          " steady)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=40)
    parser.add_argument("--shape", default="192,192,96")
    parser.add_argument("--figures", type=int, default=100, help="0: skip the figures")
    parser.add_argument("--no-cli", action="store_true", help="skip the CLI rows")
    parser.add_argument("--quick", action="store_true", help="16 cases of 64x64x32")
    args = parser.parse_args(argv)
    n_cases, shape = args.cases, tuple(int(s) for s in args.shape.split(","))
    if args.quick:
        n_cases, shape, args.figures = 16, (64, 64, 32), min(args.figures, 40)
    from calibviz.dask_backend import connect
    from calibviz.run import evaluate_folder

    pred, labels = dataset(n_cases, shape)
    megabytes = case_megabytes(shape)
    print(f"== dataset scale: {n_cases} cases of {N_CLASSES} x {'x'.join(map(str, shape))} "
          f".nii.gz ({megabytes:.1f} MB of voxels each), {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.1f} ==")
    local = evaluate_folder(pred, labels, workers=1)  # compiled kernels and page cache warm
    read = bare_read(pred, labels, n_cases)
    read.show(megabytes)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        rows = pool_rows(pred, labels, n_cases, out)
        start = time.perf_counter()
        with connect("local:2") as client:  # the LocalCluster of --scheduler local:2
            started = time.perf_counter() - start
            rows.update(cluster_rows(pred, labels, n_cases, out, client))
            with tempfile.TemporaryDirectory() as store:
                client_limits(client, local, pred, labels, Path(store))
            if args.figures:
                with tempfile.TemporaryDirectory() as figures:
                    compare_figures(client, local, args.figures, Path(figures))
        if not args.no_cli:  # no idle cluster workers counted in their memory
            rows.update(cli_rows(pred, labels, n_cases, out))
    print(f"== {n_cases} cases: total and steady-state rates (LocalCluster start "
          f"{started:.1f} s, not in the API rows) ==")
    read.show(megabytes)
    for row in rows.values():
        row.show(megabytes)
    summary(rows, read)
    print(f"  (load at the end {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
