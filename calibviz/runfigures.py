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

from collections.abc import Callable

from .io import Problem
from .loop import default_workers
from .stats import BinStats

#: How much lower the priority of the figure process is (``nice``): while cases are
#: evaluated it takes mostly idle time (a quarter of a busy core at most); at the end
#: this process just writes the reports. Not lower, so that a machine busy with other
#: work does not starve the figures.
WORKER_NICE = 5


class RunFigures:
    """The figures of one run. ``enabled``: figures are drawn; ``workers``: the run's
    ``--workers`` (1: no process for figures either; None: one when there are two cores);
    ``report_bins``: the bins the figures show (the run may bin finer, ``--fine-bins``)."""

    def __init__(self, enabled: bool, workers: int | None, report_bins: int):
        self.worker = None
        self.report_bins = report_bins
        self._prepared = False
        if enabled and workers != 1 and default_workers() >= 2:
            from .viz.worker import FigureWorker

            try:
                self.worker = FigureWorker(nice=WORKER_NICE)
            except OSError:  # no process to be had: drawn here
                self.worker = None

    def case_done(self, stats: BinStats) -> None:
        """A case finished: the first one has the worker build the case figure."""
        if self.worker is None or self._prepared:
            return
        self._prepared = True
        if stats.n_bins != self.report_bins:
            from .sweep import coarsen

            stats = coarsen(stats, self.report_bins)
        from .viz.render import case_figure_options

        try:
            self.worker.prepare(stats, **case_figure_options())  # those of begin
        except RuntimeError:  # the worker is gone; the figures are drawn here
            self.worker = None

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
