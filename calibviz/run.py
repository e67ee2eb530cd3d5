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
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from .collector import Collector
from .io import Case, CaseResult, Problem, discover_cases
from .loop import (
    check_client,
    check_cluster,
    check_processes,
    cluster,
    default_workers,
    evaluate_cases,
    warm_up,
)
from .options import (
    ABSENT_POLICIES,
    MAX_FIGURE_BINS,  # noqa: F401 (public here, as before)
    EvalOptions,
    check_choice,
    check_n_bins,
    check_resamples,
    check_seed,
)
from .results import Results
from .runchecks import UsageError, check_run, claim_out  # noqa: F401 (UsageError: public)
from .runfigures import RunFigures
from .store import ROI_PREFIX, PartialStore, clear_outputs, input_fingerprint


@dataclass
class RunReport:
    """What a run wrote: its :class:`Results`, the output folder, the files, timings
    (seconds), the figure summary and notices for the user (cases evaluated again)."""

    results: Results
    n_resumed: int
    out_dir: Path
    files: list[Path] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    figures: dict | None = None
    notices: list[str] = field(default_factory=list)
    fine: Results | None = None  # the fine statistics with --fine-bins
    roi: RunReport | None = None  # what was written for the region of interest (--roi)

    @property
    def n_skipped(self) -> int:
        return len(self.results.skipped)

    @property
    def problems(self) -> list[Problem]:
        return list(self.results.problems)


def _binning_options(options: EvalOptions, pred_dir: Path, label_dir: Path) -> dict:
    """The options that change per-case numbers (what ``resume`` must find unchanged)."""
    data = asdict(options)
    data.pop("strict", None)
    data["pred_dir"] = str(pred_dir.resolve())
    data["label_dir"] = str(label_dir.resolve())
    return data


def evaluate_folder(pred_dir, label_dir, *, workers: int | None = 1, client=None,
                    absent: str = "include", bootstrap: int = 0, seed: int = 0,
                    **options) -> Results:
    """Discover, pair and evaluate every case of a prediction folder against a label folder.

    ``options`` are the fields of :class:`~calibviz.options.EvalOptions` (e.g.
    ``n_bins=15``, ``regions="WT=1,2,4;TC=1,4;ET=4"``), validated before any case runs.
    Returns a :class:`Results` with the ids and per-image :class:`BinStats` of the cases
    that passed every check and every problem found (cases that failed are reported in
    ``problems`` and ``skipped``; the others go on). ``absent``, ``bootstrap`` and ``seed``
    are recorded as the command line's ``--absent``, ``--bootstrap`` and ``--seed``: the
    Results' ``summary`` and aggregates use them (no intervals by default here). Raises
    :class:`ValueError` for a bad option or a missing or empty folder. ``client``: a
    ``distributed.Client``; the cases are evaluated on its cluster (same results as a local
    run).
    """
    try:
        opts = EvalOptions.from_kwargs(**options)
    except TypeError as error:  # name the run-level options too
        raise TypeError(f"{error}; and workers, client, absent, bootstrap, seed") from None
    check_choice("absent", absent, ABSENT_POLICIES)
    run_level = {"absent": absent, "bootstrap": check_resamples(bootstrap, "bootstrap"),
                 "seed": check_seed(seed)}
    if workers is not None:
        check_processes(workers, f"workers={workers}")
    if client is not None:
        check_client(client)
    pred_dir, label_dir = Path(pred_dir), Path(label_dir)
    cases, problems = discover_cases(pred_dir, label_dir, opts)
    collector = Collector(cases, problems,
                          {**_binning_options(opts, pred_dir, label_dir), **run_level})
    evaluate_cases(cases, opts, workers=workers, on_result=collector, client=client)
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
    overwrite: bool = False,
    absent: str = "include",
    csv_style: str = "tidy",
    figures: bool = True,
    figure_format: str = "png",
    max_case_figures: int = 12,
    name: str | None = None,
    n_bootstrap: int = 10000,
    seed: int = 0,
    fine_bins: int | None = None,
    progress: Callable[..., None] | None = None,
    scheduler: str | None = None,
    client=None,
) -> RunReport:
    """Evaluate every case of ``pred_dir`` against ``label_dir`` and write the reports.

    ``out_dir`` must lie outside the prediction, label and mask folders (symbolic links
    resolved), or the next run would list its outputs as cases.
    ``out_dir`` holds exactly one run: a folder holding another run's results is refused
    unless ``overwrite`` (calibviz's own files are removed first, never other files) or
    ``resume`` (continue an interrupted run; cases whose input files changed are evaluated
    again). Raises :class:`UsageError` for problems with the folders or options, before any
    case runs; problems with single cases are collected in the results (and
    ``problems.csv``), never raised. ``progress(done, total)`` is called after each case
    (``progress(done, total, failed)`` when it takes three arguments: ``failed`` of the
    ``done`` cases failed so far; cases whose classes or bins differ from the others' are
    found when all are done, so the final report can name more).
    ``fine_bins``: bin at that resolution (a multiple of ``options.n_bins``), keep those
    statistics in ``stats_fine.npz`` and report on ``options.n_bins`` bins (exact: the sums of
    adjacent fine bins).
    ``scheduler`` (``tcp://host:8786``, ``local:N``) or ``client``: run on a Dask cluster.
    """
    started = datetime.now(UTC)
    clock = time.perf_counter()
    if scheduler is None and client is None:  # this process bins: Numba loads meanwhile
        warm_up()
    pred_dir, label_dir, out_dir = Path(pred_dir), Path(label_dir), Path(out_dir)
    report_bins = options.n_bins
    fine_options = _with_fine_bins(options, fine_bins)
    check_cluster(scheduler, client, workers)
    cases, problems = check_run(pred_dir, label_dir, out_dir, options, workers=workers,
                                 resume=resume, overwrite=overwrite, absent=absent,
                                 csv_style=csv_style, figures=figures, n_bootstrap=n_bootstrap,
                                 seed=seed)
    with claim_out(out_dir, resume=resume, overwrite=overwrite):  # one run at a time
        options = fine_options
        wanted = _binning_options(options, pred_dir, label_dir)
        store, notices = _open_store(out_dir, wanted, resume)
        run_options = {**wanted, "absent": absent, "csv_style": csv_style, "name": name,
                       "bootstrap": n_bootstrap, "seed": seed}
        collector = Collector(cases, problems, run_options, progress)
        n_resumed = _take_stored(store, cases, collector, notices) if resume else 0
        if collector.finished:
            try:
                collector.check_summary(next(iter(collector.finished.values())))
            except ValueError as error:
                raise UsageError(str(error)) from None
        collector.report_progress()
        run_figures = RunFigures(figures, workers, report_bins,  # imports while cases run
                                 n_cases=len(cases), absent=absent)
        try:
            for stored in collector.finished.values():
                run_figures.case_done(stored.stats)

            def on_result(result: CaseResult) -> None:
                result = collector.accept(result)
                if result.ok:  # saved before anything else can interrupt
                    store.save(result.case_id, result.stats, result.problems,
                               before[result.case_id], result.info, result.roi_stats)
                    run_figures.case_done(result.stats)
                collector.record(result)

            todo = [case for case in cases if case.case_id not in collector.finished]
            # the inputs as they are before they are read: a file changed while (or after) its
            # case runs then differs from what is stored, and a resumed run evaluates it again
            before = {case.case_id: _fingerprint(case) for case in todo}
            warm_up("calibviz.report", kernel=False)  # pandas, for the reports, while cases run
            used = _evaluate_todo(todo, options, store, on_result, workers=workers,
                                  scheduler=scheduler, client=client)
            collector.options["workers"] = used
            report = RunReport(results=collector.results(), n_resumed=n_resumed,
                               out_dir=out_dir, notices=notices)
            report.fine = _coarsen_results(report, report_bins) if fine_bins else None
            report.timings = {"evaluate": time.perf_counter() - clock}
            _finish(report, store, started, csv_style=csv_style, figures=figures,
                    figure_format=figure_format, max_case_figures=max_case_figures,
                    workers=workers, run_figures=run_figures)
        finally:
            run_figures.close()
        return report


def _finish(report: RunReport, store: PartialStore, started: datetime, **outputs) -> None:
    """Replace the folder's earlier outputs by this run's reports, figures and ``run.json``
    (and the same for the region of interest in ``roi-<spec>/``); then the partial store goes
    (a write failure keeps it, for ``--resume``)."""
    from .report import write_run_json

    try:
        clear_outputs(report.out_dir, keep_partial=True)
        evaluated = report.timings["evaluate"]
        _write_outputs(report, **outputs)
        report.timings = {"evaluate": evaluated, **report.timings}
        report.files.append(write_run_json(report, started))
        report.roi = _write_roi(report, started, **outputs)
    except OSError as error:
        raise UsageError(f"cannot write the reports to {report.out_dir}: "
                         f"{error.strerror or error}; the evaluated cases are kept, rerun "
                         "with --resume") from None
    store.finish()


def _write_roi(report: RunReport, started: datetime, **outputs) -> RunReport | None:
    """The region-of-interest result set, written like the run's own into
    ``OUT/roi-<spec>/``."""
    from .report import write_run_json
    from .roi import parse_roi

    roi = report.results.roi
    if roi is None or not roi.stats:
        return None
    out_dir = report.out_dir / f"{ROI_PREFIX}{parse_roi(roi.options['roi']).name}"
    out_dir.mkdir(exist_ok=True)
    sub = RunReport(results=roi, n_resumed=report.n_resumed, out_dir=out_dir,
                    timings={"evaluate": report.timings["evaluate"]})
    if report.fine is not None and report.fine.roi is not None:
        sub.fine = report.fine.roi
    # drawn here: the run's figure worker holds the case figure of the run's own classes
    outputs["run_figures"] = RunFigures(outputs["figures"], 1, roi.stats[0].n_bins)
    _write_outputs(sub, **outputs)
    sub.files.append(write_run_json(sub, started))
    report.files.extend(sub.files)
    return sub


def _with_fine_bins(options: EvalOptions, fine_bins: int | None) -> EvalOptions:
    """The options the cases are binned with: ``fine_bins`` bins when asked for."""
    from dataclasses import replace

    if fine_bins is None:
        return options
    try:
        check_n_bins(fine_bins, "--fine-bins")
        if fine_bins % options.n_bins or options.binning != "hard":
            raise ValueError(f"--fine-bins {fine_bins} must be a multiple of --bins "
                             f"{options.n_bins}, with hard binning (soft bins cannot be "
                             "added up exactly)")
        return replace(options, n_bins=fine_bins)
    except (TypeError, ValueError) as error:
        raise UsageError(str(error)) from None


def _coarsen_results(report: RunReport, n_bins: int) -> Results:
    """Replace the report's fine statistics by their ``n_bins``-bin sums; return the fine."""
    from .sweep import coarsen

    def coarsened(results: Results) -> Results:
        options = {**results.options, "n_bins": n_bins, "fine_bins": results.options["n_bins"]}
        return Results(results.cases, tuple(coarsen(s, n_bins) for s in results.stats),
                       options, results.problems, results.skipped)

    fine = report.results
    roi = None if fine.roi is None else coarsened(fine.roi)
    report.results = replace(coarsened(fine), roi=roi)
    return fine


def _open_store(out_dir: Path, wanted: dict, resume: bool) -> tuple[PartialStore, list[str]]:
    """The run's partial store, opened (fresh, or continued with ``resume``), and the lines
    to tell the user about it."""
    store = PartialStore(out_dir)
    try:
        differences, notice = store.open(wanted, resume)
    except OSError as error:
        raise UsageError(f"cannot write to {out_dir}: {error.strerror or error}") from None
    if differences:
        raise UsageError(f"cannot resume the run in {out_dir}: options differ ("
                         + "; ".join(differences) + "); rerun without --resume or with the "
                         "same options")
    return store, [notice] if notice else []


def _evaluate_todo(todo, options, store, on_result, *, workers, scheduler, client) -> int:
    """:func:`evaluate_cases` here, in a pool or on a cluster; the first case's usage
    problem ends the run (a :class:`UsageError`)."""
    with cluster(scheduler, client) as dask_client:
        try:
            return evaluate_cases(todo, options, workers=workers, on_result=on_result,
                                  client=dask_client)
        except ValueError as error:  # the first case showed the options do not fit the data
            store.finish()
            raise UsageError(str(error)) from None
        except OSError as error:  # the partial store cannot be written (read-only, disk full)
            raise UsageError(f"cannot save finished cases in {store.folder}: "
                             f"{error.strerror or error}") from None


def _fingerprint(case: Case) -> dict:
    paths = [*(case.prediction if isinstance(case.prediction, tuple) else [case.prediction]),
             case.label, case.mask, case.segmentation]
    return input_fingerprint(p for p in paths if p)


def _take_stored(store: PartialStore, cases: list[Case], collector: Collector,
                 notices: list[str]) -> int:
    """Cases finished by an interrupted run, taken from the partial store; a stored case
    whose inputs changed (or whose record is damaged) is evaluated again, saying so."""
    for case in cases:
        stored = store.load(case.case_id, _fingerprint(case))
        if isinstance(stored, str):
            notices.append(f"case {case.case_id}: {stored}; evaluating it again")
        elif stored is not None:
            collector.finished[case.case_id] = CaseResult(case.case_id, *stored)
    return len(collector.finished)


def _write_outputs(report: RunReport, *, csv_style, figures, figure_format, max_case_figures,
                   workers, run_figures: RunFigures) -> None:
    """Reports, then figures (a figure failure must not lose the numbers; case figures
    drawn in a worker start first, beside the reports), then the problems."""
    from .report import write_problems, write_reports

    results = report.results
    start = time.perf_counter()
    problems = list(results.problems)
    finish_figures = None
    if figures and results.stats:
        finish_figures = run_figures.begin(
            report, problems, fmt=figure_format, max_cases=max_case_figures,
            workers=default_workers() if workers is None else workers)
    if report.fine is not None and report.fine.stats:
        from .store import FINE_STATS_FILE, save_results

        report.files.append(save_results(report.out_dir / FINE_STATS_FILE, report.fine))
    report.files.extend(write_reports(results, report.out_dir, csv_style=csv_style,
                                      n_bootstrap=results.options.get("bootstrap", 0),
                                      seed=results.options.get("seed", 0),
                                      problems=problems))
    written = time.perf_counter()
    if finish_figures is not None:
        finish_figures()
    drawn = time.perf_counter()
    report.results = replace(results, problems=tuple(problems))
    report.files.append(write_problems(report.results.problems, report.out_dir))
    report.timings = {"write": written - start, "figures": drawn - written}
