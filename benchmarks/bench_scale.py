"""Dataset scale: cases/s and MB/s of evaluating a folder with the local pool (1 and 2
workers) and a 2-worker Dask ``LocalCluster``, next to the bare read rate of the same files,
and where case figures are drawn faster (on the cluster's workers or on the client).

Run: ``python benchmarks/bench_scale.py`` (``--cases 60 --shape 128,128,64``; ``--quick`` for
16 cases of 64x64x32). The folder (4-class smooth softmax maps as ``.nii.gz``) is generated
once into ``~/.cache/calibviz-bench/scale``. MB are the stored voxels (prediction float32 +
label uint8) per second; peak memory is the resident memory of this process and all its
children together (client, pool or Dask workers), sampled every 50 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from calibviz.run import evaluate_folder

CACHE = Path.home() / ".cache" / "calibviz-bench" / "scale"
N_CLASSES = 4
DISTINCT = 16  # cases generated; the others are hard links to them (generation < 1 min)


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
class PeakMemory:
    """Peak resident memory of this process and its children, sampled in a thread."""

    def __init__(self, interval: float = 0.05) -> None:
        import psutil

        self.process, self.interval, self.peak = psutil.Process(), interval, 0
        self._stop = threading.Event()

    def _rss(self) -> int:
        total = 0
        for proc in [self.process, *self.process.children(recursive=True)]:
            with contextlib.suppress(Exception):  # exited meanwhile
                total += proc.memory_info().rss
        return total

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def measure(function) -> tuple[float, int, object]:
    """Seconds, peak memory (bytes) and the result of ``function()``."""
    with PeakMemory() as memory:
        start = time.perf_counter()
        result = function()
        elapsed = time.perf_counter() - start
    return elapsed, memory.peak, result


def bare_read(pred: Path, labels: Path) -> None:
    import nibabel as nib

    for path in sorted(pred.glob("*.nii.gz")):
        nib.load(path).get_fdata()
        nib.load(labels / path.name).get_fdata()


def case_megabytes(shape) -> float:
    voxels = int(np.prod(shape))
    return voxels * (N_CLASSES * 4 + 1) / 1e6


def line(name: str, seconds: float, n_cases: int, megabytes: float, peak: int,
         note: str = "") -> float:
    rate = n_cases / seconds
    print(f"  {name:<34} {seconds:7.2f} s  {rate:6.2f} cases/s  {rate * megabytes:7.1f} MB/s"
          f"  peak {peak / 2**20:6.0f} MiB{note}")
    return rate


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
    client_s, client_peak, _ = measure(lambda: render_figures(
        many, root / "client", kind="case", max_cases=n_figures, workers=2))
    (root / "cluster").mkdir()
    cluster_s, cluster_peak, _ = measure(lambda: figures_on_cluster(client, many,
                                                                    root / "cluster"))
    drawn = len(list((root / "cluster").glob("*.png")))
    assert drawn == n_figures, drawn
    for name, seconds, peak in (("after the run, on the client", client_s, client_peak),
                                ("on the Dask workers (PNG bytes)", cluster_s, cluster_peak)):
        print(f"  {name:<34} {seconds:7.2f} s  {n_figures / seconds:6.1f} figures/s"
              f"  peak {peak / 2**20:6.0f} MiB")
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
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=60)
    parser.add_argument("--shape", default="128,128,64")
    parser.add_argument("--figures", type=int, default=200, help="0: skip the figures")
    parser.add_argument("--quick", action="store_true", help="16 cases of 64x64x32")
    args = parser.parse_args(argv)
    n_cases, shape = args.cases, tuple(int(s) for s in args.shape.split(","))
    if args.quick:
        n_cases, shape, args.figures = 16, (64, 64, 32), min(args.figures, 40)
    from distributed import Client, LocalCluster

    pred, labels = dataset(n_cases, shape)
    megabytes = case_megabytes(shape)
    print(f"== dataset scale: {n_cases} cases of {N_CLASSES} x {'x'.join(map(str, shape))} "
          f".nii.gz ({megabytes:.1f} MB of voxels each), {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.1f} ==")
    evaluate_folder(pred, labels, workers=1)  # compiled kernels and page cache warm
    seconds, peak, _ = measure(lambda: bare_read(pred, labels))
    read = line("bare read (nibabel get_fdata)", seconds, n_cases, megabytes, peak)
    rates = {}
    for workers in (1, 2):
        seconds, peak, local = measure(lambda w=workers: evaluate_folder(pred, labels,
                                                                          workers=w))
        rates[workers] = line(f"local pool, {workers} worker{'s' * (workers > 1)}", seconds,
                              n_cases, megabytes, peak)
    start = time.perf_counter()
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=":0")
    client = Client(cluster)
    started = time.perf_counter() - start
    for run in ("fresh workers", "warm workers"):
        seconds, peak, remote = measure(lambda: evaluate_folder(pred, labels, client=client))
        rates[run] = line(f"LocalCluster(2), {run}", seconds, n_cases, megabytes, peak)
    assert all(a.equals(b) for a, b in zip(remote.stats, local.stats, strict=True))
    print(f"  LocalCluster start {started:.1f} s (not in the rates above)")
    print(f"  2 workers / 1: {rates[2] / rates[1]:.2f}x (target >= 1.7)   LocalCluster / "
          f"pool: {rates['fresh workers'] / rates[2]:.2f} fresh, "
          f"{rates['warm workers'] / rates[2]:.2f} warm (target >= 0.90)")
    print(f"  evaluate / bare read (1 worker): {rates[1] / read:.2f}")
    with tempfile.TemporaryDirectory() as folder:
        client_limits(client, local, pred, labels, Path(folder))
    if args.figures:
        with tempfile.TemporaryDirectory() as folder:
            compare_figures(client, local, args.figures, Path(folder))
    client.close()
    cluster.close()


if __name__ == "__main__":
    main()
