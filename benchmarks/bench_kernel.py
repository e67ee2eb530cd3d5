"""Binning kernel vs a careful vectorised NumPy version (``floor(p·B)`` and five float64
bincounts per class) vs the read floor, and the compiled kernels' first-call cost.

Run: ``python benchmarks/bench_kernel.py`` (``--quick`` for smaller volumes). The maps are
smooth synthetic softmax outputs (most values near 0 or 1, as in real networks' maps), made
once into ``~/.cache/calibviz-bench``; uniform random values would flatter nothing real.
Prints, per volume: kernel time per image (all cores and 1 thread), the NumPy time, the
time to read the array once (``np.sum``), the ratios, and the peak resident memory above
the input arrays (VmHWM, reset before each run); for 16 × 256×256×160, also the binning of the
paper's published code (PyTorch, when installed) on the same arrays. The versions take
turns, round after round (best of 3 each), so the ratios hold under a drifting machine.
Then the first call of ``bin_image`` and of the ROI distance transform in a fresh process
with an empty Numba cache (cold: compiled) vs the same again (warm: loaded from that
cache), wall and CPU seconds.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's calibviz, not an installed one

from calibviz import bin_image  # noqa: E402


def reset_peak() -> None:
    """Reset the process's peak-RSS counter (Linux: write 5 to clear_refs)."""
    Path("/proc/self/clear_refs").write_text("5")


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status")


def measure(function, repeats: int) -> tuple[float, float]:
    """(best seconds, peak MiB above the RSS at the start)."""
    best, peak = np.inf, 0.0
    for _ in range(repeats):
        reset_peak()
        base = rss_kib("VmRSS")
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
        peak = max(peak, (rss_kib("VmHWM") - base) / 1024)
    return best, peak


def numpy_binning(probs: np.ndarray, labels: np.ndarray, n_bins: int) -> np.ndarray:
    """Careful vectorised NumPy: ``floor(p·B)`` (clipped to the last bin) and five float64
    bincounts per class."""
    out = np.zeros((probs.shape[0], 5, n_bins))
    for c in range(probs.shape[0]):
        p = probs[c].ravel()
        y = (labels.ravel() == c).astype(np.float64)
        index = np.minimum((p * n_bins).astype(np.intp), n_bins - 1)
        p = p.astype(np.float64)
        out[c, 0] = np.bincount(index, minlength=n_bins)
        out[c, 1] = np.bincount(index, weights=p, minlength=n_bins)
        out[c, 2] = np.bincount(index, weights=y, minlength=n_bins)
        out[c, 3] = np.bincount(index, weights=p * p, minlength=n_bins)
        out[c, 4] = np.bincount(index, weights=p * y, minlength=n_bins)
    return out


def reference_binning(probs: np.ndarray, onehot, n_bins: int):
    """The binning of the paper's published code (cai4cai/ACE-DLIRIS,
    ``hard_binned_calibration``), written here from its description for timing: per image and
    class, ``torch.bucketize`` against float32 edges ``linspace(0, 1 + eps, B + 1)[1:]``,
    then a ``scatter_add`` of ones (counts) and two ``scatter_reduce(..., "mean")`` (mean
    probability, mean one-hot outcome). ``onehot``: float32 tensor ``[1, C, N]`` made
    beforehand (the code takes one-hot targets; making them is not timed)."""
    import torch

    values = torch.from_numpy(probs).reshape(1, probs.shape[0], -1)
    edges = torch.linspace(0.0, 1.0 + torch.finfo(torch.float32).eps, n_bins + 1)[1:]
    out = torch.zeros(3, values.shape[1], n_bins)
    for c in range(values.shape[1]):
        index = torch.bucketize(values[0, c], edges)
        out[0, c] = torch.zeros(n_bins).scatter_add(0, index, torch.ones_like(values[0, c]))
        out[1, c] = torch.empty(n_bins).scatter_reduce(0, index, values[0, c], reduce="mean",
                                                       include_self=False)
        out[2, c] = torch.empty(n_bins).scatter_reduce(0, index, onehot[0, c], reduce="mean",
                                                       include_self=False)
    return out


def paper_binning(probs: np.ndarray, labels: np.ndarray):
    """The paper's reference binning on the same arrays as a function to time, or None
    when PyTorch is not installed (the one-hot targets are made here, untimed)."""
    try:
        import torch
    except ImportError:
        return None
    onehot = torch.nn.functional.one_hot(torch.from_numpy(labels.astype(np.int64)).ravel(),
                                         probs.shape[0]).T.float()[None].contiguous()
    return lambda: reference_binning(probs, onehot, 20)


CACHE = Path.home() / ".cache" / "calibviz-bench"


def make_volume(n_classes: int, shape: tuple[int, ...], seed: int = 0):
    """Smooth, realistic float32 softmax maps ``(C, *shape)`` and their uint8 argmax labels,
    written once into ``~/.cache/calibviz-bench``: smoothed low-resolution logits
    (``calibviz.synthetic.smooth``), repeated up to full size, smoothed again and
    sharpened, so most voxel–class values sit near 0 or 1 as in a trained network's output."""
    from calibviz.synthetic import smooth

    path = CACHE / f"kernel-{n_classes}x{'x'.join(map(str, shape))}-{seed}.npz"
    if path.exists():
        with np.load(path) as data:
            return data["probs"], data["labels"]
    rng = np.random.default_rng(seed)
    coarse = smooth(rng.normal(size=(n_classes, *(s // 8 for s in shape))), 3)
    coarse /= coarse.std(axis=(1, 2, 3), keepdims=True)
    probs = np.empty((n_classes, *shape), dtype=np.float32)
    for c in range(n_classes):
        field = coarse[c]
        for axis in range(3):
            field = np.repeat(field, 8, axis=axis)
        probs[c] = smooth(field.astype(np.float32), 4) * 6.0
    probs -= probs.max(axis=0, keepdims=True)
    np.exp(probs, out=probs)
    probs /= probs.sum(axis=0, keepdims=True)
    labels = probs.argmax(axis=0).astype(np.uint8)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, probs=probs, labels=labels)
    return probs, labels


def measure_in_turns(functions: dict, rounds: int) -> dict:
    """{name: (best seconds, peak MiB)}: each function once per round, in turn, so a drift of
    the machine's speed (this VM's varied by 20-30 % within minutes) reaches them all alike."""
    results = {name: (np.inf, 0.0) for name in functions}
    for _ in range(rounds):
        for name, function in functions.items():
            best, peak = measure(function, 1)
            results[name] = (min(results[name][0], best), max(results[name][1], peak))
    return results


def single_thread(function):
    """``function`` run with Numba held to one thread."""
    def call():
        n_threads = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            function()
        finally:
            numba.set_num_threads(n_threads)
    return call


def run(n_classes: int, shape: tuple[int, ...], repeats: int) -> dict:
    probs, labels = make_volume(n_classes, shape)
    bin_image(probs[:, :2, :2, :2].copy(), labels[:2, :2, :2].copy())  # compile
    bin_image(probs, labels)  # warm
    n_threads = numba.get_num_threads()
    functions = {
        "kernel": lambda: bin_image(probs, labels),
        "kernel_1": single_thread(lambda: bin_image(probs, labels)),
        "numpy": lambda: numpy_binning(probs, labels, 20),
        "floor": lambda: np.sum(probs),
    }
    reference_row = n_classes == 16 and shape == (256, 256, 160)  # the reference row
    paper = paper_binning(probs, labels) if reference_row else None
    if paper is not None:
        functions["paper"] = paper
    timed = measure_in_turns(functions, repeats)
    (kernel, kernel_mem), (kernel_1, _) = timed["kernel"], timed["kernel_1"]
    (reference, numpy_mem), (floor, _) = timed["numpy"], timed["floor"]
    check = bin_image(probs, labels)
    expected = numpy_binning(probs, labels, 20)
    # floor(p·B) puts a value on an interior edge one bin higher than the right-closed rule
    moved = np.abs(check.count - expected[:, 0]).sum()
    assert moved <= 1e-6 * probs.size, "kernel and NumPy disagree on counts"
    label = f"{n_classes} classes {'x'.join(map(str, shape))} smooth float32 softmax"
    print(f"\n{label}  ({probs.nbytes / 2**20:.0f} MiB of probabilities, {n_threads} threads)")
    print(f"  kernel, all cores      {kernel * 1e3:8.1f} ms   peak extra {kernel_mem:7.1f} MiB")
    print(f"  kernel, 1 thread       {kernel_1 * 1e3:8.1f} ms")
    print(f"  NumPy floor+5 bincounts    {reference * 1e3:8.1f} ms   peak extra "
          f"{numpy_mem:7.1f} MiB")
    print(f"  read floor (np.sum)    {floor * 1e3:8.1f} ms")
    print(f"  speed-up vs NumPy      {reference / kernel:8.1f}x")
    print(f"  kernel / read floor    {kernel / floor:8.2f}x")
    if reference_row and paper is None:
        print("  paper's reference (torch)  not run: PyTorch is not installed")
    elif reference_row:
        import torch

        print(f"  paper's reference (torch, {torch.get_num_threads()} threads) "
              f"{timed['paper'][0] * 1e3:8.1f} ms   speed-up {timed['paper'][0] / kernel:5.1f}x")
    return {"kernel": kernel, "numpy": reference, "floor": floor, "memory": kernel_mem}


#: Times the first calls of bin_image and squared_edt in a fresh process (wall, CPU seconds).
FIRST_CALLS = """
import time
import numpy as np
from calibviz import bin_image
from calibviz._edt import squared_edt
p = np.random.default_rng(0).dirichlet(np.ones(3), size=(6, 5, 4)).transpose(3, 0, 1, 2)
for name, call in (
    ("bin_image", lambda: bin_image(p.astype(np.float32), p.argmax(0).astype(np.uint8))),
    ("squared_edt", lambda: squared_edt(p[0] > 0.5, (1.0, 1.0, 2.0))),
):
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    print(name, time.perf_counter() - wall, time.process_time() - cpu)
"""


def first_calls(cache: str) -> dict:
    """{name: (wall, cpu)} of the first calls in a new process using Numba cache ``cache``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_CACHE_DIR": cache}
    done = subprocess.run([sys.executable, "-c", FIRST_CALLS], env=env, cwd=cache,
                          check=True, capture_output=True, text=True)
    return {name: (float(wall), float(cpu))
            for name, wall, cpu in (line.split() for line in done.stdout.splitlines())}


def compile_row() -> None:
    """First calls with an empty Numba cache (compiling) vs with that cache filled."""
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache:
        cold = first_calls(cache)
        warm = min((first_calls(cache) for _ in range(2)), key=lambda r: r["bin_image"][0])
    print("\nfirst call in a new process: empty Numba cache (cold) vs filled (warm)")
    for name in cold:
        (cw, cc), (ww, wc) = cold[name], warm[name]
        print(f"  {name:12s} cold {cw:6.2f} s wall {cc:6.2f} s CPU   warm {ww:6.2f} s wall "
              f"{wc:6.2f} s CPU   compile cost {cw - ww:6.2f} s wall {cc - wc:6.2f} s CPU")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller volumes, fewer repeats")
    args = parser.parse_args(argv)
    cases = [(4, (256, 256, 128)), (16, (128, 128, 80)), (16, (256, 256, 160))]
    if args.quick:
        cases = [(4, (128, 128, 64)), (16, (128, 128, 80))]
    print("== binning kernel (calibviz.bin_image) ==")
    for n_classes, shape in cases:
        run(n_classes, shape, repeats=2 if args.quick else 3)
    compile_row()


if __name__ == "__main__":
    main()
