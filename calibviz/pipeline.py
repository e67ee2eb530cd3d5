"""Evaluating a folder end to end: cases in parallel worker processes, each finished case
saved at once (so Ctrl-C or a crash loses nothing and ``resume`` can continue), then the
reports and figures. The CLI is a thin layer over :func:`run_evaluation`."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from urllib.parse import quote, unquote

import numpy as np

from .aggregate import ABSENT_POLICIES
from .io import Case, CaseResult, EvalOptions, Problem, discover_cases, evaluate_case
from .results import Results, save_results
from .stats import BinStats

PARTIAL_DIR = ".partial"
RUN_OPTIONS = "options.json"
CSV_STYLES = ("tidy", "reference")


class UsageError(ValueError):
    """A problem with the command's arguments or output folder (exit status 2)."""


@dataclass
class RunReport:
    """What a run did: the results, the problems, timings (seconds) and files written."""

    results: Results
    problems: list[Problem]
    n_skipped: int
    n_resumed: int
    out_dir: Path
    files: list[Path] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    figures: dict | None = None


# ------------------------------------------------------------------ per-case store
def _case_file(partial: Path, case_id: str) -> Path:
    return partial / f"{quote(case_id, safe='')}.npz"


def save_case(partial: Path, result: CaseResult) -> None:
    """Store one finished case atomically (its BinStats and its warnings)."""
    arrays = result.stats.to_arrays()
    warnings = [asdict(p) for p in result.problems]
    arrays["problems_json"] = np.array(json.dumps(warnings))
    path = _case_file(partial, result.case_id)
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as handle:
        np.savez(handle, **arrays)
    os.replace(temporary, path)


def load_case(partial: Path, case_id: str) -> CaseResult | None:
    path = _case_file(partial, case_id)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        problems = [Problem(**p) for p in json.loads(str(arrays.pop("problems_json")))]
        return CaseResult(case_id, BinStats.from_arrays(arrays), problems)
    except (OSError, ValueError, KeyError):
        return None  # a damaged partial file: evaluate the case again


def saved_case_ids(partial: Path) -> list[str]:
    return [unquote(p.name[: -len(".npz")]) for p in partial.glob("*.npz")]


# ------------------------------------------------------------------------ options
def _binning_options(options: EvalOptions, pred_dir: Path, label_dir: Path) -> dict:
    """The options that change per-case numbers (what ``resume`` must find unchanged)."""
    data = asdict(options)
    data.pop("strict", None)
    data["pred_dir"] = str(pred_dir.resolve())
    data["label_dir"] = str(label_dir.resolve())
    return data


def _prepare_partial(out_dir: Path, wanted: dict, resume: bool) -> Path:
    partial = out_dir / PARTIAL_DIR
    stored_path = partial / RUN_OPTIONS
    if resume and stored_path.exists():
        stored = json.loads(stored_path.read_text())
        differences = [
            f"{key}: {stored.get(key)!r} then, {wanted.get(key)!r} now"
            for key in sorted(set(stored) | set(wanted))
            if stored.get(key) != wanted.get(key)
        ]
        if differences:
            raise UsageError(
                f"cannot resume the run in {out_dir}: options differ ("
                + "; ".join(differences) + "); rerun without --resume or with the same options"
            )
        return partial
    if partial.exists():
        for old in partial.glob("*.npz"):
            old.unlink()
    partial.mkdir(parents=True, exist_ok=True)
    stored_path.write_text(json.dumps(wanted, indent=2))
    return partial


# ------------------------------------------------------------------------ workers
def _init_worker(threads: int) -> None:
    """Worker set-up: share the cores between workers; leave Ctrl-C to the parent, which
    stops the run (a worker finishes its case quietly instead of printing a traceback)."""
    import signal

    import numba

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else (os.cpu_count() or 1))


#: Starting worker processes costs about 1.5 s (imports, compiled kernels from the cache);
#: with the automatic choice, processes are used only when the serial rest would take longer.
SPAWN_WORTH_SECONDS = 3.0


def evaluate_cases(
    cases: list[Case],
    options: EvalOptions,
    *,
    workers: int | None,
    on_result: Callable[[CaseResult], None],
) -> int:
    """Evaluate ``cases`` (in ``workers`` processes when > 1), calling ``on_result`` in this
    process as each one finishes, in completion order. ``workers=None`` chooses: the first
    case runs here, and the rest go to one process per core only if they would take more
    than :data:`SPAWN_WORTH_SECONDS` serially. Returns the number of processes used (1 = here).
    """
    if workers is None:
        if not cases:
            return 1
        start = time.perf_counter()
        on_result(evaluate_case(cases[0], options))
        cases = cases[1:]
        estimate = (time.perf_counter() - start) * len(cases)
        workers = default_workers() if estimate > SPAWN_WORTH_SECONDS else 1
    if workers <= 1 or len(cases) <= 1:
        for case in cases:
            on_result(evaluate_case(case, options))
        return 1
    threads = max(1, default_workers() // workers)
    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(cases)), mp_context=get_context("spawn"),
        initializer=_init_worker, initargs=(threads,),
    )
    pending = {pool.submit(evaluate_case, case, options): case for case in cases}
    try:
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                case = pending.pop(future)
                try:
                    result = future.result()
                except Exception as error:  # a crash in a worker is one skipped case
                    result = CaseResult(case.case_id, None, [Problem(
                        case.case_id, case.prediction_name,
                        f"case {case.case_id}: evaluation failed: "
                        f"{type(error).__name__}: {error}",
                    )])
                on_result(result)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return min(workers, len(cases))


# ------------------------------------------------------------------------- the run
def run_evaluation(
    pred_dir: str | os.PathLike,
    label_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    options: EvalOptions,
    *,
    workers: int | None = None,
    resume: bool = False,
    absent: str = "include",
    csv_style: str = "tidy",
    figures: bool = True,
    figure_format: str = "png",
    max_case_figures: int = 50,
    progress: Callable[[int, int], None] | None = None,
) -> RunReport:
    """Evaluate every case of ``pred_dir`` against ``label_dir`` and write the reports.

    Raises :class:`UsageError` for problems with the folders or options; problems with
    single cases are collected in the report (and ``problems.csv``), never raised.
    ``progress(done, total)`` is called after each case.
    """
    started = datetime.now(UTC)
    clock = time.perf_counter()
    pred_dir, label_dir, out_dir = Path(pred_dir), Path(label_dir), Path(out_dir)
    if absent not in ABSENT_POLICIES:
        raise UsageError(f"--absent must be one of {', '.join(ABSENT_POLICIES)}, got {absent!r}")
    if csv_style not in CSV_STYLES:
        raise UsageError(f"--csv-style must be one of {', '.join(CSV_STYLES)}, got {csv_style!r}")
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    try:
        cases, problems = discover_cases(pred_dir, label_dir, options)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"output path {out_dir} exists and is not a folder")
    partial = _prepare_partial(out_dir, _binning_options(options, pred_dir, label_dir), resume)

    finished: dict[str, CaseResult] = {}
    if resume:
        for case in cases:
            stored = load_case(partial, case.case_id)
            if stored is not None:
                finished[case.case_id] = stored
    n_resumed = len(finished)
    todo = [case for case in cases if case.case_id not in finished]
    failed: dict[str, CaseResult] = {}
    total = len(cases)
    if progress:
        progress(len(finished), total)

    def on_result(result: CaseResult) -> None:
        if result.ok:
            save_case(partial, result)
            finished[result.case_id] = result
        else:
            failed[result.case_id] = result
        if progress:
            progress(len(finished) + len(failed), total)

    used = evaluate_cases(todo, options, workers=workers, on_result=on_result)
    evaluated = time.perf_counter()

    ordered = [c.case_id for c in cases if c.case_id in finished]
    all_problems = list(problems)
    for case in cases:
        result = finished.get(case.case_id) or failed.get(case.case_id)
        if result is not None:
            all_problems.extend(result.problems)
    run_options = {
        **_binning_options(options, pred_dir, label_dir),
        "absent": absent, "workers": used, "csv_style": csv_style,
    }
    results = Results(
        cases=tuple(ordered),
        stats=tuple(finished[c].stats for c in ordered),
        options=run_options,
    )
    report = RunReport(
        results=results, problems=all_problems, n_skipped=len(failed), n_resumed=n_resumed,
        out_dir=out_dir,
    )
    report.files.extend(_write_reports(report, absent=absent, csv_style=csv_style))
    written = time.perf_counter()
    if figures and results.stats:
        try:
            report.figures = _draw_figures(
                results, out_dir / "figures", fmt=figure_format, max_cases=max_case_figures,
                absent=absent, workers=default_workers() if workers is None else workers,
            )
        except Exception as error:  # the numbers are written; a figure failure must not lose them
            report.problems.append(Problem(
                "", str(out_dir / "figures"),
                f"figures could not be drawn ({type(error).__name__}: {error}); the reports "
                "are complete, redraw with `calibviz plot`", severity="warning",
            ))
    drawn = time.perf_counter()
    report.files.append(_write_problems(report))
    report.timings = {
        "evaluate": evaluated - clock, "write": written - evaluated, "figures": drawn - written,
    }
    report.files.append(_write_run_json(report, started, options))
    return report


def _write_reports(report: RunReport, *, absent: str, csv_style: str) -> list[Path]:
    from .report import per_image_table, reference_tables, summary_table, write_csv

    out, results = report.out_dir, report.results
    files: list[Path] = []
    if not results.stats:
        return files
    files.append(save_results(out / "stats.npz", results))
    files.append(write_csv(out / "per_image.csv", per_image_table(results, absent=absent)))
    files.append(write_csv(out / "summary.csv", summary_table(results, absent=absent)))
    if csv_style == "reference":
        for name, table in reference_tables(results, absent=absent).items():
            files.append(write_csv(out / name, table))
    return files


def _write_problems(report: RunReport) -> Path:
    from .report import problems_table, write_csv

    return write_csv(report.out_dir / "problems.csv", problems_table(report.problems))


def _draw_figures(results: Results, folder: Path, *, fmt: str, max_cases: int, absent: str,
                  workers: int) -> dict:
    from .viz.render import render_figures

    return render_figures(
        results, folder, kind="both", fmt=fmt, max_cases=max_cases, absent=absent,
        workers=workers,
    )


def _write_run_json(report: RunReport, started: datetime, options: EvalOptions) -> Path:
    from importlib.metadata import PackageNotFoundError, version

    from .report import absent_count, write_json

    versions = {}
    for package in ("calibviz", "numpy", "numba", "nibabel", "pandas", "matplotlib", "scipy"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    versions["python"] = platform.python_version()
    errors = [p for p in report.problems if p.severity == "error"]
    warnings = [p for p in report.problems if p.severity == "warning"]
    data = {
        "options": report.results.options,
        "versions": versions,
        "started": started.isoformat(),
        "finished": datetime.now(UTC).isoformat(),
        "cases_ok": len(report.results),
        "cases_skipped": report.n_skipped,
        "cases_resumed": report.n_resumed,
        "absent_pairs": absent_count(report.results) if report.results.stats else 0,
        "classes": list(report.results.class_names),
        "timings_seconds": report.timings,
        "errors": [p.message for p in errors],
        "warnings": [p.message for p in warnings],
        "figures": _figure_summary(report.figures),
    }
    return write_json(report.out_dir / "run.json", data)


def _figure_summary(figures: dict | None):
    if figures is None:
        return None
    return {key: (str(value) if isinstance(value, Path) else value)
            for key, value in figures.items()
            if isinstance(value, int | str | float | Path | type(None))}
