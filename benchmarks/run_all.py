"""Run every benchmark in one command: ``python benchmarks/run_all.py [--quick]``.

Each benchmark runs in its own process (clean peak-memory counters) and prints its own
ratios against a baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    args = parser.parse_args(argv)
    quick = args.quick
    runs = [
        ["bench_kernel.py", *(["--quick"] if quick else [])],
        ["bench_decompress.py", *(["--small"] if quick else [])],
        ["bench_io.py", *(["--small"] if quick else [])],
        ["bench_evaluate.py", *(["--quick"] if quick else [])],
        ["bench_plot.py"],
        ["bench_end_to_end.py", *(["--quick"] if quick else [])],
        ["bench_compare.py", *(["--quick"] if quick else [])],
        ["bench_roi_sweep.py", *(["--quick"] if quick else [])],
    ]
    if importlib.util.find_spec("distributed"):
        runs.append(["bench_scale.py", *(["--quick"] if quick else [])])
    else:
        print("(dask.distributed not installed: skipping bench_scale.py)")
    if importlib.util.find_spec("torch"):
        runs.append(["bench_losses.py", *(["--size", "48"] if quick else [])])
    else:
        print("(PyTorch not installed: skipping bench_losses.py)")
    failed = 0
    for script, *options in runs:
        print(f"\n##### {script} {' '.join(options)}", flush=True)
        failed += subprocess.call([sys.executable, str(HERE / script), *options]) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
