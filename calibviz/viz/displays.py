"""Single-Axes display objects for calibration figures, in the manner of scikit-learn's
``CalibrationDisplay``: ``__init__`` only stores the data, the ``from_...`` constructors
take calibviz objects (metrics come from :mod:`calibviz.metrics`, column normalisation from
:mod:`calibviz.stats`; nothing is computed here), and ``plot(ax=None, **style)`` draws into
the given axes (or a new figure sized by a preset), stores its artists and returns ``self``.

* :class:`ReliabilityDiagramDisplay`: one class of one image (or pooled images): gap bars
  between mean confidence and frequency, frequency markers, the diagonal, ECE / ACE / MCE,
  an arrow to the MCE bin and an optional voxel-count histogram below.
* :class:`DatasetReliabilityHistogramDisplay`: one class over a dataset: the
  column-normalised reliability histogram, images per column, the micro (pooled) curve and
  an optional voxel-count histogram below.

>>> import numpy as np
>>> from calibviz import bin_image
>>> rng = np.random.default_rng(0)
>>> p = rng.random(1000)
>>> stats = bin_image(p, (rng.random(1000) < p**2).astype(int), classes=[1], n_bins=10)
>>> display = ReliabilityDiagramDisplay.from_stats(stats).plot()
>>> len(display.bars_) == int(stats.nonempty.sum())
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib.colors import Normalize
from matplotlib.lines import Line2D
from matplotlib.markers import TICKUP
from matplotlib.patches import Rectangle
from matplotlib.transforms import blended_transform_factory, offset_copy

from ..aggregate import reliability_histogram
from ..metrics import ace, ece, gap_metrics, mce, one_stats
from ..stats import BinStats, ReliabilityHistogram, column_normalised, images_per_column
from .annotate import (  # noqa: F401  (format_value, style_colorbar: public here)
    XLABEL,
    YLABEL,
    bars,
    count_histogram,
    draw_band,
    finish_axes,
    format_value,
    mce_arrow,
    metrics_box,
    style_colorbar,
)
from .figures import figure_legend, make_norm, single_panel
from .presets import Preset, get_preset

ALL_CLASSES = "all classes"
#: The images-per-column row (points): tick length, gap to the counts, gap to the row's name.
COUNT_TICK, COUNT_PAD, COUNT_NAME_PAD = 1.5, 1.0, 2.0
#: Labels of the reliability diagram's legend, in the order of ``legend_handles()``.
DIAGRAM_LABELS = ("gap", "frequency", "perfect calibration")


# ---------------------------------------------------------------- reliability diagram
class ReliabilityDiagramDisplay:
    """Reliability diagram of one class of one image.

    Parameters
    ----------
    mean_confidence, frequency : float ``[B]`` per-bin mean probability and observed
        foreground frequency (NaN for empty bins)
    count : ``[B]`` voxels (soft weights) per bin
    edges : float ``[B + 1]`` bin edges in [0, 1]
    nonempty : bool ``[B]`` bins that hold data
    ece, ace, mce : metric values written on the diagram
    class_name : panel title

    ``__init__`` stores its arguments as given (NumPy arrays); :meth:`from_stats` (a class
    of a :class:`BinStats`) and :meth:`from_bins` (plain per-bin arrays, metrics derived
    with :func:`calibviz.metrics.gap_metrics`) check and fill them in.

    Attributes set by :meth:`plot`: ``ax_``, ``hist_ax_``, ``figure_``, ``bars_`` (gap
    bars, one per non-empty bin), ``markers_`` (frequency markers), ``diagonal_``,
    ``text_`` (the metrics box), ``mce_arrow_`` (or ``None``), ``hist_bars_``, ``legend_``.
    """

    def __init__(self, mean_confidence, frequency, count, edges, *, nonempty, ece: float,
                 ace: float, mce: float, class_name: str | None = None):
        self.mean_confidence = mean_confidence
        self.frequency = frequency
        self.count = count
        self.edges = edges
        self.nonempty = nonempty
        self.ece = ece
        self.ace = ace
        self.mce = mce
        self.class_name = class_name

    @classmethod
    def from_stats(cls, stats: BinStats, class_: int | str = 0) -> ReliabilityDiagramDisplay:
        """The diagram of one class (index or name) of a :class:`BinStats`."""
        stats = one_stats(stats, "ReliabilityDiagramDisplay.from_stats")
        c = stats.class_index(class_)
        return cls(
            stats.mean_confidence[c], stats.frequency[c], stats.count[c], stats.edges,
            nonempty=stats.nonempty[c], ece=float(ece(stats)[c]), ace=float(ace(stats)[c]),
            mce=float(mce(stats)[c]), class_name=stats.class_names[c],
        )

    @classmethod
    def from_bins(cls, mean_confidence, frequency, count, edges, *, nonempty=None,
                  ece: float | None = None, ace: float | None = None, mce: float | None = None,
                  class_name: str | None = None) -> ReliabilityDiagramDisplay:
        """The diagram of plain per-bin arrays (shapes checked against ``edges``); bins
        with ``count > 0`` (or ``nonempty``) and finite values are drawn, and metrics not
        given are derived from the bins."""
        mean_confidence = np.asarray(mean_confidence, dtype=np.float64)
        frequency = np.asarray(frequency, dtype=np.float64)
        count = np.asarray(count)
        edges = np.asarray(edges, dtype=np.float64)
        n_bins = edges.size - 1
        for name, value in (("mean_confidence", mean_confidence), ("frequency", frequency),
                            ("count", count)):
            if value.shape != (n_bins,):
                raise ValueError(f"{name} must have shape ({n_bins},) to match "
                                 f"{n_bins + 1} edges, got {value.shape}")
        nonempty = (count > 0) if nonempty is None else np.asarray(nonempty, dtype=bool)
        nonempty = nonempty & np.isfinite(mean_confidence) & np.isfinite(frequency)
        derived = gap_metrics(mean_confidence, frequency, count, nonempty)
        given = (ece, ace, mce)
        values = [float(d if g is None else g) for g, d in zip(given, derived, strict=True)]
        return cls(mean_confidence, frequency, count, edges, nonempty=nonempty,
                   ece=values[0], ace=values[1], mce=values[2], class_name=class_name)

    @property
    def gaps(self) -> np.ndarray:
        """float ``[B]`` ``|mean confidence − frequency|``; NaN for empty bins."""
        return np.where(self.nonempty, np.abs(self.mean_confidence - self.frequency), np.nan)

    def plot(self, ax=None, *, hist_ax=None, histogram: bool = True, title: str | None = None,
             bar_color="tab:red", bar_alpha: float = 0.35, marker: str = "o",
             marker_color="black", marker_size: float | None = None, diagonal_color="0.45",
             show_metrics: bool = True, show_mce: bool = True, legend: bool | None = None,
             log_counts: bool | None = None, xlabel: str = XLABEL, ylabel: str = YLABEL,
             preset: str | Preset | None = None) -> ReliabilityDiagramDisplay:
        """Draw into ``ax`` (a new figure sized by ``preset`` when ``None``; with
        ``histogram`` it gets a count row below). ``hist_ax``: axes for the voxel-count
        histogram when ``ax`` is given. ``legend``: ``None`` puts one legend under a figure
        made here and none into given axes; ``True`` adds one to the axes (lower right).
        ``log_counts``: log count axis (``None``: above a max/min count ratio of 100)."""
        kwargs = {k: v for k, v in locals().items() if k not in ("self", "ax", "preset")}
        if ax is None:
            preset = get_preset(preset)
            with matplotlib.rc_context(preset.rc()):
                self.figure_, ax, kwargs["hist_ax"] = single_panel(histogram, preset)
                self._draw(ax, **kwargs)
                if legend is None:
                    self.legend_ = figure_legend(self.figure_, self.legend_handles(),
                                                 DIAGRAM_LABELS)
            return self
        self.figure_ = ax.figure
        return self._draw(ax, **kwargs)

    def legend_handles(self) -> list:
        """Stand-ins for the gap bars, frequency markers and diagonal, drawn in their style
        (labels: DIAGRAM_LABELS); they exist even when no bin holds data."""
        style = self._style
        bar = Rectangle((0, 0), 1, 1, facecolor=style["bar_color"], alpha=style["bar_alpha"],
                        edgecolor=style["bar_color"], linewidth=0.4)
        dot = Line2D([], [], linestyle="none", marker=style["marker"],
                     markersize=style["marker_size"], color=style["marker_color"])
        return [bar, dot, self.diagonal_]

    def _draw(self, ax, *, hist_ax, histogram, title, legend, xlabel, ylabel,
              diagonal_color, **style) -> ReliabilityDiagramDisplay:
        """Draw the frame (diagonal, labels, limits), then the data."""
        self.ax_, self.hist_ax_ = ax, (hist_ax if histogram else None)
        style["marker_size"] = (style["marker_size"]
                                or 0.32 * matplotlib.rcParams["font.size"])
        size = matplotlib.rcParams["legend.fontsize"]
        style["font_size"] = (size if isinstance(size, (int, float))
                              else matplotlib.rcParams["font.size"])
        self._style = style
        # The panel's side in points before layout (the layout engine shrinks panels a
        # little, hence 0.85): label sizes in axes fractions follow from it.
        position = ax.get_position()
        inches = self.figure_.get_size_inches()
        self._side = max(min(position.width * inches[0], position.height * inches[1])
                         * 72 * 0.85, 1.0)
        self.diagonal_ = ax.plot([0, 1], [0, 1], linestyle="--", color=diagonal_color,
                                 linewidth=0.8, label="perfect calibration", zorder=1)[0]
        finish_axes(ax, self.hist_ax_, xlabel=xlabel, ylabel=ylabel,
                    title=self.class_name if title is None else title)
        if self.hist_ax_ is not None:
            self.hist_ax_.set_ylabel("voxels")
        self._draw_data()
        self.legend_ = (ax.legend(self.legend_handles(), DIAGRAM_LABELS, loc="lower right")
                        if legend else None)
        return self

    def _draw_data(self, previous: ReliabilityDiagramDisplay | None = None) -> None:
        """The artists that depend on the data: bars, markers, metrics, arrow, counts;
        those of ``previous`` (drawn in the same axes) are moved instead of rebuilt."""
        ax, style = self.ax_, self._style
        keep = self.nonempty
        lo = np.minimum(self.mean_confidence, self.frequency)[keep]
        left = self.edges[:-1][keep]
        widths = np.diff(self.edges)[keep]
        self.bars_ = bars(ax, left, self.gaps[keep], widths, bottom=lo, label="gap",
                          reuse=previous and previous.bars_, facecolor=style["bar_color"],
                          alpha=style["bar_alpha"], edgecolor=style["bar_color"],
                          linewidth=0.4, zorder=2)
        x, y = self.mean_confidence[keep], self.frequency[keep]
        if previous is not None:
            self.markers_ = previous.markers_
            self.markers_.set_data(x, y)
        else:
            self.markers_ = ax.plot(x, y, linestyle="none", marker=style["marker"],
                                    markersize=style["marker_size"],
                                    color=style["marker_color"], label="frequency",
                                    zorder=3)[0]
        self.text_ = previous.text_ if previous is not None else None
        if style["show_metrics"]:
            lines = "\n".join([f"ECE {format_value(self.ece)}", f"ACE {format_value(self.ace)}",
                               f"MCE {format_value(self.mce)}"])
            self.text_ = metrics_box(ax, lines, style["font_size"], reuse=self.text_)
        if previous is not None and previous.mce_arrow_ is not None:
            previous.mce_arrow_.remove()
        self.mce_arrow_ = (mce_arrow(ax, self, side=self._side, style=style)
                           if style["show_mce"] else None)
        self.hist_bars_ = None
        if self.hist_ax_ is not None:
            if previous is None:
                self.hist_ax_.relim()  # forget the limits of data drawn before
            self.hist_bars_ = count_histogram(self.hist_ax_, self.edges, self.count,
                                              log=style["log_counts"], ylabel=None,
                                              reuse=previous and previous.hist_bars_)

    def redraw_over(self, previous: ReliabilityDiagramDisplay, *,
                    log_counts: bool | None = None) -> ReliabilityDiagramDisplay:
        """Draw this display's data into the axes of ``previous`` (same bins and class),
        taking over its data artists and keeping the frame, labels and layout: the fast
        path for drawing many images with one figure. Returns ``self``."""
        self.figure_, self.ax_, self.hist_ax_ = previous.figure_, previous.ax_, previous.hist_ax_
        self.diagonal_, self.legend_ = previous.diagonal_, previous.legend_
        self._side = previous._side
        self._style = {**previous._style, "log_counts": log_counts}
        self._draw_data(previous)
        return self


# --------------------------------------------------------- dataset reliability histogram
class DatasetReliabilityHistogramDisplay:
    """Dataset reliability histogram of one class (or all classes together).

    Parameters
    ----------
    counts : int ``[B_freq, B_conf]`` images per (frequency bin, confidence bin); row 0 is
        the lowest frequency
    edges : float ``[B + 1]``
    pooled_confidence, pooled_frequency : float ``[B]`` the micro (pooled) curve (NaN empty)
    pooled_count : ``[B]`` pooled voxels per confidence bin (for the count histogram)
    class_name : panel title; n_images : images in the dataset (for the title)
    band : ``(low [B], high [B])`` image-bootstrap band of the pooled frequency, drawn
        around the curve (``calibviz.bootstrap.pooled_frequency_band``), or None

    ``__init__`` stores its arguments as given (NumPy arrays; the curve may be ``None``);
    :meth:`from_histogram` and :meth:`from_stats` take calibviz objects.

    Attributes set by :meth:`plot`: ``ax_``, ``hist_ax_``, ``figure_``, ``mesh_`` (the
    heatmap; ``mesh_.get_array()`` is the column-normalised grid, empty columns masked),
    ``norm_``, ``colorbar_``, ``curve_``, ``diagonal_``, ``count_labels_`` (the images per
    column along the top: one text per column, empty where skipped), ``count_ticks_``
    (their tick marks), ``count_axis_`` (the tick-less top axis naming them),
    ``hist_bars_``.
    """

    def __init__(self, counts, edges, *, pooled_confidence=None, pooled_frequency=None,
                 pooled_count=None, class_name: str | None = None,
                 n_images: int | None = None, band=None):
        self.counts = counts
        self.band = band
        self.edges = edges
        self.pooled_confidence = pooled_confidence
        self.pooled_frequency = pooled_frequency
        self.pooled_count = pooled_count
        self.class_name = class_name
        self.n_images = n_images

    @classmethod
    def from_histogram(cls, histogram: ReliabilityHistogram,
                       class_: int | str = 0) -> DatasetReliabilityHistogramDisplay:
        """One class (index or name) of a :class:`ReliabilityHistogram`, or
        ``class_="all classes"`` for the sum of all class grids (its curve pools the bins of
        every class)."""
        if isinstance(class_, str) and class_ == ALL_CLASSES:
            counts, pooled, c = histogram.all_classes, histogram.pooled.sum_classes(), 0
        else:
            c = histogram.pooled.class_index(class_)
            counts, pooled = histogram.counts[c], histogram.pooled
        return cls(counts, histogram.edges, pooled_confidence=pooled.mean_confidence[c],
                   pooled_frequency=pooled.frequency[c], pooled_count=pooled.count[c],
                   class_name=pooled.class_names[c], n_images=histogram.n_images)

    @classmethod
    def from_stats(cls, stats: Sequence[BinStats], class_: int | str = 0, *,
                   absent: str | None = None) -> DatasetReliabilityHistogramDisplay:
        """From the per-image :class:`BinStats` of a dataset (or a Results: ``absent=None``
        is then its run's absent policy)."""
        return cls.from_histogram(reliability_histogram(stats, absent=absent), class_)

    @property
    def images_per_column(self) -> np.ndarray:
        """int ``[B_conf]`` images with data in each confidence bin."""
        return images_per_column(self.counts)

    @property
    def normalised(self) -> np.ndarray:
        """float ``[B_freq, B_conf]`` each column summed to 1; NaN for empty columns."""
        return column_normalised(self.counts)

    def _check(self) -> None:
        n_bins = np.size(self.edges) - 1
        shape = np.shape(self.counts)
        if len(shape) != 2 or shape[1] != n_bins:
            raise ValueError(f"counts must have shape (B_freq, {n_bins}) to match "
                             f"{n_bins + 1} edges, got {shape}")

    def plot(self, ax=None, *, hist_ax=None, histogram: bool = True, cmap="YlOrRd",
             norm: str | Normalize = "power", gamma: float = 0.35, colorbar: bool = True,
             show_curve: bool = True, show_counts: bool = True, curve_color="tab:blue",
             count_fontsize: float | None = None, title: str | None = None,
             log_counts: bool | None = None, xlabel: str = XLABEL, ylabel: str = YLABEL,
             preset: str | Preset | None = None) -> DatasetReliabilityHistogramDisplay:
        """Draw into ``ax`` (a new figure sized by ``preset`` when ``None``). ``norm``:
        ``"power"`` (γ = ``gamma``), ``"log"``, ``"linear"`` or a ``Normalize``;
        ``colorbar`` adds this panel's own colour bar, placed by matplotlib's layout engine
        (a figure without one, such as ``Figure().subplots(1, 2)``, is given the
        constrained layout, so that the bar and its label keep off the next panel);
        ``show_counts`` writes the images per column along the top (image–class pairs
        for the all-classes panel); ``log_counts`` as in the reliability diagram."""
        kwargs = {k: v for k, v in locals().items() if k not in ("self", "ax", "preset")}
        self._check()
        if ax is None:
            preset = get_preset(preset)
            with matplotlib.rc_context(preset.rc()):
                self.figure_, ax, kwargs["hist_ax"] = single_panel(histogram, preset, colorbar)
                return self._draw(ax, **kwargs)
        self.figure_ = ax.figure
        return self._draw(ax, **kwargs)

    def _draw(self, ax, *, hist_ax, histogram, cmap, norm, gamma, colorbar, show_curve,
              show_counts, curve_color, count_fontsize, title, log_counts, xlabel,
              ylabel) -> DatasetReliabilityHistogramDisplay:
        self.ax_, self.hist_ax_ = ax, hist_ax
        self.norm_ = make_norm(norm, gamma=gamma)
        colours = matplotlib.colormaps[cmap] if isinstance(cmap, str) else cmap
        colours = colours.with_extremes(bad=(0, 0, 0, 0))
        grid = np.ma.masked_invalid(self.normalised)
        edges = np.asarray(self.edges, dtype=np.float64)
        self.mesh_ = ax.pcolormesh(edges, edges, grid, cmap=colours, norm=self.norm_,
                                   shading="flat", rasterized=True, zorder=0)
        self.diagonal_ = ax.plot([0, 1], [0, 1], linestyle="--", color="0.35", linewidth=0.8,
                                 zorder=2)[0]
        self.curve_ = None
        if show_curve:
            x, y = self._curve()
            self.curve_ = ax.plot(x, y,
                                  marker="o", markersize=2.5, linewidth=1.0, color=curve_color,
                                  label="micro (pooled)", zorder=3)[0]
            self.band_ = (None if self.band is None or self.pooled_confidence is None
                          else draw_band(ax, self.pooled_confidence, self.band, curve_color))
        self.count_axis_, self.count_labels_, self.count_ticks_ = None, [], None
        if show_counts:
            self._count_row(ax, count_fontsize, 0.7 if colorbar else 0.85)
        self.hist_bars_ = None
        if hist_ax is not None and histogram:
            count = (self.pooled_count if self.pooled_count is not None
                     else self.images_per_column)
            label = "voxels" if self.pooled_count is not None else "images"
            self.hist_bars_ = count_histogram(hist_ax, self.edges, count, ylabel=label,
                                              log=log_counts)
        if title is None:
            title = self.class_name or ""
            if self.n_images is not None:
                title = f"{title} ({self.n_images} images)" if title else f"{self.n_images} images"
        finish_axes(ax, hist_ax if histogram else None, xlabel=xlabel, ylabel=ylabel,
                     title=title)
        self.colorbar_ = None
        if colorbar:
            if self.figure_.get_layout_engine() is None:
                self.figure_.set_layout_engine("constrained")
            self.colorbar_ = self.figure_.colorbar(self.mesh_, ax=ax, shrink=0.9, pad=0.02,
                                                   fraction=0.06)
            style_colorbar(self.colorbar_)
        return self

    def _curve(self) -> tuple[np.ndarray, np.ndarray]:
        """The pooled curve's points (bins with finite confidence and frequency)."""
        if self.pooled_confidence is None or self.pooled_frequency is None:
            return np.empty(0), np.empty(0)
        x = np.asarray(self.pooled_confidence, dtype=np.float64)
        y = np.asarray(self.pooled_frequency, dtype=np.float64)
        ok = np.isfinite(x) & np.isfinite(y)
        return x[ok], y[ok]

    def _count_row(self, ax, fontsize: float | None, kept: float) -> None:
        """Images per column written along the top, at most 70 % of the font size and every
        k-th when the labels would collide: ``fontsize`` is the size the layout allows
        (``None``: the panel's width before layout times ``kept``, what the layout leaves of
        it, over the number of columns). Drawn as texts with tick marks (an axis of ticks
        drew and laid them out at five times the cost) under a tick-less top axis whose name
        sits above them (:meth:`set_count_labels` keeps its distance), so that the title
        stays clear of both."""
        centres = 0.5 * (self.edges[:-1] + self.edges[1:])
        n_bins = centres.size
        base = matplotlib.rcParams["font.size"] * 0.7
        if fontsize is None:  # the room of one column before layout
            width = ax.get_position().width * ax.figure.get_size_inches()[0] * 72 * kept
            fontsize = 0.9 * width / n_bins
        size = max(min(base, fontsize), 4.0)
        step = max(1, math.ceil(size / max(fontsize, 1e-9) - 0.05))
        top = blended_transform_factory(ax.transData, ax.transAxes)
        self.count_ticks_ = ax.plot(
            centres, np.ones(n_bins), transform=top, linestyle="none", marker=TICKUP,
            markersize=COUNT_TICK, markeredgewidth=matplotlib.rcParams["xtick.major.width"],
            color=matplotlib.rcParams["xtick.color"], clip_on=False)[0]
        above = offset_copy(top, fig=ax.figure, y=COUNT_TICK + COUNT_PAD, units="points")
        rotation = 90 if n_bins > 10 else 0
        self.count_labels_ = [ax.text(x, 1.0, "", transform=above, rotation=rotation,
                                      ha="center", va="bottom", fontsize=size, clip_on=False)
                              for x in centres]
        axis = ax.secondary_xaxis("top")
        axis.set_xticks([])
        unit = "image–class pairs" if self.class_name == ALL_CLASSES else "images"
        axis.set_xlabel(f"{unit} per column", fontsize=base)
        self.count_axis_ = axis
        self.set_count_labels([str(n) if i % step == 0 else "" for i, n in
                               enumerate(self.images_per_column.tolist())])

    def set_count_labels(self, labels: Sequence[str]) -> None:
        """Write ``labels`` (one per column, ``""`` for none) along the top and keep the
        name of the row just above the tallest of them."""
        for text, label in zip(self.count_labels_, labels, strict=True):
            text.set_text(label)
        tallest = max((text.get_window_extent().height for text in self.count_labels_
                       if text.get_text()), default=0.0) * 72 / self.count_axis_.figure.dpi
        self.count_axis_.xaxis.labelpad = COUNT_TICK + COUNT_PAD + tallest + COUNT_NAME_PAD
