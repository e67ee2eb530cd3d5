"""Display objects for calibration figures (spec §7–§8); the only matplotlib user besides
:mod:`calibviz.figures`.

Two displays in the manner of scikit-learn's ``CalibrationDisplay`` (data in ``__init__``,
``from_...`` constructors, ``plot(ax=None, **style)`` draws, stores its artists and returns
``self``):

* :class:`ReliabilityDiagramDisplay`: one class of one image (or pooled images): gap bars
  between mean confidence and frequency, frequency markers, the diagonal, ECE / ACE / MCE,
  an arrow to the MCE bin and an optional voxel-count histogram below.
* :class:`DatasetReliabilityHistogramDisplay`: one class over a dataset: the
  column-normalised reliability histogram, images per column, the micro (pooled) curve and
  an optional voxel-count histogram below.

Figure-level helpers :func:`plot_case` and :func:`plot_dataset` lay out every class of one
image, or every class plus the all-classes panel of a dataset (one shared colour scale and a
colour bar placed by the layout engine), with a :class:`Preset` for screen, single- or
double-column paper figures; :func:`save_figure` writes PNG, PDF or SVG.

Nothing here changes global matplotlib state: figures are created with
``matplotlib.figure.Figure`` on the Agg canvas (never pyplot), and presets are applied
inside ``matplotlib.rc_context``.

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
import os
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm, Normalize, PowerNorm
from matplotlib.figure import Figure
from matplotlib.offsetbox import AnchoredText
from matplotlib.ticker import EngFormatter, LogLocator, MaxNLocator, NullFormatter

from .aggregate import reliability_histogram
from .metrics import ace, ece, mce
from .stats import BinStats, ReliabilityHistogram

XLABEL = "predicted foreground probability"
YLABEL = "empirical foreground frequency"
ALL_CLASSES = "all classes"
NORMS = ("power", "log", "linear")
FORMATS = ("png", "pdf", "svg")
#: Counts histograms switch to a log axis above this max/min ratio of non-zero counts.
LOG_COUNT_RATIO = 100


# --------------------------------------------------------------------------- presets
@dataclass(frozen=True)
class Preset:
    """Size and fonts of a figure.

    width : total figure width in inches (``None``: ``panel_width`` per column)
    panel_width : width of one panel in inches when ``width`` is ``None``
    font_size : base font size in points (titles the same, ticks and legend 85 %)
    font : font family (DejaVu Sans ships with matplotlib, so output is reproducible)
    dpi : resolution of PNG output
    max_columns : most panels per row
    """

    width: float | None = None
    panel_width: float = 3.0
    font_size: float = 9.0
    font: str = "DejaVu Sans"
    dpi: int = 150
    max_columns: int = 4

    def rc(self) -> dict:
        """The rcParams this preset applies (inside ``rc_context`` only)."""
        small = round(self.font_size * 0.85, 2)
        return {
            "font.family": "sans-serif",
            "font.sans-serif": [self.font, "DejaVu Sans"],
            "font.size": self.font_size,
            "axes.titlesize": self.font_size,
            "axes.labelsize": self.font_size,
            "xtick.labelsize": small,
            "ytick.labelsize": small,
            "legend.fontsize": small,
            "figure.titlesize": round(self.font_size * 1.1, 2),
            "figure.labelsize": self.font_size,
            "axes.linewidth": 0.6,
            "xtick.major.width": 0.6,
            "ytick.major.width": 0.6,
            "xtick.major.size": 2.5,
            "ytick.major.size": 2.5,
            "lines.linewidth": 1.0,
            "pdf.fonttype": 42,
            "ps.fonttype": 42,
            "svg.fonttype": "path",
            "svg.hashsalt": "calibviz",
            "text.usetex": False,
        }

    def columns(self, n_panels: int) -> int:
        return max(1, min(n_panels, self.max_columns))

    def figure_width(self, n_columns: int) -> float:
        return self.width if self.width is not None else self.panel_width * n_columns


#: Named presets: ``screen`` (default), ``single`` (one column of a two-column paper,
#: 3.5 in) and ``double`` (full text width, 7.16 in).
PRESETS: dict[str, Preset] = {
    "screen": Preset(),
    "single": Preset(width=3.5, font_size=7.0, dpi=300, max_columns=2),
    "double": Preset(width=7.16, font_size=8.0, dpi=300, max_columns=4),
}


def get_preset(preset: str | Preset | None = None, **overrides) -> Preset:
    """A :class:`Preset` by name (``screen``, ``single``, ``double``) or as given, with
    fields overridden where the override is not ``None`` (e.g. ``font_size=6``)."""
    if preset is None:
        base = PRESETS["screen"]
    elif isinstance(preset, Preset):
        base = preset
    elif preset in PRESETS:
        base = PRESETS[preset]
    else:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    known = {f.name for f in fields(Preset)}
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"unknown preset field(s) {sorted(unknown)}; known: {sorted(known)}")
    changes = {k: v for k, v in overrides.items() if v is not None}
    return replace(base, **changes) if changes else base


# --------------------------------------------------------------------------- helpers
def new_figure(width: float, height: float, layout: str = "compressed") -> Figure:
    """A figure on the Agg canvas laid out by matplotlib's layout engine (``compressed``:
    constrained layout that closes the gaps around fixed-aspect panels); no pyplot."""
    figure = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(figure)
    return figure


def make_norm(norm: str | Normalize = "power", *, gamma: float = 0.35, vmin: float | None = None,
              vmax: float = 1.0) -> Normalize:
    """The colour norm of a reliability histogram: ``"power"`` (``PowerNorm(gamma)``, the
    paper's γ = 0.35), ``"log"`` (zeros drawn in the lowest colour) or ``"linear"``;
    a ``Normalize`` instance is returned as is."""
    if isinstance(norm, Normalize):
        return norm
    if norm == "power":
        if not gamma > 0:
            raise ValueError(f"gamma must be positive, got {gamma}")
        return PowerNorm(gamma=gamma, vmin=0.0 if vmin is None else vmin, vmax=vmax)
    if norm == "log":
        return LogNorm(vmin=1e-3 if vmin is None else vmin, vmax=vmax, clip=True)
    if norm == "linear":
        return Normalize(vmin=0.0 if vmin is None else vmin, vmax=vmax)
    raise ValueError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")


def format_value(value: float) -> str:
    """Metric value as printed on figures: 3 significant digits, ``n/a`` for NaN."""
    value = float(value)
    return "n/a" if not math.isfinite(value) else f"{value:.3g}"


def _count_histogram(ax, edges: np.ndarray, count: np.ndarray, *, color="0.55",
                     ylabel="voxels"):
    """Bars of per-bin voxel counts (non-empty bins only); log axis when the max/min
    ratio of non-zero counts exceeds :data:`LOG_COUNT_RATIO`. Returns the BarContainer."""
    count = np.asarray(count, dtype=np.float64)
    keep = count > 0
    widths = np.diff(edges)
    bars = ax.bar(edges[:-1][keep], count[keep], width=widths[keep], align="edge",
                  color=color, edgecolor="white", linewidth=0.3)
    if keep.any() and count[keep].max() / count[keep].min() > LOG_COUNT_RATIO:
        ax.set_yscale("log")
    ax.set_xlim(0, 1)
    ax.set_ylabel(ylabel)
    ax.yaxis.set_major_formatter(EngFormatter(sep="", places=None))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_locator(MaxNLocator(3) if ax.get_yscale() == "linear"
                               else LogLocator(numticks=3))
    return bars


def _finish_axes(ax, hist_ax, *, xlabel: str, ylabel: str, title: str | None) -> None:
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_box_aspect(1)
    ax.set_ylabel(ylabel)
    if hist_ax is None:
        ax.set_xlabel(xlabel)
    else:
        ax.tick_params(axis="x", labelbottom=False)
        hist_ax.set_xlabel(xlabel)
        hist_ax.set_box_aspect(0.25)
    if title:
        ax.set_title(title)


def _new_axes(histogram: bool, preset: Preset, colorbar: bool = False):
    """A stand-alone figure with one square panel and, optionally, a histogram row."""
    width = preset.width or preset.panel_width * (1.35 if colorbar else 1.15)
    text = preset.font_size / 72
    side = width - 5 * text - (8 * text if colorbar else 0)
    height = side * (1.3 if histogram else 1.0) + (11 if colorbar else 9) * text
    figure = new_figure(width, height)
    if histogram:
        ax, hist_ax = figure.subplots(2, 1, sharex=True, height_ratios=[4, 1])
        return figure, ax, hist_ax
    return figure, figure.subplots(), None


def _metrics_from_bins(conf, freq, count, nonempty) -> tuple[float, float, float]:
    """ECE, ACE, MCE of one class's bins (spec §3) for displays built from raw arrays."""
    if not nonempty.any():
        return math.nan, math.nan, math.nan
    gaps = np.abs(conf - freq)[nonempty]
    weights = np.asarray(count, dtype=np.float64)[nonempty]
    return float((weights * gaps).sum() / weights.sum()), float(gaps.mean()), float(gaps.max())


# ---------------------------------------------------------------- reliability diagram
class ReliabilityDiagramDisplay:
    """Reliability diagram of one class of one image (spec §8).

    Parameters
    ----------
    mean_confidence, frequency : float ``[B]`` per-bin mean probability and observed
        foreground frequency (NaN for empty bins)
    count : ``[B]`` voxels (soft weights) per bin
    edges : float ``[B + 1]`` bin edges in [0, 1]
    nonempty : bool ``[B]`` bins that hold data (default: ``count > 0``)
    ece, ace, mce : metric values written on the diagram (default: computed from the bins)
    class_name : panel title

    Attributes set by :meth:`plot`: ``ax_``, ``hist_ax_``, ``figure_``, ``bars_`` (gap
    bars, one per non-empty bin), ``markers_`` (frequency markers), ``diagonal_``,
    ``text_`` (the metrics box), ``mce_arrow_`` (or ``None``), ``hist_bars_``, ``legend_``.
    """

    def __init__(self, mean_confidence, frequency, count, edges, *, nonempty=None,
                 ece: float | None = None, ace: float | None = None, mce: float | None = None,
                 class_name: str | None = None):
        self.mean_confidence = np.asarray(mean_confidence, dtype=np.float64)
        self.frequency = np.asarray(frequency, dtype=np.float64)
        self.count = np.asarray(count)
        self.edges = np.asarray(edges, dtype=np.float64)
        n_bins = self.edges.size - 1
        for name in ("mean_confidence", "frequency", "count"):
            if getattr(self, name).shape != (n_bins,):
                raise ValueError(
                    f"{name} must have shape ({n_bins},) to match {n_bins + 1} edges, "
                    f"got {getattr(self, name).shape}"
                )
        self.nonempty = (self.count > 0) if nonempty is None else np.asarray(nonempty, bool)
        self.nonempty = self.nonempty & np.isfinite(self.mean_confidence) & np.isfinite(
            self.frequency)
        own = _metrics_from_bins(self.mean_confidence, self.frequency, self.count,
                                 self.nonempty)
        self.ece = own[0] if ece is None else float(ece)
        self.ace = own[1] if ace is None else float(ace)
        self.mce = own[2] if mce is None else float(mce)
        self.class_name = class_name

    @classmethod
    def from_stats(cls, stats: BinStats, class_: int | str = 0) -> ReliabilityDiagramDisplay:
        """The diagram of one class (index or name) of a :class:`BinStats`."""
        c = stats.class_index(class_)
        return cls(
            stats.mean_confidence[c], stats.frequency[c], stats.count[c], stats.edges,
            nonempty=stats.nonempty[c], ece=ece(stats)[c], ace=ace(stats)[c],
            mce=mce(stats)[c], class_name=stats.class_names[c],
        )

    @property
    def gaps(self) -> np.ndarray:
        """float ``[B]`` ``|mean confidence − frequency|``; NaN for empty bins."""
        return np.where(self.nonempty, np.abs(self.mean_confidence - self.frequency), np.nan)

    def plot(self, ax=None, *, hist_ax=None, histogram: bool = True, title: str | None = None,
             bar_color="tab:red", bar_alpha: float = 0.35, marker: str = "o",
             marker_color="black", marker_size: float | None = None, diagonal_color="0.45",
             show_metrics: bool = True, show_mce: bool = True, legend: bool | None = None,
             xlabel: str = XLABEL, ylabel: str = YLABEL,
             preset: str | Preset | None = None) -> ReliabilityDiagramDisplay:
        """Draw into ``ax`` (a new figure sized by ``preset`` when ``None``; with
        ``histogram`` it gets a count row below). ``hist_ax``: axes for the voxel-count
        histogram when ``ax`` is given. ``legend``: ``None`` puts one legend under a figure
        made here and none into given axes; ``True`` adds one to the axes (lower right)."""
        kwargs = {k: v for k, v in locals().items() if k not in ("self", "ax", "preset")}
        if ax is None:
            preset = get_preset(preset)
            with matplotlib.rc_context(preset.rc()):
                self.figure_, ax, kwargs["hist_ax"] = _new_axes(histogram, preset)
                self._draw(ax, **kwargs)
                if legend is None:
                    self.legend_ = _figure_legend(self.figure_, self)
            return self
        self.figure_ = ax.figure
        return self._draw(ax, **kwargs)

    def _draw(self, ax, *, hist_ax, histogram, title, bar_color, bar_alpha, marker,
              marker_color, marker_size, diagonal_color, show_metrics, show_mce, legend,
              xlabel, ylabel) -> ReliabilityDiagramDisplay:
        self.ax_, self.hist_ax_ = ax, hist_ax
        keep = self.nonempty
        lo = np.minimum(self.mean_confidence, self.frequency)[keep]
        left = self.edges[:-1][keep]
        widths = np.diff(self.edges)[keep]

        self.diagonal_ = ax.plot([0, 1], [0, 1], linestyle="--", color=diagonal_color,
                                 linewidth=0.8, label="perfect calibration", zorder=1)[0]
        self.bars_ = ax.bar(left, self.gaps[keep], bottom=lo, width=widths, align="edge",
                            color=bar_color, alpha=bar_alpha, edgecolor=bar_color,
                            linewidth=0.4, label="gap", zorder=2)
        self.markers_ = ax.plot(self.mean_confidence[keep], self.frequency[keep],
                                linestyle="none", marker=marker,
                                markersize=marker_size or 0.32 * matplotlib.rcParams["font.size"],
                                color=marker_color, label="frequency", zorder=3)[0]
        self.text_ = None
        if show_metrics:
            lines = [f"ECE {format_value(self.ece)}", f"ACE {format_value(self.ace)}",
                     f"MCE {format_value(self.mce)}"]
            self.text_ = AnchoredText("\n".join(lines), loc="upper left", frameon=True,
                                      borderpad=0.4, pad=0.3,
                                      prop={"size": matplotlib.rcParams["legend.fontsize"]})
            self.text_.patch.set(alpha=0.85, edgecolor="0.7", linewidth=0.5)
            self.text_.set_zorder(5)
            ax.add_artist(self.text_)
        self._has_metrics = show_metrics
        self.mce_arrow_ = self._mce_arrow(ax) if show_mce else None
        self.hist_bars_ = None
        if hist_ax is not None and histogram:
            self.hist_bars_ = _count_histogram(hist_ax, self.edges, self.count)
        _finish_axes(ax, hist_ax if histogram else None, xlabel=xlabel, ylabel=ylabel,
                     title=self.class_name if title is None else title)
        self.legend_ = ax.legend(loc="lower right") if legend else None
        return self

    def _mce_arrow(self, ax):
        """Annotate the bin of the MCE with an arrow, the label placed off the diagonal
        and away from the metrics box (upper left) and the panel edges."""
        gaps = self.gaps
        if not np.isfinite(gaps).any():
            return None
        k = int(np.nanargmax(gaps))
        x = 0.5 * (self.edges[k] + self.edges[k + 1])
        y = 0.5 * (self.mean_confidence[k] + self.frequency[k])
        below = self.frequency[k] < self.mean_confidence[k]  # over-confident bin
        # Sizes in axes fractions, from the font size and the panel size before layout
        # (the layout engine shrinks panels a little, hence 0.85).
        size = matplotlib.rcParams["legend.fontsize"]
        size = size if isinstance(size, (int, float)) else matplotlib.rcParams["font.size"]
        position = ax.get_position()
        inches = self.figure_.get_size_inches()
        side = max(min(position.width * inches[0], position.height * inches[1]) * 72 * 0.85,
                   1.0)
        box_w, box_h = (7.5 * size + 4) / side, (5.2 * size + 4) / side
        half_w, half_h = 1.3 * size / side, 0.65 * size / side
        d = max(2.2 * size / side, 0.1)
        if below:
            candidates = [(d, -d), (0.5 * d, -1.6 * d), (0.0, -1.6 * d), (-d, -d)]
        else:
            candidates = [(-d, d), (-0.5 * d, 1.6 * d), (0.0, 1.6 * d), (d, d)]
        candidates += [(d, -d), (-d, d), (1.4 * d, 0.0), (-1.4 * d, 0.0), (d, d), (-d, -d)]

        def fits(tx, ty):
            in_panel = half_w + 0.02 <= tx <= 1 - half_w - 0.02 and (
                half_h + 0.02 <= ty <= 1 - half_h - 0.02)
            clear_of_box = (tx - half_w > box_w + 0.01) or (ty + half_h < 1 - box_h - 0.01)
            return in_panel and (clear_of_box or not self._has_metrics)

        tx, ty = next(((x + dx, y + dy) for dx, dy in candidates if fits(x + dx, y + dy)),
                      (min(max(x, 0.5), 0.85), 0.1))
        return ax.annotate(
            "MCE", xy=(x, y), xytext=(tx, ty), ha="center", va="center",
            fontsize=matplotlib.rcParams["legend.fontsize"], zorder=6,
            bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none",
                  "alpha": 0.8},
            arrowprops={"arrowstyle": "->", "color": "0.15", "linewidth": 0.7,
                        "shrinkA": 1, "shrinkB": 1},
        )


# --------------------------------------------------------- dataset reliability histogram
class DatasetReliabilityHistogramDisplay:
    """Dataset reliability histogram of one class (or all classes together), spec §7.

    Parameters
    ----------
    counts : int ``[B_freq, B_conf]`` images per (frequency bin, confidence bin); row 0 is
        the lowest frequency
    edges : float ``[B + 1]``
    pooled_confidence, pooled_frequency : float ``[B]`` the micro (pooled) curve (NaN empty)
    pooled_count : ``[B]`` pooled voxels per confidence bin (for the count histogram)
    class_name : panel title; n_images : images in the dataset (for the title)

    Attributes set by :meth:`plot`: ``ax_``, ``hist_ax_``, ``figure_``, ``mesh_`` (the
    heatmap; ``mesh_.get_array()`` is the column-normalised grid, empty columns masked),
    ``norm_``, ``colorbar_``, ``curve_``, ``diagonal_``, ``count_axis_`` (images per
    column, on top), ``hist_bars_``.
    """

    def __init__(self, counts, edges, *, pooled_confidence=None, pooled_frequency=None,
                 pooled_count=None, class_name: str | None = None,
                 n_images: int | None = None):
        self.counts = np.asarray(counts)
        self.edges = np.asarray(edges, dtype=np.float64)
        n_bins = self.edges.size - 1
        if self.counts.ndim != 2 or self.counts.shape[1] != n_bins:
            raise ValueError(
                f"counts must have shape (B_freq, {n_bins}) to match {n_bins + 1} edges, "
                f"got {self.counts.shape}"
            )
        nan = np.full(n_bins, np.nan)
        self.pooled_confidence = nan if pooled_confidence is None else np.asarray(
            pooled_confidence, dtype=np.float64)
        self.pooled_frequency = nan if pooled_frequency is None else np.asarray(
            pooled_frequency, dtype=np.float64)
        self.pooled_count = None if pooled_count is None else np.asarray(pooled_count)
        self.class_name = class_name
        self.n_images = n_images

    @classmethod
    def from_histogram(cls, histogram: ReliabilityHistogram,
                       class_: int | str = 0) -> DatasetReliabilityHistogramDisplay:
        """One class (index or name) of a :class:`ReliabilityHistogram`, or
        ``class_="all classes"`` for the sum of all class grids (its curve pools the bins of
        every class)."""
        pooled = histogram.pooled
        if isinstance(class_, str) and class_ == ALL_CLASSES:
            count = pooled.count.sum(axis=0)
            with np.errstate(invalid="ignore", divide="ignore"):
                ok = count > 0
                conf = np.where(ok, pooled.sum_p.sum(axis=0) / np.where(ok, count, 1), np.nan)
                freq = np.where(ok, pooled.sum_y.sum(axis=0) / np.where(ok, count, 1), np.nan)
            return cls(histogram.all_classes, histogram.edges, pooled_confidence=conf,
                       pooled_frequency=freq, pooled_count=count, class_name=ALL_CLASSES,
                       n_images=histogram.n_images)
        c = pooled.class_index(class_)
        return cls(histogram.counts[c], histogram.edges,
                   pooled_confidence=pooled.mean_confidence[c],
                   pooled_frequency=pooled.frequency[c], pooled_count=pooled.count[c],
                   class_name=pooled.class_names[c], n_images=histogram.n_images)

    @classmethod
    def from_stats(cls, stats: Sequence[BinStats], class_: int | str = 0, *,
                   absent: str = "include") -> DatasetReliabilityHistogramDisplay:
        """From the per-image :class:`BinStats` of a dataset."""
        return cls.from_histogram(reliability_histogram(stats, absent=absent), class_)

    @property
    def images_per_column(self) -> np.ndarray:
        """int ``[B_conf]`` images with data in each confidence bin."""
        return self.counts.sum(axis=0)

    @property
    def normalised(self) -> np.ndarray:
        """float ``[B_freq, B_conf]`` each column summed to 1; NaN for empty columns."""
        totals = self.counts.sum(axis=0, keepdims=True)
        out = np.full(self.counts.shape, np.nan)
        np.divide(self.counts, totals, out=out, where=np.broadcast_to(totals > 0, out.shape))
        return out

    def plot(self, ax=None, *, hist_ax=None, histogram: bool = True, cmap="YlOrRd",
             norm: str | Normalize = "power", gamma: float = 0.35, colorbar: bool = True,
             show_curve: bool = True, show_counts: bool = True, curve_color="tab:blue",
             count_fontsize: float | None = None, title: str | None = None,
             xlabel: str = XLABEL, ylabel: str = YLABEL,
             preset: str | Preset | None = None) -> DatasetReliabilityHistogramDisplay:
        """Draw into ``ax`` (a new figure sized by ``preset`` when ``None``). ``norm``:
        ``"power"`` (γ = ``gamma``), ``"log"``, ``"linear"`` or a ``Normalize``;
        ``colorbar`` adds this panel's own colour bar (placed by the layout engine);
        ``show_counts`` writes the images per column along the top."""
        kwargs = {k: v for k, v in locals().items() if k not in ("self", "ax", "preset")}
        if ax is None:
            preset = get_preset(preset)
            with matplotlib.rc_context(preset.rc()):
                self.figure_, ax, kwargs["hist_ax"] = _new_axes(histogram, preset, colorbar)
                return self._draw(ax, **kwargs)
        self.figure_ = ax.figure
        return self._draw(ax, **kwargs)

    def _draw(self, ax, *, hist_ax, histogram, cmap, norm, gamma, colorbar, show_curve,
              show_counts, curve_color, count_fontsize, title, xlabel,
              ylabel) -> DatasetReliabilityHistogramDisplay:
        self.ax_, self.hist_ax_ = ax, hist_ax
        self.norm_ = make_norm(norm, gamma=gamma)
        colours = matplotlib.colormaps[cmap] if isinstance(cmap, str) else cmap
        colours = colours.with_extremes(bad=(0, 0, 0, 0))
        grid = np.ma.masked_invalid(self.normalised)
        self.mesh_ = ax.pcolormesh(self.edges, self.edges, grid, cmap=colours, norm=self.norm_,
                                   shading="flat", rasterized=True, zorder=0)
        self.diagonal_ = ax.plot([0, 1], [0, 1], linestyle="--", color="0.35", linewidth=0.8,
                                 zorder=2)[0]
        self.curve_ = None
        if show_curve:
            ok = np.isfinite(self.pooled_confidence) & np.isfinite(self.pooled_frequency)
            self.curve_ = ax.plot(self.pooled_confidence[ok], self.pooled_frequency[ok],
                                  marker="o", markersize=2.5, linewidth=1.0, color=curve_color,
                                  label="micro (pooled)", zorder=3)[0]
        self.count_axis_ = None
        if show_counts:
            self.count_axis_ = self._count_axis(ax, count_fontsize)
        self.hist_bars_ = None
        if hist_ax is not None and histogram:
            count = (self.pooled_count if self.pooled_count is not None
                     else self.images_per_column)
            label = "voxels" if self.pooled_count is not None else "images"
            self.hist_bars_ = _count_histogram(hist_ax, self.edges, count, ylabel=label)
        if title is None:
            title = self.class_name or ""
            if self.n_images is not None:
                title = f"{title} ({self.n_images} images)" if title else f"{self.n_images} images"
        _finish_axes(ax, hist_ax if histogram else None, xlabel=xlabel, ylabel=ylabel,
                     title=title)
        self.colorbar_ = None
        if colorbar:
            self.colorbar_ = self.figure_.colorbar(self.mesh_, ax=ax, shrink=0.9, pad=0.02,
                                                   fraction=0.06)
            _style_colorbar(self.colorbar_)
        return self

    def _count_axis(self, ax, fontsize: float | None):
        """Images per column written along the top (every k-th when the labels would
        collide: ``fontsize`` is the size the layout allows, default 70 % of the font)."""
        axis = ax.secondary_xaxis("top")
        centres = 0.5 * (self.edges[:-1] + self.edges[1:])
        n_bins = centres.size
        base = matplotlib.rcParams["font.size"] * 0.7
        size = base if fontsize is None else max(min(base, fontsize), 4.0)
        step = 1 if fontsize is None else max(1, math.ceil(size / max(fontsize, 1e-9) - 0.05))
        labels = [str(n) if i % step == 0 else "" for i, n in
                  enumerate(self.images_per_column.tolist())]
        axis.set_xticks(centres, labels=labels)
        axis.tick_params(axis="x", length=1.5, pad=1, labelsize=size,
                         labelrotation=90 if n_bins > 10 else 0)
        axis.set_xlabel("images per column", fontsize=base, labelpad=2)
        return axis


def _style_colorbar(colorbar) -> None:
    colorbar.set_label("fraction of the column's images")
    colorbar.outline.set_linewidth(0.5)
    colorbar.ax.tick_params(width=0.5, length=2)


# ------------------------------------------------------------------- figure helpers
def _layout(n_panels: int, preset: Preset, histogram: bool, *, colorbar: bool = False,
            top_labels: bool = False):
    """(figure, [(ax, hist_ax)] per panel) on one grid; panels fill rows left to right. The
    height follows from the width so that square panels leave little empty space."""
    n_cols = preset.columns(n_panels)
    n_rows = math.ceil(n_panels / n_cols)
    width = preset.figure_width(n_cols)
    text = preset.font_size / 72  # one line of text, inches
    side = (width - 5 * text - (7 * text if colorbar else 0)) / n_cols - 3.0 * text
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


def _figure_legend(figure: Figure, display: ReliabilityDiagramDisplay, title: str | None = None):
    """One legend above the panels; it carries the figure title (a separate suptitle and an
    outside legend would be stacked on top of each other by the layout engine)."""
    handles = [display.bars_, display.markers_, display.diagonal_]
    labels = ["gap", "frequency", "perfect calibration"]
    return figure.legend(handles, labels, loc="outside upper center", ncol=3, frameon=False,
                         handlelength=1.5, columnspacing=1.0, title=title,
                         title_fontsize=matplotlib.rcParams["figure.titlesize"])


def _outer_labels(figure: Figure, panels, n_cols: int) -> None:
    """With several panels, the axis names are said once for the figure; the count rows
    keep their unit on the first column only."""
    if len(panels) == 1:
        return
    for index, (ax, hist_ax) in enumerate(panels):
        xlabel, ylabel = (hist_ax or ax).get_xlabel(), ax.get_ylabel()
        ax.set_ylabel("")
        (hist_ax or ax).set_xlabel("")
        if hist_ax is not None and index % n_cols:
            hist_ax.set_ylabel("")
    figure.supxlabel(xlabel)
    figure.supylabel(ylabel)


def _class_list(stats: BinStats, classes) -> list[int]:
    if classes is None:
        return list(range(stats.n_classes))
    picked = [stats.class_index(c) for c in classes]
    if not picked:
        raise ValueError("no classes selected")
    return picked


def plot_case(stats: BinStats, *, classes: Sequence[int | str] | None = None,
              title: str | None = None, histogram: bool = True,
              preset: str | Preset | None = None, **style):
    """Reliability diagrams of every class (or ``classes``) of one image in one figure.

    ``style`` goes to :meth:`ReliabilityDiagramDisplay.plot`. Returns ``(figure, displays)``.
    """
    preset = get_preset(preset)
    picked = _class_list(stats, classes)
    with matplotlib.rc_context(preset.rc()):
        figure, panels, _ = _layout(len(picked), preset, histogram)
        displays = []
        for (ax, hist_ax), c in zip(panels, picked, strict=True):
            display = ReliabilityDiagramDisplay.from_stats(stats, c)
            displays.append(display.plot(ax, hist_ax=hist_ax, histogram=histogram,
                                         legend=False, **style))
        _figure_legend(figure, displays[0], title)
        _outer_labels(figure, panels, preset.columns(len(picked)))
    return figure, displays


def plot_dataset(data: ReliabilityHistogram | Sequence[BinStats], *,
                 classes: Sequence[int | str] | None = None, all_classes: bool | None = None,
                 absent: str = "include", title: str | None = None, histogram: bool = True,
                 preset: str | Preset | None = None, cmap="YlOrRd",
                 norm: str | Normalize = "power", gamma: float = 0.35, **style):
    """Dataset reliability histograms of every class (or ``classes``) plus, when there is
    more than one class (or ``all_classes=True``), the all-classes panel, with one shared
    colour scale and one colour bar. ``data``: a :class:`ReliabilityHistogram` or the
    per-image :class:`BinStats` list. Returns ``(figure, displays, colorbar)``."""
    histogram_data = (data if isinstance(data, ReliabilityHistogram)
                      else reliability_histogram(data, absent=absent))
    preset = get_preset(preset)
    picked = _class_list(histogram_data.pooled, classes)
    if all_classes is None:
        all_classes = len(picked) > 1
    if all_classes and len(picked) != histogram_data.pooled.n_classes:
        histogram_data = _select_histogram(histogram_data, picked)
        picked = list(range(len(picked)))
    keys: list[int | str] = [*picked, ALL_CLASSES] if all_classes else list(picked)
    shared = make_norm(norm, gamma=gamma)
    with matplotlib.rc_context(preset.rc()):
        figure, panels, side = _layout(len(keys), preset, histogram, colorbar=True,
                                       top_labels=style.get("show_counts", True))
        style.setdefault("count_fontsize", 0.9 * side * 72 / histogram_data.pooled.n_bins)
        displays = []
        for (ax, hist_ax), key in zip(panels, keys, strict=True):
            display = DatasetReliabilityHistogramDisplay.from_histogram(histogram_data, key)
            display.n_images = None  # said once, in the figure title
            displays.append(display.plot(ax, hist_ax=hist_ax, histogram=histogram, cmap=cmap,
                                         norm=shared, colorbar=False, **style))
        _outer_labels(figure, panels, preset.columns(len(keys)))
        axes = [a for pair in panels for a in pair if a is not None]
        colorbar = figure.colorbar(displays[0].mesh_, ax=axes, shrink=min(0.6, 3 / len(axes)
                                                                           + 0.3),
                                   aspect=30, pad=0.02)
        _style_colorbar(colorbar)
        suffix = f"{histogram_data.n_images} images"
        figure.suptitle(f"{title} ({suffix})" if title else suffix)
    return figure, displays, colorbar


def _select_histogram(histogram: ReliabilityHistogram, picked: list[int]) -> ReliabilityHistogram:
    return ReliabilityHistogram(
        counts=histogram.counts[picked], voxel_counts=histogram.voxel_counts[picked],
        pooled=histogram.pooled.select(picked), n_images=histogram.n_images,
    )


def save_figure(figure: Figure, path: str | Path, *, dpi: int | None = None,
                preset: str | Preset | None = None, fmt: str | None = None) -> Path:
    """Write ``figure`` as PNG (at ``dpi``, default the preset's), PDF or SVG (vector; the
    heatmap cells are embedded as an image). The format follows the suffix unless ``fmt``."""
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt not in FORMATS:
        raise ValueError(f"unknown figure format {fmt!r}; choose one of {', '.join(FORMATS)}")
    preset = get_preset(preset)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"Software": "calibviz"} if fmt == "png" else {"Creator": "calibviz"}
    if fmt == "pdf":
        metadata["CreationDate"] = None
    if fmt == "svg":
        metadata = {"Date": None, "Creator": "calibviz"}
    # write beside the target, then rename: a reader never sees half a figure
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with matplotlib.rc_context(preset.rc()):
            figure.savefig(temporary, format=fmt, dpi=dpi or preset.dpi, metadata=metadata)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path
