"""Evaluating a dataset: one folder loop for the library and the CLI.

One case is a pure function of its paths and options (:func:`calibviz.io.evaluate_case`);
:func:`evaluate_cases` runs cases here or in worker processes and hands each result back as
it finishes. :func:`evaluate_folder` (library) collects them into a :class:`Results`;
:func:`run_evaluation` (the ``evaluate`` command) also saves each finished case at once (so
Ctrl-C or a crash loses nothing and ``resume`` continues), then writes the reports and the
figures.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path

from .io import Case, CaseResult, Problem, discover_cases, evaluate_case
from .options import ABSENT_POLICIES, CSV_STYLES, EvalOptions, check_choice
from .results import Results
from .store import PartialStore

#: Starting worker processes costs about 1.5 s (imports, compiled kernels from the cache);
#: with the automatic choice, processes are used only when the serial rest would take longer.
SPAWN_WORTH_SECONDS = 3.0


class UsageError(ValueError):
    """A problem with the command's arguments or output folder (exit status 2)."""


@dataclass
class RunReport:
    """What a run wrote: its :class:`Results`, the output folder, the files, timings
    (seconds) and the figure summary."""

    results: Results
    n_resumed: int
    out_dir: Path
    files: list[Path] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    figures: dict | None = None

    @property
    def n_skipped(self) -> int:
        return len(self.results.skipped)

    @property
    def problems(self) -> list[Problem]:
        return list(self.results.problems)


# ------------------------------------------------------------------------ the loop
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
    _evaluate_in_pool(cases, options, workers, on_result)
    return min(workers, len(cases))


def _evaluate_in_pool(cases, options, workers, on_result) -> None:
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


class _Collector:
    """Gathers case results as they finish and puts them back in discovery order."""

    def __init__(self, cases: list[Case], discovery_problems, options: dict,
                 progress: Callable[[int, int], None] | None = None) -> None:
        self.cases = cases
        self.discovery_problems = list(discovery_problems)
        self.options = options
        self.progress = progress
        self.finished: dict[str, CaseResult] = {}
        self.failed: dict[str, CaseResult] = {}

    def __call__(self, result: CaseResult) -> None:
        (self.finished if result.ok else self.failed)[result.case_id] = result
        self.report_progress()

    def report_progress(self) -> None:
        if self.progress:
            self.progress(len(self.finished) + len(self.failed), len(self.cases))

    def results(self) -> Results:
        ordered = [c.case_id for c in self.cases if c.case_id in self.finished]
        problems = list(self.discovery_problems)
        for case in self.cases:
            result = self.finished.get(case.case_id) or self.failed.get(case.case_id)
            if result is not None:
                problems.extend(result.problems)
        return Results(
            cases=tuple(ordered), stats=tuple(self.finished[c].stats for c in ordered),
            options=self.options, problems=tuple(problems),
            skipped=tuple(c.case_id for c in self.cases if c.case_id in self.failed),
        )


def _binning_options(options: EvalOptions, pred_dir: Path, label_dir: Path) -> dict:
    """The options that change per-case numbers (what ``resume`` must find unchanged)."""
    data = asdict(options)
    data.pop("strict", None)
    data["pred_dir"] = str(pred_dir.resolve())
    data["label_dir"] = str(label_dir.resolve())
    return data


def evaluate_folder(pred_dir, label_dir, *, workers: int | None = 1, **options) -> Results:
    """Discover, pair and evaluate every case of a prediction folder against a label folder.

    ``options`` are the fields of :class:`~calibviz.options.EvalOptions` (e.g.
    ``n_bins=15``, ``regions="WT=1,2,4;TC=1,4;ET=4"``), validated before any case runs.
    Returns a :class:`Results` with the ids and per-image :class:`BinStats` of the cases
    that passed every check and every problem found (cases that failed are reported in
    ``problems`` and ``skipped``; the others go on). Raises :class:`ValueError` for a bad
    option or a missing or empty folder.
    """
    opts = EvalOptions.from_kwargs(**options)
    pred_dir, label_dir = Path(pred_dir), Path(label_dir)
    cases, problems = discover_cases(pred_dir, label_dir, opts)
    collector = _Collector(cases, problems, _binning_options(opts, pred_dir, label_dir))
    evaluate_cases(cases, opts, workers=workers, on_result=collector)
    return collector.results()


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
    single cases are collected in the results (and ``problems.csv``), never raised.
    ``progress(done, total)`` is called after each case.
    """
    started = datetime.now(UTC)
    clock = time.perf_counter()
    pred_dir, label_dir, out_dir = Path(pred_dir), Path(label_dir), Path(out_dir)
    try:
        check_choice("--absent", absent, ABSENT_POLICIES)
        check_choice("--csv-style", csv_style, CSV_STYLES)
        if workers is not None and workers < 1:
            raise ValueError(f"--workers must be at least 1, got {workers}")
        cases, problems = discover_cases(pred_dir, label_dir, options)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"output path {out_dir} exists and is not a folder")
    wanted = _binning_options(options, pred_dir, label_dir)
    store = PartialStore(out_dir)
    differences = store.open(wanted, resume)
    if differences:
        raise UsageError(f"cannot resume the run in {out_dir}: options differ ("
                         + "; ".join(differences) + "); rerun without --resume or with the "
                         "same options")
    collector = _Collector(cases, problems, {**wanted, "absent": absent, "csv_style": csv_style},
                           progress)
    n_resumed = _take_stored(store, cases, collector) if resume else 0
    collector.report_progress()

    def on_result(result: CaseResult) -> None:
        if result.ok:
            store.save(result.case_id, result.stats, result.problems)
        collector(result)

    todo = [case for case in cases if case.case_id not in collector.finished]
    used = evaluate_cases(todo, options, workers=workers, on_result=on_result)
    collector.options["workers"] = used
    report = RunReport(results=collector.results(), n_resumed=n_resumed, out_dir=out_dir)
    evaluated = time.perf_counter()
    _write_outputs(report, csv_style=csv_style, figures=figures, figure_format=figure_format,
                   max_case_figures=max_case_figures, workers=workers)
    report.timings = {"evaluate": evaluated - clock, **report.timings}
    from .report import write_run_json

    report.files.append(write_run_json(report, started))
    return report


def _take_stored(store: PartialStore, cases: list[Case], collector: _Collector) -> int:
    """Cases finished by an interrupted run, taken from the partial store."""
    for case in cases:
        stored = store.load(case.case_id)
        if stored is not None:
            collector.finished[case.case_id] = CaseResult(case.case_id, stored[0],
                                                          list(stored[1]))
    return len(collector.finished)


def _write_outputs(report: RunReport, *, csv_style, figures, figure_format, max_case_figures,
                   workers) -> None:
    """Reports first, then figures (a figure failure must not lose the numbers), then the
    problems."""
    from .report import write_problems, write_reports

    results = report.results
    start = time.perf_counter()
    report.files.extend(write_reports(results, report.out_dir, csv_style=csv_style))
    written = time.perf_counter()
    problems = list(results.problems)
    if figures and results.stats:
        try:
            from .figures import render_figures

            report.figures = render_figures(
                results, report.out_dir / "figures", kind="both", fmt=figure_format,
                max_cases=max_case_figures, absent=results.options.get("absent", "include"),
                workers=default_workers() if workers is None else workers,
            )
        except Exception as error:  # the numbers are written; keep them
            problems.append(Problem(
                "", str(report.out_dir / "figures"),
                f"figures could not be drawn ({type(error).__name__}: {error}); the reports "
                "are complete, redraw with `calibviz plot`", severity="warning",
            ))
    drawn = time.perf_counter()
    report.results = Results(results.cases, results.stats, results.options, tuple(problems),
                             results.skipped)
    report.files.append(write_problems(report.results.problems, report.out_dir))
    report.timings = {"write": written - start, "figures": drawn - written}
