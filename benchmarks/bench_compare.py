"""``compare`` of two runs: 1,000 images × 15 classes × 20 bins, 10,000 bootstrap resamples,
micro intervals included. Prints the time (target < 10 s on 2 cores), the peak memory and the
speed-up of the vectorised resampling over a per-resample Python loop measured in the same run.

Run: ``python benchmarks/bench_compare.py`` (``--quick``: 200 images, 2,000 resamples).
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

import numpy as np

from calibviz import BinStats, bin_edges, micro_metrics
from calibviz.bootstrap import SumArrays, bootstrap_samples
from calibviz.comparison import compare_runs
from calibviz.run_values import RunValues


def synthetic_run(n_images: int, n_classes: int, n_bins: int, *, shrink: float,
                  seed: int) -> list[BinStats]:
    """Per-image BinStats with random sums (no voxels): counts per bin, confidences inside
    each bin, frequencies pulled towards the confidence by ``shrink`` (1 = calibrated)."""
    rng = np.random.default_rng(seed)
    edges = bin_edges(n_bins)
    centres = 0.5 * (edges[:-1] + edges[1:])
    names = tuple(f"class{c}" for c in range(n_classes))
    out = []
    for _ in range(n_images):
        count = rng.poisson(200, size=(n_classes, n_bins)).astype(np.int64)
        count[:, rng.integers(0, n_bins, size=2)] = 0  # some empty bins
        p_bar = np.clip(centres + rng.uniform(-0.02, 0.02, (n_classes, n_bins)), 0, 1)
        y_bar = np.clip(0.5 + shrink * (p_bar - 0.5) + rng.normal(0, 0.03, p_bar.shape), 0, 1)
        sum_y = np.round(y_bar * count)
        positives = sum_y.sum(axis=1).astype(np.int64)
        total = count.sum(axis=1)
        tp = (positives * 0.8).astype(np.int64)
        out.append(BinStats(
            count=count, sum_p=p_bar * count, sum_y=sum_y, sum_p2=p_bar**2 * count,
            sum_py=p_bar * sum_y, tp=tp, fn=positives - tp, fp=(positives * 0.1).astype(np.int64),
            tn=total - positives - (positives * 0.1).astype(np.int64), edges=edges,
            class_names=names,
        ))
    return out


def naive_resamples(base, model, n_resamples: int, seed: int = 0) -> float:
    """Seconds per resample of the plain approach: a Python loop per resample that draws
    images, pools their BinStats (``micro_metrics``) and takes the mean differences."""
    rng = np.random.default_rng(seed)
    n = len(base)
    base_ace = np.stack([s.count[:, 0] for s in base])  # stand-in per-image values
    model_ace = np.stack([s.count[:, 0] for s in model])
    start = time.perf_counter()
    for _ in range(n_resamples):
        drawn = (rng.random(n) * n).astype(np.int64)
        np.nanmean(model_ace[drawn] - base_ace[drawn], axis=0)
        micro_metrics([base[i] for i in drawn])
        micro_metrics([model[i] for i in drawn])
    return (time.perf_counter() - start) / n_resamples


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 images, 2,000 resamples")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--classes", type=int, default=15)
    parser.add_argument("--bootstrap", type=int, default=10000)
    args = parser.parse_args(argv)
    n_images, n_boot = (200, 2000) if args.quick else (args.images, args.bootstrap)
    n_classes, n_bins = args.classes, 20
    print(f"== compare: 2 runs x {n_images} images x {n_classes} classes x {n_bins} bins, "
          f"{n_boot} bootstrap resamples (macro and micro) ==")
    start = time.perf_counter()
    base = synthetic_run(n_images, n_classes, n_bins, shrink=0.6, seed=1)
    model = synthetic_run(n_images, n_classes, n_bins, shrink=0.9, seed=2)
    cases = [f"case_{i:04d}" for i in range(n_images)]
    print(f"  building synthetic BinStats          {time.perf_counter() - start:6.2f} s "
          "(not part of compare)")
    runs = (RunValues.from_stats("base", cases, base), RunValues.from_stats("model", cases, model))

    compare_runs(*runs, n_bootstrap=10)  # warm-up (imports, first calls)
    start, cpu = time.perf_counter(), time.process_time()
    result = compare_runs(*runs, n_bootstrap=n_boot)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    tracemalloc.start()  # a second run for memory: tracing slows every allocation
    compare_runs(*runs, n_bootstrap=n_boot)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"  compare_runs (table + micro)        {elapsed:6.2f} s   (CPU {cpu:.2f} s)   "
          f"{'within' if elapsed < 10 else 'OVER'} the 10 s target   "
          f"[{len(result.table)} rows, {len(result.micro)} micro rows]")
    print(f"  peak traced memory of compare_runs  {peak / 2**20:6.1f} MiB   "
          f"(process max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}"
          " MiB)")

    # where the time goes: the shared resampling pass (mean differences + micro sums)
    differences = np.concatenate(
        [runs[1].values[m] - runs[0].values[m] for m in runs[0].values], axis=1)
    stacks = [SumArrays.stack(base), SumArrays.stack(model)]
    start = time.perf_counter()
    bootstrap_samples(n_boot, 0, values=differences, stacks=stacks)
    resampling = time.perf_counter() - start
    print(f"  of which: bootstrap pass (macro + micro) {resampling:.2f} s, "
          f"tests, tables and the rest {max(elapsed - resampling, 0):.2f} s")

    n_naive = 20
    per_resample = naive_resamples(base, model, n_naive)
    vectorised = resampling / n_boot
    print(f"  naive per-resample loop (pool BinStats, {n_naive} resamples measured): "
          f"{per_resample * 1e3:.1f} ms/resample -> {per_resample * n_boot:.0f} s for "
          f"{n_boot} resamples")
    print(f"  vectorised: {vectorised * 1e3:.3f} ms/resample   speed-up "
          f"{per_resample / vectorised:.0f}x")


if __name__ == "__main__":
    main()
