"""End-to-end ``evaluate`` over a synthetic nnU-Net v2 folder: cases per second with 1 and 2
workers, the speed-up, and where the time goes (reading files, binning, writing reports).

Run: ``python benchmarks/bench_evaluate.py`` (``--quick`` for 12 small cases).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from calibviz import bin_image
from calibviz.options import EvalOptions
from calibviz.run import run_evaluation
from calibviz.synthetic import make_case, write_label, write_nnunet_v2


def write_folder(root: Path, n_cases: int, shape) -> tuple[Path, Path]:
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    cases = {}
    for index in range(n_cases):
        labels, probs = make_case(shape, 4, seed=index)
        write_label(root / "labels" / f"case_{index:03d}.nii.gz", labels, affine)
        cases[f"case_{index:03d}"] = (probs, affine)
    write_nnunet_v2(root / "pred", cases, {"background": 0, "a": 1, "b": 2, "c": 3})
    return root / "pred", root / "labels"


def time_parts(pred: Path, labels: Path, n_sample: int = 5) -> dict[str, float]:
    """Seconds per case spent reading (npz + label NIfTI, into (i, j, k) order) and binning
    (the kernel on the arrays in memory)."""
    import nibabel as nib

    read = binning = 0.0
    for npz in sorted(pred.glob("*.npz"))[:n_sample]:
        start = time.perf_counter()
        with np.load(npz) as data:
            probs = np.ascontiguousarray(data["probabilities"].transpose(0, 3, 2, 1))
        label = np.ascontiguousarray(nib.load(labels / f"{npz.stem}.nii.gz").dataobj)
        middle = time.perf_counter()
        bin_image(probs, label)
        binning += time.perf_counter() - middle
        read += middle - start
    return {"read": read / n_sample, "bin": binning / n_sample}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="12 cases of 48x48x32")
    parser.add_argument("--cases", type=int, default=50)
    args = parser.parse_args(argv)
    n_cases, shape = (12, (48, 48, 32)) if args.quick else (args.cases, (128, 128, 64))
    root = Path(tempfile.mkdtemp(prefix="calibviz-bench-"))
    try:
        pred, labels = write_folder(root, n_cases, shape)
        print(f"== evaluate end to end: {n_cases} cases, 4 classes, "
              f"{'x'.join(map(str, shape))} float32 nnU-Net v2 npz ==")
        run_evaluation(pred, labels, root / "warm", EvalOptions(), workers=1, figures=False)
        rates = {}
        for workers in (1, 2):
            start = time.perf_counter()
            report = run_evaluation(pred, labels, root / f"out{workers}", EvalOptions(),
                                    workers=workers, figures=False)
            elapsed = time.perf_counter() - start
            rates[workers] = n_cases / elapsed
            print(f"  {workers} worker{'s' if workers > 1 else ' '}   {elapsed:7.2f} s   "
                  f"{rates[workers]:6.2f} cases/s   (evaluate {report.timings['evaluate']:.2f} s,"
                  f" write reports {report.timings['write']:.2f} s)")
        print(f"  speed-up with 2 workers   {rates[2] / rates[1]:.2f}x")
        parts = time_parts(pred, labels)
        write = report.timings["write"] / n_cases
        total = parts["read"] + parts["bin"] + write
        print(f"  per case: read {parts['read'] * 1e3:.0f} ms ({parts['read'] / total:.0%}), "
              f"bin {parts['bin'] * 1e3:.0f} ms ({parts['bin'] / total:.0%}), "
              f"write {write * 1e3:.1f} ms ({write / total:.0%})")
        figures_start = time.perf_counter()
        run_evaluation(pred, labels, root / "fig", EvalOptions(), workers=2, figures=True,
                       max_case_figures=10)
        print(f"  with figures (dataset + 10 case figures, 2 workers): "
              f"{time.perf_counter() - figures_start:.2f} s")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
