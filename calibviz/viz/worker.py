"""A process that draws a run's figures beside the one that evaluates it.

Started when a run starts, a :class:`FigureWorker` does its imports (Matplotlib) while the
cases are evaluated, at a lower priority (``nice``) so that it takes only the time the
evaluation leaves idle, and builds the run's :class:`~calibviz.viz.casefigure.CaseFigure`
(and its static pixels) as soon as the first case is in (:meth:`FigureWorker.prepare`);
in a long run it also lays the dataset figure out ahead (:meth:`FigureWorker.lay_out`: the
layout depends on the panels and the number of images, not on the data).
:meth:`FigureWorker.draw` then draws the chosen case figures and, in a copy of itself
made with ``fork`` (imports and case figure included, for free), the dataset figure and
a share of the case figures, while the caller writes the reports.

The worker is spawned, not forked: the caller may hold Numba's threads, which ``fork``
would copy locked; the worker itself runs no threads of its own, so its ``fork`` is
safe. It keeps its case figure and layout in local variables of :func:`serve` (no module
state) and ends when the pipe is closed, :meth:`FigureWorker.close` is called or the
parent dies.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from contextlib import suppress
from multiprocessing import get_context
from pathlib import Path

from ..interrupts import leave_ctrl_c_to_parent, starting_children

#: The dataset figure takes about as long as this many case figures (how they are shared:
#: 1.5 s against 166 ms for the demo's three classes); laid out ahead of time
#: (:meth:`FigureWorker.lay_out`), as long as this many (0.86 s).
DATASET_AS_CASES = 9
LAID_OUT_DATASET_AS_CASES = 5
#: Whether the worker can draw the dataset figure beside the case figures (POSIX).
CAN_FORK = hasattr(os, "fork")


class FigureWorker:
    """One spawned process drawing figures; its methods return at once. ``nice``: how
    much lower its priority is (0: the same; POSIX only).

    ``options`` are those of :func:`~calibviz.viz.render.render_case_figures` (classes,
    preset, dpi, histogram, style); the prepared case figure is used when the jobs have
    its classes, bins and options, else the process builds one for them.
    """

    def __init__(self, nice: int = 0):
        context = get_context("spawn")
        self._connection, child = context.Pipe()
        self._process = context.Process(target=serve, args=(child, nice), daemon=True,
                                        name="calibviz-figures")
        with starting_children():  # Ctrl-C is the parent's, even while this one imports
            self._process.start()
        child.close()
        self._busy = False

    def prepare(self, template, **options) -> None:
        """Build the case figure for ``template`` (a :class:`BinStats` of the run) now."""
        self._send(("prepare", template, options))

    def lay_out(self, template, n_images: int, **options) -> None:
        """Lay the dataset figure of ``n_images`` images out now, with ``template`` (a
        :class:`BinStats` of the run) standing in for them (``options``: those of
        :func:`~calibviz.viz.render.render_dataset_figure`); :meth:`draw` then uses that
        layout when its dataset figure has these options and as many digits of images."""
        self._send(("layout", (template, n_images), options))

    def draw(self, jobs, dataset=None, **options) -> Callable[[], dict]:
        """Start drawing ``jobs`` (``(case id, BinStats, path)``) and, where the process
        can fork (:data:`CAN_FORK`), the dataset figure ``dataset`` (``(stats, path,
        options)`` of :func:`~calibviz.viz.render.render_dataset_figure`, or ``None``).
        Returns a function that waits and gives ``{"cases": [Path | None] (per job),
        "dataset": Path | None, "prepared": bool}`` (:func:`draw_all`): ``None`` for a
        figure not drawn there, for the caller to draw; ``RuntimeError`` when the process
        is gone."""
        self._send(("draw", (list(jobs), dataset), options))
        self._busy = True
        return self._answer

    def _answer(self) -> dict:
        try:
            status, value = self._connection.recv()
        except (EOFError, OSError):
            raise RuntimeError("the figure process ended unexpectedly") from None
        self._busy = False
        if status != "ok":
            raise RuntimeError(value)
        return value

    def close(self) -> None:
        """End the process without waiting for it: an idle one is told to stop, one still
        drawing (whose figures nobody waits for) is stopped."""
        with suppress(OSError):  # already gone
            self._connection.send(None)
        self._connection.close()
        if self._busy:
            self._process.terminate()

    def _send(self, message) -> None:
        try:
            self._connection.send(message)
        except OSError:
            raise RuntimeError("the figure process ended unexpectedly") from None


class HereWorker:
    """:class:`FigureWorker`'s ``draw`` for a process that runs no threads of its own
    (:func:`can_fork_here`), such as ``calibviz plot``: the figures are drawn when the
    result is asked for, the case figures here and the dataset figure with a share of
    them in a fork of this process (its imports and case figure for free)."""

    def draw(self, jobs, dataset=None, **options) -> Callable[[], dict]:
        return lambda: draw_all(list(jobs), dataset, None, options)


def can_fork_here() -> bool:
    """Whether :class:`HereWorker` may fork this process and it pays: POSIX, two cores
    or more, and no threads that a fork would copy locked (no Python thread besides this
    one, no Numba threading layer started)."""
    import sys
    import threading

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    if not (CAN_FORK and cores >= 2 and threading.active_count() == 1):
        return False
    if "numba" in sys.modules:
        try:
            sys.modules["numba"].threading_layer()
            return False  # its worker threads run
        except ValueError:  # not started
            pass
    return True


def serve(connection, nice: int = 0) -> None:
    """The process's loop: ``("prepare", template, options)`` builds a case figure;
    ``("layout", (template, n_images), options)`` lays the dataset figure out;
    ``("draw", (jobs, dataset), options)`` draws (:func:`draw_all`) and answers ``("ok",
    drawn)`` or ``("error", text)``; ``None`` or a closed pipe ends it."""
    leave_ctrl_c_to_parent()  # Ctrl-C is the parent's to handle
    if nice and hasattr(os, "nice"):
        os.nice(nice)
    from . import layouts, render  # noqa: F401  (the drawing's imports, done now)

    prepared = None
    layout = None  # (n_images, options, FrozenLayout) of the dataset figure
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
                prepared = (case_figure(payload, options), options)
                continue
            if kind == "layout":
                layout = (payload[1], options, dataset_layout_for(*payload, options))
                continue
            jobs, dataset = payload
            figure = prepared[0] if prepared and prepared[1] == options else None
            if dataset is not None and layout is not None:
                dataset = _with_layout(dataset, *layout)
            connection.send(("ok", draw_all(jobs, dataset, figure, options)))
        except Exception as error:  # told to the caller, who draws the figures itself
            if kind != "prepare":
                connection.send(("error", f"{type(error).__name__}: {error}"))


def dataset_layout_for(template, n_images: int, options: dict):
    """The :class:`~calibviz.viz.frozen.FrozenLayout` of the dataset figure of ``n_images``
    images drawn with ``options`` (those of ``render_dataset_figure``), laid out on
    ``template``'s classes and bins."""
    from .layouts import dataset_layout
    from .presets import get_preset

    style = dict(options)
    preset = get_preset(style.pop("preset", None))
    dpi = style.pop("dpi", None) or preset.dpi
    return dataset_layout([template], n_images, dpi=dpi, preset=preset, **style)


def _with_layout(dataset, n_images: int, options: dict, layout):
    """``dataset`` (``(stats, path, options)``) given ``layout`` when it was made for these
    options and labels as wide (the same number of digits of images and image-class
    pairs: the layout rule of :func:`~calibviz.viz.layouts.dataset_layout`)."""
    stats, path, dataset_options = dataset
    if dataset_options != options or not stats:
        return dataset
    n_classes = stats[0].n_classes if options.get("classes") is None else len(
        options["classes"])
    widths = [(len(str(n)), len(str(n * n_classes))) for n in (n_images, len(stats))]
    if widths[0] != widths[1]:
        return dataset
    return stats, path, {**dataset_options, "layout": layout}


def case_figure(template, options: dict, *, warm: bool = True):
    """A :class:`~calibviz.viz.casefigure.CaseFigure` for ``template`` with ``options``
    (those of ``render_case_figures``), with ``warm`` its static pixels drawn at the PNG
    resolution."""
    from .casefigure import CaseFigure
    from .figures import pin_empty_labels
    from .presets import get_preset

    style = dict(options)
    dpi = style.pop("dpi", None)
    figure = CaseFigure(template, **style)
    pin_empty_labels(figure.figure)  # drawn here only
    if warm:
        figure.warm(dpi or get_preset(style.get("preset")).dpi)
    return figure


def draw_all(jobs, dataset, figure, options: dict) -> dict:
    """Draw ``jobs`` with ``figure`` (built here when ``None`` or not fitting) and, when
    ``dataset`` is given, that figure and the last jobs' share (:data:`DATASET_AS_CASES`)
    in a forked copy of this process. Returns ``{"cases": [Path | None], "dataset": Path
    | None, "prepared": bool}``: ``None`` where a figure was not drawn; whether ``figure``
    (the one prepared) drew the cases."""
    from .render import render_case_figures

    prepared = figure is not None and bool(jobs) and figure.fits(jobs[0][1])
    if jobs and not prepared:
        figure = case_figure(jobs[0][1], options,  # before the fork: both use it
                             warm=Path(jobs[0][2]).suffix.lower() == ".png")
    child, theirs = None, 0
    if dataset is not None and CAN_FORK:
        weight = (LAID_OUT_DATASET_AS_CASES if "layout" in dataset[2]
                  else DATASET_AS_CASES)
        theirs = max(0, (len(jobs) - weight) // 2)
        child = _fork_drawing(dataset, jobs[len(jobs) - theirs:], figure, options)
    own, shared = jobs[:len(jobs) - theirs], jobs[len(jobs) - theirs:]
    drawn = {"cases": [None] * len(jobs), "dataset": None, "prepared": prepared}
    with suppress(Exception):  # what is not drawn here, the caller draws (and reports)
        drawn["cases"][:len(own)] = render_case_figures(own, case_figure=figure, **options)
    if child is not None and os.waitpid(child, 0)[1] == 0:
        drawn["dataset"] = Path(dataset[1])
        drawn["cases"][len(own):] = [Path(path) for _, _, path in shared]
    return drawn


def _fork_drawing(dataset, jobs, figure, options: dict) -> int | None:
    """In a forked child, draw ``dataset`` (``(stats, path, options)``), then ``jobs``;
    the child exits 0 when all are written. Returns its pid, or ``None`` when no process
    can be forked (the caller then draws them)."""
    from .render import render_case_figures, render_dataset_figure

    try:
        with warnings.catch_warnings():  # this process runs no threads of its own
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
    except OSError:
        return None
    if pid:
        return pid
    status = 1
    try:
        stats, path, dataset_options = dataset
        render_dataset_figure(stats, path, **dataset_options)
        render_case_figures(jobs, case_figure=figure, **options)
        status = 0
    finally:
        os._exit(status)
