"""The figure step of ``calibviz evaluate``, drawn beside the run where a second core is
allowed.

:class:`RunFigures` starts a :class:`~calibviz.viz.worker.FigureWorker` with the run, at
a lower priority, so that its imports take what the evaluation leaves idle; the first
finished case has it build the run's case figure (:meth:`RunFigures.case_done`);
:meth:`RunFigures.begin` has it draw all figures (the dataset figure in a forked copy of
itself) while the reports are written, and the function it returns collects them. This
process does not load Matplotlib unless it has to draw what the worker did not. A figure
that cannot be drawn is a warning of the run, never a lost report.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .io import Problem
from .loop import default_workers
from .stats import BinStats
from .viz.selection import MAX_FIGURE_CLASSES

#: How much lower the priority of the figure process is (``nice``): while cases are
#: evaluated it takes mostly idle time (a quarter of a busy core at most); at the end
#: this process just writes the reports. Not lower, so that a machine busy with other
#: work does not starve the figures.
WORKER_NICE = 5


#: The dataset figure is laid out ahead, by the figure process beside the cases, only when
#: the cases left should take at least this long (seconds): at its low priority the process
#: needs that long for the 1.5 s of CPU the layout takes, and a layout still being made when
#: the run ends would hold the figures up instead of shortening them.
LAYOUT_AHEAD_SECONDS = 8.0
#: Cases in before that estimate is made (the rate of fewer says little).
LAYOUT_AHEAD_AFTER = 4


class RunFigures:
    """The figures of one run. ``enabled``: figures are drawn; ``workers``: the run's
    ``--workers`` (1: no process for figures either; None: one when there are two cores);
    ``report_bins``: the bins the figures show (the run may bin finer, ``--fine-bins``);
    ``n_cases``: the cases of the run (the dataset figure is laid out ahead for that many
    when the run is long enough); ``absent``: the run's policy for absent classes;
    ``clock``: seconds, for the estimate of the time left."""

    def __init__(self, enabled: bool, workers: int | None, report_bins: int, *,
                 n_cases: int = 0, absent: str = "include",
                 clock: Callable[[], float] = time.perf_counter):
        self.worker = None
        self.report_bins = report_bins
        self.n_cases, self.absent, self.clock = n_cases, absent, clock
        self._template: BinStats | None = None  # the first case, at the figures' bins
        self._done = 0
        self._laid_out = False
        self._first_done: float | None = None  # when the first case was in (start-up over)
        if enabled and workers != 1 and default_workers() >= 2:
            from .viz.worker import FigureWorker

            try:
                self.worker = FigureWorker(nice=WORKER_NICE)
            except OSError:  # no process to be had: drawn here
                self.worker = None

    def case_done(self, stats: BinStats) -> None:
        """A case finished (or was taken from an interrupted run): the first one has the
        worker build the case figure; once the cases left should take
        :data:`LAYOUT_AHEAD_SECONDS`, the worker lays the dataset figure out."""
        if self.worker is None or stats.n_classes > MAX_FIGURE_CLASSES:
            return  # which classes the figures show is known once every case is in
        self._done += 1
        try:
            if self._template is None:
                self._first_done = self.clock()
                if stats.n_bins != self.report_bins:
                    from .sweep import coarsen

                    stats = coarsen(stats, self.report_bins)
                from .viz.render import case_figure_options

                self._template = stats
                self.worker.prepare(stats, **case_figure_options())  # those of begin
            elif not self._laid_out and self._worth_laying_out():
                from .viz.render import dataset_figure_options

                self._laid_out = True
                self.worker.lay_out(self._template, self.n_cases,
                                    **dataset_figure_options(absent=self.absent))
        except RuntimeError:  # the worker is gone; the figures are drawn here
            self.worker = None

    def _worth_laying_out(self) -> bool:
        """Whether the cases left should take :data:`LAYOUT_AHEAD_SECONDS`, at the rate
        since the first case (the start-up before it, imports and kernels, excluded)."""
        if self._done < LAYOUT_AHEAD_AFTER:
            return False
        left = self.n_cases - self._done
        per_case = (self.clock() - self._first_done) / (self._done - 1)
        return left > 0 and per_case * left >= LAYOUT_AHEAD_SECONDS

    def begin(self, report, problems: list[Problem], **options) -> Callable[[], None]:
        """Start the figures of ``report.results`` into ``report.out_dir / "figures"``
        (``options``: ``fmt``, ``max_cases``, ``workers`` of
        :func:`~calibviz.viz.render.render_figures`); the function returned finishes them,
        setting ``report.figures`` or adding a warning to ``problems``."""
        folder = report.out_dir / "figures"
        try:
            from .viz.render import start_figures

            finish = start_figures(report.results, folder, kind="both",
                                   absent=report.results.options.get("absent", "include"),
                                   worker=self.worker, **options)
        except Exception as error:  # the numbers are written regardless
            problems.append(_problem(folder, error))
            return lambda: None

        def done() -> None:
            try:
                report.figures = finish()
            except Exception as error:
                problems.append(_problem(folder, error))

        return done

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()
            self.worker = None


def _problem(folder, error: Exception) -> Problem:
    return Problem("", str(folder), f"figures could not be drawn ({type(error).__name__}: "
                   f"{error}); the reports are complete, redraw with `calibviz plot`",
                   severity="warning")
