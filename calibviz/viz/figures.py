"""Figure-level building blocks: the only place that builds a matplotlib ``Figure``.

``new_figure`` makes a figure on the Agg canvas (never pyplot), ``single_panel`` and
``panel_grid`` lay out panels with optional voxel-count rows, ``figure_legend`` and
``outer_labels`` label a multi-panel figure once, ``make_norm`` builds the colour norm of a
reliability histogram, ``figure_bytes`` encodes PNG, PDF or SVG and ``save_figure`` writes
them atomically. Presets are applied inside ``matplotlib.rc_context`` only: global
matplotlib state is never changed.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm, Normalize, PowerNorm
from matplotlib.figure import Figure

from ..store import write_atomic
from .presets import (  # noqa: F401  (check_format: public here too)
    FORMATS,
    NORMS,
    SIZE_PRESETS,
    Preset,
    check_format,
    check_norm,
    get_preset,
)
from .raster import draw_png, plain_savefig

__all__ = [
    "FORMATS", "NORMS", "SIZE_PRESETS", "Preset", "figure_bytes", "figure_legend", "get_preset",
    "make_norm", "new_figure", "outer_labels", "panel_grid", "save_figure", "single_panel",
]


def new_figure(width: float, height: float, layout: str = "compressed") -> Figure:
    """A figure on the Agg canvas laid out by matplotlib's layout engine (``compressed``:
    constrained layout that closes the gaps around fixed-aspect panels); no pyplot."""
    figure = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(figure)
    return figure


def single_panel(histogram: bool, preset: Preset, colorbar: bool = False):
    """``(figure, ax, hist_ax)``: a stand-alone figure with one square panel and, with
    ``histogram``, a count row below (else ``hist_ax`` is ``None``)."""
    width = preset.width or preset.panel_width * (1.35 if colorbar else 1.15)
    text = preset.font_size / 72
    side = width - 5 * text - (8 * text if colorbar else 0)
    height = side * (1.3 if histogram else 1.0) + (11 if colorbar else 9) * text
    figure = new_figure(width, height)
    if histogram:
        ax, hist_ax = figure.subplots(2, 1, sharex=True, height_ratios=[4, 1])
        return figure, ax, hist_ax
    return figure, figure.subplots(), None


def panel_grid(n_panels: int, preset: Preset, histogram: bool, *, colorbar: bool = False,
               top_labels: bool = False):
    """``(figure, [(ax, hist_ax)] per panel, side)`` on one grid; panels fill rows left to
    right, ``side`` is a panel's width in inches. Without a fixed width the figure is wide
    enough for panels of 85 % of the preset's ``panel_width`` beside the axis names and
    colour bar. The height follows from the width so that square panels leave little
    empty space."""
    n_cols = preset.columns(n_panels)
    n_rows = math.ceil(n_panels / n_cols)
    text = preset.font_size / 72  # one line of text, inches
    extra = 5 * text + (7 * text if colorbar else 0)  # axis names, colour bar
    width = preset.figure_width(n_cols)
    if preset.width is None:  # free width: panels at least 85 % of panel_width wide
        width = max(width, n_cols * (0.85 * preset.panel_width + 3.0 * text) + extra)
    side = (width - extra) / n_cols - 3.0 * text
    side = max(side, 0.5)
    per_row = side * (1.3 if histogram else 1.0) + (5.0 if histogram else 3.5) * text
    if top_labels:
        per_row += 1.8 * text
    figure = new_figure(width, n_rows * per_row + 3.5 * text)
    rows_per_panel = 2 if histogram else 1
    ratios = [4, 1] * n_rows if histogram else [1] * n_rows
    grid = figure.add_gridspec(n_rows * rows_per_panel, n_cols, height_ratios=ratios)
    panels = []
    for index in range(n_panels):
        row, col = divmod(index, n_cols)
        ax = figure.add_subplot(grid[row * rows_per_panel, col])
        hist_ax = None
        if histogram:
            hist_ax = figure.add_subplot(grid[row * rows_per_panel + 1, col], sharex=ax)
        panels.append((ax, hist_ax))
    return figure, panels, side


def figure_legend(figure: Figure, handles, labels, title: str | None = None):
    """One legend above the panels; it carries the figure title (a separate suptitle and an
    outside legend would be stacked on top of each other by the layout engine)."""
    return figure.legend(handles, labels, loc="outside upper center", ncol=len(handles),
                         frameon=False, handlelength=1.5, columnspacing=1.0, title=title,
                         title_fontsize=matplotlib.rcParams["figure.titlesize"])


def outer_labels(figure: Figure, panels, n_cols: int) -> None:
    """With several panels, the axis names are said once for the figure; the count rows
    keep their unit on the first column only."""
    if len(panels) == 1:
        return
    for index, (ax, hist_ax) in enumerate(panels):
        xlabel = (hist_ax or ax).get_xlabel()
        ylabel = ax.get_ylabel().replace("\n", " ")
        ax.set_ylabel("")
        (hist_ax or ax).set_xlabel("")
        if hist_ax is not None and index % n_cols:
            hist_ax.set_ylabel("")
    figure.supxlabel(xlabel)
    figure.supylabel(ylabel)


def pin_empty_labels(figure: Figure) -> None:
    """Pin the axis names left empty where they are: Matplotlib would place each one at
    every draw (and layout pass) by measuring the tick labels of its axis and of the axes
    sharing it, a fifth of a dataset figure's time, to draw nothing. Same pixels; for
    figures drawn and saved here, not for one handed on (a name given later would stay
    at the pinned place)."""
    for ax in figure.axes:
        for axis in (ax.xaxis, ax.yaxis):
            if not axis.label.get_text():
                axis.set_label_coords(0.5, 0.5)


def make_norm(norm: str | Normalize = "power", *, gamma: float = 0.35, vmin: float | None = None,
              vmax: float = 1.0) -> Normalize:
    """The colour norm of a reliability histogram: ``"power"`` (``PowerNorm(gamma)``, the
    paper's γ = 0.35), ``"log"`` (zeros drawn in the lowest colour) or ``"linear"``;
    a ``Normalize`` instance is returned as is."""
    if isinstance(norm, Normalize):
        return norm
    if not isinstance(norm, str):
        raise ValueError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")
    check_norm(norm, gamma)
    if norm == "power":
        return PowerNorm(gamma=gamma, vmin=0.0 if vmin is None else vmin, vmax=vmax)
    if norm == "log":
        return LogNorm(vmin=1e-3 if vmin is None else vmin, vmax=vmax, clip=True)
    return Normalize(vmin=0.0 if vmin is None else vmin, vmax=vmax)


def save_figure(figure: Figure, path: str | Path, *, dpi: int | None = None,
                preset: str | Preset | None = None, fmt: str | None = None) -> Path:
    """Write ``figure`` as PNG (at ``dpi``, default the preset's), PDF or SVG (vector; the
    heatmap cells are embedded as an image). The format follows the suffix unless ``fmt``.
    The file is written atomically (a reader never sees half a figure); the bytes are
    :func:`figure_bytes`'."""
    path = Path(path)
    return write_atomic(path, figure_bytes(figure, fmt or path.suffix, dpi=dpi, preset=preset))


def figure_bytes(figure: Figure, fmt: str = "png", *, dpi: int | None = None,
                 preset: str | Preset | None = None) -> bytes:
    """The file contents of ``figure`` in format ``fmt`` (``png``, ``pdf`` or ``svg``; a
    suffix such as ``.png`` too) at ``dpi`` (default the preset's), with reproducible
    metadata. A PNG is drawn with the layout run once (:func:`~calibviz.viz.raster.draw_png`,
    the same pixels as ``savefig``) unless the user's ``savefig.*`` settings ask more."""
    fmt = check_format(fmt)
    preset = get_preset(preset)
    metadata = {"Software": "calibviz"} if fmt == "png" else {"Creator": "calibviz"}
    if fmt == "pdf":
        metadata["CreationDate"] = None
    if fmt == "svg":
        metadata = {"Date": None, "Creator": "calibviz"}
    buffer = io.BytesIO()
    with matplotlib.rc_context(preset.rc()):
        if fmt == "png" and plain_savefig():  # savefig's pixels, one layout draw fewer
            return draw_png(figure, dpi or preset.dpi)
        figure.savefig(buffer, format=fmt, dpi=dpi or preset.dpi, metadata=metadata)
    return buffer.getvalue()
