"""Render the figures of a run (:class:`~calibviz.results.Results`) to files.

``render_figures`` writes ``out_dir/dataset_reliability_histogram.<fmt>`` and
``out_dir/cases/<case>.<fmt>``; ``render_case_figure`` draws one case and is safe to call from
a worker process (it takes plain data and returns the path written). A large dataset does not
produce thousands of figures by accident: without an explicit selection only the
``max_cases`` worst cases by mean ACE are drawn, and the returned dict says so. Matplotlib
loads only where a figure is drawn here, so that :func:`start_figures` hands the case
figures to a worker process before this one loads it for the dataset figure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import suppress
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING

from ..aggregate import absent_policy, reliability_histogram
from ..interrupts import leave_ctrl_c_to_parent, starting_children
from ..options import check_figure_bins
from ..results import Results
from ..stats import BinStats
from .presets import Preset, check_format, check_norm, get_preset
from .selection import (  # noqa: F401  (public here too)
    figure_classes,
    resolve_classes,
    safe_name,
    select_cases,
    unique_file_names,
)

if TYPE_CHECKING:
    from .casefigure import CaseFigure
    from .frozen import FrozenLayout

KINDS = ("both", "dataset", "case")
DATASET_FIGURE = "dataset_reliability_histogram"


def render_case_figure(case_id: str, stats: BinStats, path: str | Path, *,
                       classes: Sequence[int | str] | None = None,
                       preset: str | Preset | None = None, dpi: int | None = None,
                       histogram: bool = True, **style) -> Path:
    """Draw the reliability diagrams of every (or the given) class of one case and write them
    to ``path`` (format from the suffix). Pure inputs, so it runs in a worker process; for
    many cases :func:`render_case_figures` builds the figure once."""
    return render_case_figures([(case_id, stats, path)], classes=classes, preset=preset,
                               dpi=dpi, histogram=histogram, **style)[0]


def render_case_figures(jobs, *, classes: Sequence[int | str] | None = None,
                        preset: str | Preset | None = None, dpi: int | None = None,
                        histogram: bool = True, case_figure: CaseFigure | None = None,
                        **style) -> list[Path]:
    """Draw ``jobs`` (``(case id, BinStats, path)`` of one run: same classes and bins) with
    one :class:`~calibviz.viz.casefigure.CaseFigure`, built once and redrawn per case (or
    ``case_figure``, built with these options, when it fits the jobs); returns the paths
    written."""
    jobs = list(jobs)
    if not jobs:
        return []
    from .casefigure import CaseFigure
    from .figures import pin_empty_labels

    if case_figure is None or not case_figure.fits(jobs[0][1]):
        case_figure = CaseFigure(jobs[0][1], classes=classes, histogram=histogram,
                                 preset=preset, **style)
        pin_empty_labels(case_figure.figure)
    written = []
    for case_id, stats, path in jobs:
        case_figure.draw(str(case_id), stats)
        written.append(case_figure.save(path, dpi=dpi))
    return written


def render_dataset_figure(stats: Sequence[BinStats], path: str | Path, *,
                          classes: Sequence[int | str] | None = None, absent: str | None = None,
                          preset: str | Preset | None = None, dpi: int | None = None,
                          title: str | None = None, layout: FrozenLayout | None = None,
                          **style) -> Path:
    """Draw the dataset reliability histogram of all (or the given) classes plus the
    all-classes panel (:func:`dataset_figure`) and write it to ``path`` (format from the
    suffix)."""
    from .figures import save_figure

    preset = get_preset(preset)
    figure = dataset_figure(stats, classes=classes, absent=absent, preset=preset, dpi=dpi,
                            title=title, layout=layout, **style)
    return save_figure(figure, path, dpi=dpi or preset.dpi, preset=preset)


def dataset_figure(stats: Sequence[BinStats], *, classes: Sequence[int | str] | None = None,
                   absent: str | None = None, preset: str | Preset | None = None,
                   dpi: int | None = None, title: str | None = None,
                   layout: FrozenLayout | None = None, **style):
    """The figure of :func:`~calibviz.viz.layouts.plot_dataset` for the per-image ``stats``,
    laid out at ``dpi`` for the widest labels its number of images allows
    (:func:`~calibviz.viz.layouts.widest_layout`), or as ``layout`` says (that layout, made
    ahead of time, when it fits), with its layout engine off: ready to save at ``dpi``."""
    from .figures import pin_empty_labels
    from .layouts import plot_dataset, widest_layout

    absent = absent_policy(stats, absent)
    stats = stats.stats if hasattr(stats, "options") else stats
    data = stats if style.get("band") else reliability_histogram(stats, absent=absent)
    preset = get_preset(preset)
    dpi = dpi or preset.dpi
    figure, displays, _ = plot_dataset(data, classes=classes, absent=absent, title=title,
                                       preset=preset, **style)
    pin_empty_labels(figure)  # before the layout too: the same layout, made faster
    if layout is None or not layout.fits(figure):
        layout = widest_layout(figure, displays, len(stats), dpi=dpi, preset=preset)
    layout.apply(figure)
    return figure


def render_figures(results: Results, out_dir: str | Path, *, kind: str = "both", cases=None,
                   classes: Sequence[int | str] | None = None, fmt: str = "png",
                   preset: str | Preset | None = None, max_cases: int = 12,
                   absent: str | None = None, dpi: int | None = None, workers: int = 1,
                   worker=None, **style) -> dict:
    """Write the figures of a run.

    Writes ``out_dir/dataset_reliability_histogram.<fmt>`` (``kind`` "dataset" or "both")
    and ``out_dir/cases/<case>.<fmt>`` (``kind`` "case" or "both"). ``cases`` and
    ``max_cases`` as in :func:`select_cases`; ``classes`` names or indices; ``style`` goes to
    the displays (e.g. ``norm="log"``, ``gamma=0.5``, ``cmap="viridis"`` for the dataset
    figure). ``workers > 1`` draws case figures in up to that many processes (at least
    :data:`MIN_FIGURES_PER_WORKER` each) while this one draws the dataset figure;
    ``worker`` (a started :class:`~calibviz.viz.worker.FigureWorker`) draws the figures
    instead (what it does not draw is drawn here).

    ``absent=None`` draws with the run's own absent policy (``results.options["absent"]``).

    Without ``classes``, a run of more than
    :data:`~calibviz.viz.selection.MAX_FIGURE_CLASSES` classes shows that many, the worst
    by mean ACE (:func:`~calibviz.viz.selection.figure_classes`).

    Returns ``{"dataset": Path | None, "cases": [Path], "n_drawn": int (case figures),
    "n_skipped": int (cases not drawn), "n_cases": int, "selection": str, "classes":
    [int] | None (None: all), "class_selection": str ("" unless chosen here)}``.
    """
    return start_figures(results, out_dir, kind=kind, cases=cases, classes=classes, fmt=fmt,
                         preset=preset, max_cases=max_cases, absent=absent, dpi=dpi,
                         workers=workers, worker=worker, **style)()


def start_figures(results: Results, out_dir: str | Path, *, kind: str = "both", cases=None,
                  classes: Sequence[int | str] | None = None, fmt: str = "png",
                  preset: str | Preset | None = None, max_cases: int = 12,
                  absent: str | None = None, dpi: int | None = None, workers: int = 1,
                  worker=None, **style) -> Callable[[], dict]:
    """:func:`render_figures` in two steps: check the options and start the figures that
    worker processes draw now; the function returned draws the rest, waits for the others
    and returns the summary. Lets the caller do other work (write reports) meanwhile."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    fmt = check_format(fmt)
    if len(results) == 0:
        raise ValueError("these results hold no cases; nothing to draw")
    check_figure_bins(results.stats[0].n_bins)
    preset = get_preset(preset)
    absent = absent_policy(results, absent)  # the run's own unless given; checks the name
    check_norm(style.get("norm", "power"), style.get("gamma", 0.35))
    classes, class_selection = figure_classes(results, classes, absent=absent)
    if style.get("band") and kind in ("both", "dataset"):  # every resample is kept
        from ..bootstrap import check_band

        first = results.stats[0]
        check_band(style["band"], first.n_classes if classes is None else len(classes),
                   first.n_bins)
    out_dir = Path(out_dir)
    dataset_style = {k: v for k, v in style.items() if k in _DATASET_STYLE}
    case_style = {k: v for k, v in style.items() if k not in _DATASET_STYLE}
    summary = {"dataset": None, "cases": [], "n_drawn": 0, "n_skipped": 0,
               "n_cases": len(results), "selection": "", "classes": classes,
               "class_selection": class_selection}
    jobs, options, dataset = [], {}, None
    if kind in ("both", "case"):
        picked, summary["selection"] = select_cases(results, cases, max_cases=max_cases,
                                                    absent=absent)
        file_names = unique_file_names(results.cases)
        jobs = [(results.cases[i], results.stats[i],
                 out_dir / "cases" / f"{file_names[i]}.{fmt}") for i in picked]
        options = case_figure_options(classes=classes, preset=preset, dpi=dpi, **case_style)
        summary["n_drawn"] = len(picked)
        summary["n_skipped"] = len(results) - len(picked)
    if kind in ("both", "dataset"):
        dataset = (list(results.stats), out_dir / f"{DATASET_FIGURE}.{fmt}",
                   dataset_figure_options(classes=classes, absent=absent, preset=preset,
                                          dpi=dpi, **dataset_style))
    if worker is not None:
        return _in_worker(worker, jobs, options, dataset, summary)
    pending = _start_cases(jobs, options, workers) if jobs else None

    def finish() -> dict:
        try:  # the dataset figure is drawn here while worker processes draw case figures
            if dataset is not None:
                summary["dataset"] = render_dataset_figure(dataset[0], dataset[1],
                                                           **dataset[2])
        finally:
            if pending is not None:
                summary["cases"] = pending()
        return summary

    return finish


def case_figure_options(*, classes: Sequence[int] | None = None,
                        preset: str | Preset | None = None, dpi: int | None = None,
                        **style) -> dict:
    """The options :func:`render_figures` draws case figures with (those of
    :func:`render_case_figures`): what a :class:`~calibviz.viz.worker.FigureWorker` is
    prepared with, to draw them with the figure it built."""
    return {"classes": classes, "preset": get_preset(preset), "dpi": dpi, **style}


def dataset_figure_options(*, classes: Sequence[int] | None = None, absent: str = "include",
                           preset: str | Preset | None = None, dpi: int | None = None,
                           **style) -> dict:
    """The options :func:`render_figures` draws the dataset figure with (those of
    :func:`render_dataset_figure`): what a :class:`~calibviz.viz.worker.FigureWorker` lays
    that figure out with ahead of time."""
    return {"classes": classes, "absent": absent, "preset": get_preset(preset), "dpi": dpi,
            **style}


_DATASET_STYLE = ("cmap", "norm", "gamma", "show_curve", "show_counts", "all_classes",
                  "curve_color", "title", "band")


def _render_chunk(chunk_and_options):
    chunk, options = chunk_and_options
    return render_case_figures(chunk, **options)


#: Case figures per worker process below which it does not pay for its start: starting
#: (imports) and building its case figure cost about as much as drawing 8 case figures.
MIN_FIGURES_PER_WORKER = 8


def _start_cases(jobs, options: dict, workers: int):
    """Start drawing ``jobs``; returns a function that waits and gives the paths in job
    order. With ``workers > 1`` and enough figures the jobs are split into up to that
    many chunks, each drawn with one reused figure in a spawned process, while the caller
    draws the dataset figure; else they are drawn here, when the result is asked for."""
    workers = min(workers, len(jobs) // MIN_FIGURES_PER_WORKER)
    if workers <= 1:
        return lambda: render_case_figures(jobs, **options)
    chunks = [jobs[i::workers] for i in range(workers)]
    # spawn, not fork: the parent may hold Numba's worker threads (fork copies their locks)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                               initializer=leave_ctrl_c_to_parent)
    with starting_children():  # Ctrl-C is this process's, even while they import
        futures = [pool.submit(_render_chunk, (chunk, options)) for chunk in chunks]

    def wait() -> list[Path]:
        try:
            drawn = [future.result() for future in futures]
        finally:
            pool.shutdown(cancel_futures=True)
        by_path = {path: path for paths in drawn for path in paths}
        return [by_path[Path(path)] for _, _, path in jobs]

    return wait


def _in_worker(worker, jobs, options: dict, dataset, summary: dict):
    """Start ``jobs`` and ``dataset`` (``(stats, path, options)`` or ``None``) in
    ``worker``: the dataset figure there only if it can draw it beside the case figures
    (:data:`~calibviz.viz.worker.CAN_FORK`), else here. The function returned waits and
    draws here what the worker did not (a figure it could not draw fails here too, with its
    own error)."""
    from .worker import CAN_FORK

    try:
        wait = worker.draw(jobs, dataset if CAN_FORK else None, **options)
    except RuntimeError:
        wait = None

    def finish() -> dict:
        drawn = {"cases": [None] * len(jobs), "dataset": None}
        if wait is not None:
            with suppress(RuntimeError):
                drawn = wait()
        if dataset is not None:
            summary["dataset"] = drawn["dataset"] or render_dataset_figure(
                dataset[0], dataset[1], **dataset[2])
        missing = [job for job, path in zip(jobs, drawn["cases"], strict=True) if not path]
        redrawn = iter(render_case_figures(missing, **options))
        summary["cases"] = [path or next(redrawn) for path in drawn["cases"]]
        return summary

    return finish
