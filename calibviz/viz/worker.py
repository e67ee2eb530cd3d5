"""A process that draws a run's case figures beside the one that evaluates it.

Started when a run starts, :class:`FigureWorker` has its imports (Matplotlib, calibviz)
done while the cases are evaluated, builds the run's
:class:`~calibviz.viz.casefigure.CaseFigure` (and its static pixels) as soon as the first
case is in (:meth:`FigureWorker.prepare`), and draws the chosen cases
(:meth:`FigureWorker.draw`) while the caller writes the reports and the dataset figure.
The process is spawned (the parent may hold Numba's threads, which ``fork`` would copy
locked), keeps its case figure in a local variable of :func:`serve` (no module state), and
ends when the pipe is closed, :meth:`FigureWorker.close` is called or the parent dies.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from multiprocessing import get_context
from pathlib import Path

#: Seconds :meth:`FigureWorker.close` waits for the process before ending it.
CLOSE_SECONDS = 5.0


class FigureWorker:
    """One spawned process drawing case figures; ``prepare`` and ``draw`` return at once.

    ``options`` are those of :func:`~calibviz.viz.render.render_case_figures` (classes,
    preset, dpi, histogram, style); a prepared figure is used when the jobs have its
    classes, bins and options, else the process builds one for them.
    """

    def __init__(self):
        context = get_context("spawn")
        self._connection, child = context.Pipe()
        self._process = context.Process(target=serve, args=(child,), daemon=True,
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

        def wait() -> list[Path]:
            try:
                status, value = self._connection.recv()
            except (EOFError, OSError):
                raise RuntimeError("the figure process ended unexpectedly") from None
            if status != "ok":
                raise RuntimeError(value)
            return value

        return wait

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


def serve(connection) -> None:
    """The process's loop: ``("prepare", template, options)`` builds a case figure,
    ``("draw", jobs, options)`` draws and answers ``("ok", paths)`` or ``("error", text)``;
    ``None`` or a closed pipe ends it."""
    from .casefigure import CaseFigure
    from .presets import get_preset
    from .render import render_case_figures

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
            reuse = prepared if options == prepared_options else None
            connection.send(("ok", render_case_figures(payload, case_figure=reuse,
                                                       **options)))
        except Exception as error:  # told to the caller, who draws the cases itself
            if kind == "draw":
                connection.send(("error", f"{type(error).__name__}: {error}"))
