"""The per-image figure of a run, built once and redrawn for every case.

Every case of a run has the same classes and bins, so the figure (axes, ticks, labels,
legend, layout) is the same for all of them; only the data artists change. A
:class:`CaseFigure` builds the figure once, lays it out once for the widest count labels
any case can have (``100M``), then fixes that layout, and :meth:`CaseFigure.draw` replaces
the bars, markers, metrics, MCE arrow, count bars and count-axis scale of each case.
:func:`calibviz.viz.plot_case` draws through the same path, so a figure reused for many
cases looks exactly like one built for a single case, and every case figure of a run has
its panels in the same place. ``draw`` moves the bars, markers and metrics box of the case
before instead of rebuilding them.

:meth:`CaseFigure.save` writes a PNG by blitting: the parts no case changes (panel frames
without their outlines, ticks, labels, titles, diagonals) are drawn once per resolution
and kept as pixels; each case restores them and draws only its own artists, in the order
a full draw would (the same pixels as ``savefig``, in about half the time). Change the
figure through :meth:`CaseFigure.draw` only: other changes would miss the kept pixels.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib
import numpy as np

from ..stats import BinStats
from ..store import write_atomic
from .annotate import LAYOUT_COUNTS, needs_log, style_count_axis
from .displays import DIAGRAM_LABELS, ReliabilityDiagramDisplay
from .figures import check_format, figure_bytes, figure_legend, outer_labels, panel_grid
from .presets import Preset, get_preset
from .raster import at_dpi, encode_png, hidden, plain_savefig
from .selection import resolve_classes


class CaseFigure:
    """Reliability diagrams of the classes of one image at a time, in one reusable figure.

    ``template``: any :class:`BinStats` of the run (its classes and bins); ``classes``
    (names or indices, default all), ``histogram``, ``preset`` and ``style`` (passed to
    :meth:`ReliabilityDiagramDisplay.plot`) as in :func:`calibviz.viz.plot_case`.

    >>> from calibviz import bin_image
    >>> rng = np.random.default_rng(0)
    >>> p = rng.random((2, 500)); p /= p.sum(axis=0)
    >>> stats = [bin_image(p, (rng.random(500) < p[1]).astype(int)) for _ in range(2)]
    >>> case_figure = CaseFigure(stats[0])
    >>> [len(case_figure.draw(f"case {i}", s)) for i, s in enumerate(stats)]
    [2, 2]
    """

    def __init__(self, template: BinStats, *, classes: Sequence[int | str] | None = None,
                 histogram: bool = True, preset: str | Preset | None = None, **style):
        self.preset = get_preset(preset)
        self.picked = resolve_classes(template, classes)
        self.class_names = tuple(template.class_names)
        self.edges = np.array(template.edges, dtype=np.float64)
        self.histogram = histogram
        self._background = None  # (dpi, pixels of the parts no case changes)
        empty = BinStats.zeros(len(self.picked), self.edges,
                               class_names=[self.class_names[c] for c in self.picked])
        with matplotlib.rc_context(self.preset.rc()):
            self.figure, panels, _ = panel_grid(len(self.picked), self.preset, histogram)
            self.displays = []
            for (ax, hist_ax), c in zip(panels, range(len(self.picked)), strict=True):
                display = ReliabilityDiagramDisplay.from_stats(empty, c)
                self.displays.append(display.plot(ax, hist_ax=hist_ax, histogram=histogram,
                                                  legend=False, **style))
            self.legend = figure_legend(self.figure, self.displays[0].legend_handles(),
                                        DIAGRAM_LABELS, " ")
            outer_labels(self.figure, panels, self.preset.columns(len(self.picked)))
            self._fix_layout()
            self.title_ = self._title_text()

    def _fix_layout(self) -> None:
        """Lay the figure out once, with the widest count labels, then keep that layout."""
        hist_axes = [d.hist_ax_ for d in self.displays if d.hist_ax_ is not None]
        for ax in hist_axes:
            style_count_axis(ax, log=True)
            ax.set_ylim(*LAYOUT_COUNTS)
        self.figure.get_layout_engine().execute(self.figure)
        # no engine at all (not matplotlib's placeholder): saving then skips a whole layout
        # draw per case (2.3x faster saves, identical pixels)
        with matplotlib.rc_context({"figure.autolayout": False,
                                    "figure.constrained_layout.use": False}):
            self.figure.set_layout_engine(None)
        for ax in hist_axes:
            ax.autoscale(axis="y")

    def _title_text(self):
        """The case's name, centred where the legend's blank title is, as a text of the
        figure: the legend then never changes (it is drawn with the static parts, once per
        resolution; a title in the legend made it a case artist, 20 ms a case)."""
        renderer = self.figure.canvas.get_renderer()
        self.legend.draw(renderer)  # places the title (scratch pixels, redrawn on saving)
        title = self.legend.get_title()
        extent = title.get_window_extent(renderer)
        baseline = title.get_transform().transform(title.get_position())[1]
        x, y = self.figure.transFigure.inverted().transform(
            ((extent.x0 + extent.x1) / 2, baseline))
        return self.figure.text(x, y, "", ha="center", va="baseline",
                                fontproperties=title.get_fontproperties(),
                                color=title.get_color())

    def fits(self, stats: BinStats) -> bool:
        """Whether ``stats`` has the classes and bins this figure was built for."""
        return (tuple(stats.class_names) == self.class_names
                and np.array_equal(stats.edges, self.edges))

    def draw(self, title: str, stats: BinStats) -> list[ReliabilityDiagramDisplay]:
        """Draw the case ``stats`` (same classes and bins as the template) under
        ``title``; returns its displays, one per panel."""
        if not self.fits(stats):
            raise ValueError("a case figure draws cases with the classes and bins it was "
                             f"built for ({', '.join(self.class_names)}; "
                             f"{self.edges.size - 1} bins)")
        log = needs_log(*(stats.count[c] for c in self.picked)) if self.histogram else None
        with matplotlib.rc_context(self.preset.rc()):
            self.displays = [
                ReliabilityDiagramDisplay.from_stats(stats, c).redraw_over(old, log_counts=log)
                for old, c in zip(self.displays, self.picked, strict=True)]
            self.title_.set_text(str(title) if title else "")
        return self.displays

    def save(self, path, *, dpi: int | None = None):
        """Write the figure as drawn last (format from the suffix) atomically; returns the
        path."""
        path = Path(path)
        return write_atomic(path, self.image(path.suffix, dpi=dpi))

    def image(self, fmt: str = "png", *, dpi: int | None = None) -> bytes:
        """The figure as drawn last, as the contents of a ``fmt`` file (``png``, ``pdf``,
        ``svg``) at ``dpi`` (default the preset's): a PNG from the kept static pixels
        (:meth:`render`), the others through ``savefig``."""
        dpi = dpi or self.preset.dpi
        if check_format(fmt) != "png" or not plain_savefig():
            return figure_bytes(self.figure, fmt, dpi=dpi, preset=self.preset)
        return encode_png(self.render(dpi), dpi)

    def render(self, dpi: float) -> np.ndarray:
        """The figure as drawn last, at ``dpi``: a uint8 RGBA view ``[H, W, 4]`` of the
        canvas (valid until the next draw). The static parts are drawn once per ``dpi``
        and restored from their pixels; the artists of the case are drawn over them."""
        with matplotlib.rc_context(self.preset.rc()), at_dpi(self.figure, dpi):
            self._draw_background(dpi)
            renderer = self.figure.canvas.get_renderer()
            renderer.restore_region(self._background[1])
            for display in self.displays:  # count rows: autoscale to this case's bars now
                if display.hist_ax_ is not None:
                    display.hist_ax_.get_ylim()
            for artist in self._case_artists():
                artist.draw(renderer)
            return np.asarray(renderer.buffer_rgba())

    def warm(self, dpi: float) -> None:
        """Draw the static parts at ``dpi`` now (what the first PNG save at ``dpi`` does)."""
        with matplotlib.rc_context(self.preset.rc()), at_dpi(self.figure, dpi):
            self._draw_background(dpi)

    def _draw_background(self, dpi: float) -> None:
        """Draw and keep the parts no case changes, unless kept at this ``dpi`` already."""
        if self._background is None or self._background[0] != dpi:
            with hidden(self._case_artists()):
                self.figure.canvas.draw()
            self._background = (dpi, self.figure.canvas.copy_from_bbox(self.figure.bbox))

    def _case_artists(self) -> list:
        """What a case draws, in the order a full draw paints it: per panel the gap bars,
        the panel outline (over the bars), markers, metrics and MCE arrow (by z-order),
        then the count bars, the count row's outline and its y axis (its scale changes per
        case; its x axis does not); the title (the case's name) last."""
        out = []
        for display in self.displays:
            out += _in_zorder(display.bars_, display.ax_.spines.values(), display.markers_,
                              display.text_, display.mce_arrow_)
            if display.hist_ax_ is not None:
                out += _in_zorder(display.hist_bars_, display.hist_ax_.spines.values(),
                                  display.hist_ax_.yaxis)
        return [*out, self.title_]


def _in_zorder(*groups) -> list:
    """The artists of ``groups`` (artists, lists of them, containers, or ``None``) sorted
    by z-order, stably, as ``Axes.draw`` sorts its children."""
    flat = []
    for group in groups:
        if group is None:
            continue
        flat += list(group) if isinstance(group, Iterable) else [group]
    return sorted(flat, key=lambda artist: artist.get_zorder())
