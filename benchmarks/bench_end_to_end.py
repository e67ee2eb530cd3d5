"""What a user waits for, end to end, each row a ratio of two runs measured here:

* figures: ``evaluate`` with its default figures vs ``--no-figures`` on the demo (50 cases)
  (the figures are drawn by two low-priority worker processes started with the run);
* reading: ``evaluate --no-figures --workers 1`` on 8 MONAI-like ``.nii.gz`` cases
  (3 × 192×192×96 float32) vs ``nibabel.load(...).get_fdata()`` of the same files, and where
  the evaluation's time goes (imports, discovery and checks, the cases, the reports);
* first run: ``calibviz demo --no-figures`` with an empty Numba cache (fresh
  ``NUMBA_CACHE_DIR``) vs the same command again (warm).

Run: ``python benchmarks/bench_end_to_end.py`` (``--quick``: 12 demo cases, 96×96×48 volumes).
Data (smooth synthetic maps, ``calibviz.synthetic``) is written once into
``~/.cache/calibviz-bench``. Every command runs in its own process; the times are wall and
CPU seconds (user + system of the process and its workers, best of 2 or 3; the two commands
of the figures row take turns, so that a machine whose speed drifts weighs on both), the memory
the peak resident set of its largest process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's calibviz, not an installed one
CACHE = Path.home() / ".cache" / "calibviz-bench"
CLI = "from calibviz.cli import main; main()"
LOAD = ("import sys, nibabel; "
        "[nibabel.load(f).get_fdata() for f in sys.argv[1:]]")


#: Runs a command and prints the CPU seconds and peak RSS (KiB) of it and its workers.
WRAP = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
        "stdout=subprocess.DEVNULL); u = resource.getrusage(resource.RUSAGE_CHILDREN); "
        "print(u.ru_utime + u.ru_stime, u.ru_maxrss)")


def timed(argv: list[str], env: dict | None = None, repeats: int = 2) -> dict:
    """Best wall and CPU seconds of ``argv`` over ``repeats`` runs, and the peak RSS (MiB)
    of its largest process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    best = {"wall": np.inf, "cpu": np.inf, "peak": 0.0}
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", WRAP, *argv], env=env, check=True,
                              capture_output=True, text=True)
        wall = time.perf_counter() - start
        cpu, peak = done.stdout.split()
        best["wall"], best["cpu"] = min(best["wall"], wall), min(best["cpu"], float(cpu))
        best["peak"] = max(best["peak"], int(peak) / 1024)
    return best


def timed_pair(a: list[str], b: list[str], repeats: int = 3) -> tuple[dict, dict]:
    """:func:`timed` of ``a`` and ``b`` taking turns (a, b, a, b, ...): a machine whose
    speed drifts during the benchmark weighs on both alike."""
    best_a, best_b = timed(a, repeats=0), timed(b, repeats=0)
    for _ in range(repeats):
        for argv, best in ((a, best_a), (b, best_b)):
            one = timed(argv, repeats=1)
            best["wall"], best["cpu"] = min(best["wall"], one["wall"]), min(best["cpu"],
                                                                            one["cpu"])
            best["peak"] = max(best["peak"], one["peak"])
    return best_a, best_b


def row(name: str, a: dict, b: dict, a_name: str, b_name: str) -> None:
    print(f"  {name}")
    for label, r in ((a_name, a), (b_name, b)):
        print(f"    {label:34s} {r['wall']:7.2f} s wall  {r['cpu']:7.2f} s CPU  "
              f"peak {r['peak']:6.0f} MiB")
    print(f"    ratio                              {a['wall'] / b['wall']:7.2f}x wall "
          f"{a['cpu'] / b['cpu']:7.2f}x CPU")


def demo_data(n_cases: int) -> Path:
    from calibviz.demo import write_demo_dataset

    folder = CACHE / f"demo-{n_cases}"
    if not (folder / "done").exists():
        write_demo_dataset(folder, n_cases=n_cases)
        (folder / "done").write_text("ok")
    return folder


def monai_data(n_cases: int, shape) -> Path:
    from calibviz.synthetic import make_case, write_label, write_monai

    folder = CACHE / f"monai-{n_cases}x{'x'.join(map(str, shape))}"
    if not (folder / "done").exists():
        for index in range(n_cases):
            labels, probs = make_case(shape, 3, seed=index)
            write_monai(folder / "pred", f"case_{index:03d}", probs)
            write_label(folder / "labels" / f"case_{index:03d}.nii.gz", labels)
        (folder / "done").write_text("ok")
    return folder


def figures_row(n_cases: int, out: Path) -> None:
    demo = demo_data(n_cases)
    base = [sys.executable, "-c", CLI, "evaluate", str(demo / "nnunet_overconfident"),
            str(demo / "labels"), "--quiet", "--overwrite", "--out"]
    subprocess.run([*base, str(out / "warm"), "--no-figures"], check=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL)
    plain, figures = timed_pair([*base, str(out / "plain"), "--no-figures"],
                                [*base, str(out / "figures")])
    row(f"demo, {n_cases} cases: default evaluate (dataset + worst 12 case figures) vs "
        "--no-figures", figures, plain, "evaluate (figures)", "evaluate --no-figures")
    print(f"    figures add                        {figures['wall'] - plain['wall']:7.2f} s wall "
          f"{figures['cpu'] - plain['cpu']:7.2f} s CPU (target: at most 1.5x the wall time, "
          "on an idle machine)")


def reading_row(n_cases: int, shape, out: Path) -> None:
    data = monai_data(n_cases, shape)
    files = sorted(str(p) for p in (data / "pred").rglob("*.nii.gz"))
    files += sorted(str(p) for p in (data / "labels").glob("*.nii.gz"))
    evaluate = timed([sys.executable, "-c", CLI, "evaluate", str(data / "pred"),
                      str(data / "labels"), "--no-figures", "--workers", "1", "--quiet",
                      "--overwrite", "--out", str(out / "monai")])
    load = timed([sys.executable, "-c", LOAD, *files])
    row(f"{n_cases} MONAI .nii.gz cases, 3 x {'x'.join(map(str, shape))}: evaluate "
        "--no-figures --workers 1 vs nibabel get_fdata", evaluate, load,
        "evaluate --no-figures --workers 1", "nibabel.load().get_fdata()")
    phases(data, out)


#: ``evaluate --no-figures --workers 1`` in-process, printing when each phase ends: imports,
#: discovery and checks (the first progress call), the cases (the last), the reports.
PHASES = """
import json, os, sys, time
def stamp():
    t = os.times()
    return time.perf_counter(), t.user + t.system
marks = [("start", *stamp())]
from calibviz.cli import main
from calibviz.gctune import tune_this_process
tune_this_process()  # as the calibviz command does
from calibviz.options import EvalOptions
from calibviz.run import run_evaluation
marks.append(("imports", *stamp()))
n = []
def progress(done, total):
    if not n:
        marks.append(("discovery, checks", *stamp()))
    n.append(done)
    if done == total:
        marks.append(("cases", *stamp()))
run_evaluation(sys.argv[1], sys.argv[2], sys.argv[3], EvalOptions(), workers=1,
               figures=False, overwrite=True, progress=progress)
marks.append(("reports", *stamp()))
print(json.dumps(marks))
"""


def phases(data: Path, out: Path, repeats: int = 2) -> None:
    """Where ``evaluate --no-figures --workers 1`` spends its time (best of ``repeats``)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    best = None
    for _ in range(repeats):
        done = subprocess.run([sys.executable, "-c", PHASES, str(data / "pred"),
                               str(data / "labels"), str(out / "phases")], env=env,
                              check=True, capture_output=True, text=True)
        marks = json.loads(done.stdout.strip().splitlines()[-1])
        if best is None or marks[-1][1] - marks[0][1] < best[-1][1] - best[0][1]:
            best = marks
    parts = [f"{name} {wall - best[i][1]:.2f} s ({cpu - best[i][2]:.2f} CPU)"
             for i, (name, wall, cpu) in enumerate(best[1:])]
    print("    in-process phases: " + ", ".join(parts))


def first_run_row(out: Path) -> None:
    cache = Path(tempfile.mkdtemp(prefix="numba-cache-", dir=out))
    argv = [sys.executable, "-c", CLI, "demo", str(out / "demo"), "--no-figures", "--quiet"]
    cold = timed(argv, env={"NUMBA_CACHE_DIR": str(cache)}, repeats=1)
    warm = timed(argv, env={"NUMBA_CACHE_DIR": str(cache)})
    row("first run: calibviz demo --no-figures, empty Numba cache vs warm", cold, warm,
        "cold (fresh NUMBA_CACHE_DIR)", "warm")
    print(f"    first-run cost                     {cold['wall'] - warm['wall']:7.2f} s wall "
          f"{cold['cpu'] - warm['cpu']:7.2f} s CPU")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="12 demo cases, small volumes")
    parser.add_argument("--rows", default="figures,reading,first-run",
                        help="comma-separated rows to run (default: all)")
    args = parser.parse_args(argv)
    rows = set(args.rows.split(","))
    n_demo, shape = (12, (96, 96, 48)) if args.quick else (50, (192, 192, 96))
    print(f"== end to end ({os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}) ==")
    with tempfile.TemporaryDirectory(prefix="calibviz-e2e-") as folder:
        out = Path(folder)
        if "figures" in rows:
            figures_row(n_demo, out)
        if "reading" in rows:
            reading_row(8, shape, out)
        if "first-run" in rows:
            first_run_row(out)


if __name__ == "__main__":
    main()
