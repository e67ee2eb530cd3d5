"""A process that draws a run's figures beside the one that evaluates it.

Started when a run starts, a :class:`FigureWorker` has its imports (Matplotlib) done while
the cases are evaluated, at a lower priority (``nice``) so that it takes only the time the
evaluation leaves idle; one builds the run's :class:`~calibviz.viz.casefigure.CaseFigure`
(and its static pixels) as soon as the first case is in (:meth:`FigureWorker.prepare`)
and draws the chosen cases (:meth:`FigureWorker.draw`), another draws the dataset figure
(:meth:`FigureWorker.draw_dataset`), while the caller writes the reports. The process is
spawned (the parent may hold Numba's threads, which ``fork`` would copy locked), keeps its
case figure in a local variable of :func:`serve` (no module state), and ends when the pipe
is closed, :meth:`FigureWorker.close` is called or the parent dies.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from contextlib import suppress
from multiprocessing import get_context
from pathlib import Path

#: Seconds :meth:`FigureWorker.close` waits for the process before ending it.
CLOSE_SECONDS = 5.0


class FigureWorker:
    """One spawned process drawing figures; its methods return at once. ``nice``: how
    much lower its priority is (0: the same; POSIX only).

    ``options`` are those of :func:`~calibviz.viz.render.render_case_figures` (classes,
    preset, dpi, histogram, style) or :func:`~calibviz.viz.render.render_dataset_figure`;
    a prepared case figure is used when the jobs have its classes, bins and options, else
    the process builds one for them.
    """

    def __init__(self, nice: int = 0):
        context = get_context("spawn")
        self._connection, child = context.Pipe()
        self._process = context.Process(target=serve, args=(child, nice), daemon=True,
                                        name="calibviz-figures")
        self._process.start()
        child.close()

    def prepare(self, template, **options) -> None:
        """Build the case figure for ``template`` (a :class:`BinStats` of the run) now."""
        self._send(("prepare", template, options))

    def draw(self, jobs, **options) -> Callable[[], list[Path]]:
        """Start drawing ``jobs`` (``(case id, BinStats, path)``); returns a function that
        waits and gives the paths written, or raises ``RuntimeError`` saying what failed."""
        self._send(("draw", list(jobs), options))
        return self._answer

    def draw_dataset(self, stats, path, **options) -> Callable[[], Path]:
        """Start drawing the dataset figure of ``stats`` (the run's :class:`BinStats`) to
        ``path``; returns a function that waits and gives the path, as :meth:`draw`."""
        self._send(("dataset", (list(stats), path), options))
        return self._answer

    def _answer(self):
        """The answer to the one drawing asked for; ``RuntimeError`` if it failed."""
        try:
            status, value = self._connection.recv()
        except (EOFError, OSError):
            raise RuntimeError("the figure process ended unexpectedly") from None
        if status != "ok":
            raise RuntimeError(value)
        return value

    def close(self) -> None:
        """End the process (after the drawing in progress, at most CLOSE_SECONDS later)."""
        with suppress(OSError):  # already gone
            self._connection.send(None)
        self._connection.close()
        self._process.join(CLOSE_SECONDS)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join()

    def _send(self, message) -> None:
        try:
            self._connection.send(message)
        except OSError:
            raise RuntimeError("the figure process ended unexpectedly") from None


def serve(connection, nice: int = 0) -> None:
    """The process's loop: ``("prepare", template, options)`` builds a case figure,
    ``("draw", jobs, options)`` draws case figures and ``("dataset", (stats, path),
    options)`` the dataset figure, each answered ``("ok", paths)`` or ``("error", text)``;
    ``None`` or a closed pipe ends it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    if nice and hasattr(os, "nice"):
        os.nice(nice)
    from . import layouts  # noqa: F401  (the dataset figure's imports, done now)
    from .casefigure import CaseFigure
    from .presets import get_preset
    from .render import render_case_figures, render_dataset_figure

    prepared, prepared_options = None, None
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        kind, payload, options = message
        try:
            if kind == "prepare":
                style = dict(options)
                dpi = style.pop("dpi", None)
                prepared = CaseFigure(payload, **style)
                prepared.warm(dpi or get_preset(style.get("preset")).dpi)
                prepared_options = options
                continue
            if kind == "dataset":
                answer = render_dataset_figure(*payload, **options)
            else:
                reuse = prepared if options == prepared_options else None
                answer = render_case_figures(payload, case_figure=reuse, **options)
            connection.send(("ok", answer))
        except Exception as error:  # told to the caller, who draws the figures itself
            if kind != "prepare":
                connection.send(("error", f"{type(error).__name__}: {error}"))
