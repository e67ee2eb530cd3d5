"""Artists shared by the displays: bars, the voxel-count histogram under a panel (with the
one log-axis rule of a figure) and the placement of the MCE label clear of the data.

Positions are in axes fractions (the reliability panels span 0–1 on both axes, so data and
axes coordinates agree); sizes in points are turned into fractions with the panel's side.
"""

from __future__ import annotations

import math

import matplotlib
import numpy as np
from matplotlib.container import BarContainer
from matplotlib.patches import Rectangle
from matplotlib.text import Text
from matplotlib.ticker import EngFormatter, LogLocator, MaxNLocator, NullFormatter
from matplotlib.transforms import Bbox, offset_copy

XLABEL = "predicted foreground probability"
YLABEL = "empirical foreground frequency"
#: Counts histograms switch to a log axis above this max/min ratio of non-zero counts.
LOG_COUNT_RATIO = 100
#: Tick steps of a linear count axis: labels stay short ("500", "2k", "1M").
LINEAR_STEPS = (1, 2, 5, 10)
#: The count range of a panel without voxels, by ``log``.
EMPTY_COUNTS = {False: (0.0, 10.0), True: (1.0, 10.0)}
#: The count range a figure is laid out for (case and dataset figures alike): its tick
#: labels ("1", "10k", "100M") are the widest a count row shows.
LAYOUT_COUNTS = (1.0, 1e8)


def needs_log(*counts) -> bool:
    """Whether count histograms need a log axis: the max/min ratio of the non-zero counts
    of any of ``counts`` exceeds :data:`LOG_COUNT_RATIO`. A figure passes all its panels,
    so that its count axes follow one rule."""
    for count in counts:
        count = np.asarray(count, dtype=np.float64)
        positive = count[count > 0]
        if positive.size and positive.max() / positive.min() > LOG_COUNT_RATIO:
            return True
    return False


def bars(ax, left, height, width, *, bottom=0.0, label: str = "",
         reuse: BarContainer | None = None, **props) -> BarContainer:
    """``ax.bar(left, height, width, bottom=bottom, align="edge", label=label, **props)``
    for float arrays ``[N]`` (``props``: Rectangle properties such as ``facecolor``,
    ``alpha``, ``zorder``): the same bars, sticky edges, container and data limits, but
    the limits are taken once from all corners instead of per bar, which is most of the
    time ``Axes.bar`` takes for the 20-odd bars of a panel. ``reuse``: bars drawn before
    in ``ax`` with the same ``props``, moved into place (and added or removed to make N)."""
    left, height, width, bottom = np.broadcast_arrays(
        *(np.asarray(v, dtype=np.float64) for v in (left, height, width, bottom)))
    old = []
    if reuse is not None:
        old = list(reuse.patches)
        ax.containers.remove(reuse)
        for patch in old[left.size:]:
            patch.remove()
    patches = []
    for i, (x, y, w, h) in enumerate(zip(left.tolist(), bottom.tolist(), width.tolist(),
                                         height.tolist(), strict=True)):
        if i < len(old):
            patch = old[i]
            patch.set_bounds(x, y, w, h)
            patch.sticky_edges.y[:] = [y]
        else:
            patch = Rectangle((x, y), w, h, label="_nolegend_", **props)
            patch.sticky_edges.y.append(y)
            ax.add_artist(patch)  # as add_patch, less its per-patch data-limit update
        patches.append(patch)
    if patches:
        ax.update_datalim(np.column_stack([np.concatenate([left, left + width]),
                                           np.concatenate([bottom, bottom + height])]))
    ax.autoscale(enable=None)  # rescale at the next draw, as Axes.bar asks
    container = BarContainer(patches, None, datavalues=height, orientation="vertical",
                             label=label)
    ax.add_container(container)
    return container


def count_histogram(ax, edges: np.ndarray, count: np.ndarray, *, log: bool | None = None,
                    color="0.55", ylabel: str | None = "voxels",
                    reuse: BarContainer | None = None):
    """Bars of per-bin voxel counts (non-empty bins only) into ``ax``; a log axis when
    ``log`` (``None``: when :func:`needs_log` says so for this panel). At most three short
    tick labels; the axis name ``ylabel`` (``None``: left as it is). ``reuse``: the count
    bars drawn before in ``ax`` (its only data), moved to these counts. Returns the
    BarContainer."""
    count = np.asarray(count, dtype=np.float64)
    keep = count > 0
    widths = np.diff(edges)
    if reuse is not None:  # forget the limits of the counts drawn before, as Axes.relim
        ax.dataLim.ignore(True)
        ax.dataLim.set_points(Bbox.null().get_points())
        ax.ignore_existing_data_limits = True
    container = bars(ax, edges[:-1][keep], count[keep], widths[keep], facecolor=color,
                     edgecolor="white", linewidth=0.3, reuse=reuse)
    log = needs_log(count) if log is None else log
    style_count_axis(ax, log=log)
    if not keep.any():  # no data to scale to: one range, whatever the axes showed before
        ax.set_ylim(*EMPTY_COUNTS[log], auto=None)
    ax.set_xlim(0, 1)
    if ylabel is not None:
        ax.set_ylabel(ylabel)
    return container


def style_count_axis(ax, *, log: bool) -> None:
    """Scale, ticks and tick labels of a count axis (``ax.yaxis``)."""
    ax.set_yscale("log" if log else "linear")
    ax.yaxis.set_major_formatter(EngFormatter(sep="", places=None))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_locator(LogLocator(numticks=3) if log
                               else MaxNLocator(3, steps=list(LINEAR_STEPS)))


#: The metrics box (in font sizes): its frame's distance from the panel's corner and the
#: text's from the frame.
BOX_MARGIN, BOX_PAD = 0.4, 0.3


def metrics_box(ax, text: str, font_size: float, *, reuse: Text | None = None) -> Text:
    """The metrics box in the upper left of ``ax``: ``text`` in a frame :data:`BOX_MARGIN`
    font sizes from the corner (a text with a box: half the drawing time of an
    ``AnchoredText``); ``reuse``: the box drawn before in ``ax``, given this text."""
    if reuse is not None:
        reuse.set_text(text)
        return reuse
    inset = (BOX_MARGIN + BOX_PAD) * font_size  # points
    corner = offset_copy(ax.transAxes, fig=ax.figure, x=inset, y=-inset, units="points")
    return ax.text(0.0, 1.0, text, transform=corner, ha="left", va="top", fontsize=font_size,
                   zorder=5, bbox={"boxstyle": f"square,pad={BOX_PAD}", "facecolor": "white",
                                   "alpha": 0.85, "edgecolor": "0.7", "linewidth": 0.5})


def mce_arrow(ax, display, *, side: float, style: dict):
    """Annotate the bin of the MCE of a reliability ``display`` with an arrow (``None``
    when no bin holds data); the label is placed inside the panel (``side`` points), off
    the metrics box (upper left, when ``style["show_metrics"]``) and clear of markers and
    bars where room allows. ``style``: ``font_size``, ``marker_size``, ``show_metrics``."""
    gaps = display.gaps
    if not np.isfinite(gaps).any():
        return None
    edges, conf, freq = display.edges, display.mean_confidence, display.frequency
    k = int(np.nanargmax(gaps))
    x = 0.5 * (edges[k] + edges[k + 1])
    y = 0.5 * (conf[k] + freq[k])
    size = style["font_size"]
    avoid = None
    if style["show_metrics"]:
        avoid = (0.0, 1 - (5.2 * size + 4) / side, (7.5 * size + 4) / side, 1.0)
    keep = display.nonempty
    lo = np.minimum(conf, freq)[keep]
    rectangles = np.column_stack([edges[:-1][keep], lo, edges[1:][keep], lo + gaps[keep]])
    markers = np.column_stack([conf[keep], freq[keep]])
    tx, ty = place_label(
        x, y, below=freq[k] < conf[k], markers=markers, bars=rectangles,
        half=(1.3 * size / side, 0.65 * size / side), step=max(2.2 * size / side, 0.1),
        marker_radius=0.5 * style["marker_size"] / side, avoid=avoid)
    return ax.annotate(
        "MCE", xy=(x, y), xytext=(tx, ty), ha="center", va="center", fontsize=size, zorder=6,
        bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none",
              "alpha": 0.8},
        arrowprops={"arrowstyle": "->", "color": "0.15", "linewidth": 0.7, "shrinkA": 1,
                    "shrinkB": 1},
    )


#: Where the MCE label may go: rings of these radii (in steps) around the point, every
#: 22.5°, nearest ring first (per candidate: radius, cosine, sine, ring number).
_RINGS = (1.0, 1.6, 2.3, 3.0)
_ANGLES = np.deg2rad(np.arange(0, 360, 22.5))
_RADIUS = np.repeat(_RINGS, _ANGLES.size)
_COS, _SIN = np.tile(np.cos(_ANGLES), len(_RINGS)), np.tile(np.sin(_ANGLES), len(_RINGS))
_RING_OF = np.repeat(np.arange(len(_RINGS)), _ANGLES.size)


def place_label(x: float, y: float, *, below: bool, markers: np.ndarray,
                bars: np.ndarray, half: tuple[float, float], step: float,
                marker_radius: float, avoid=None) -> tuple[float, float]:
    """Centre ``(tx, ty)`` of a label of half-size ``half`` pointing at ``(x, y)``.

    ``markers``: ``[N, 2]`` marker centres; ``bars``: ``[M, 4]`` rectangles ``(x0, y0, x1,
    y1)``; ``avoid``: a rectangle the label must not touch (the metrics box) or ``None``.
    Candidates lie on rings of radius 1, 1.6, 2.3 and 3 ``step`` around the point; the
    label must stay inside the panel and off ``avoid``; among those the one covering the
    fewest markers, then the least bar area, off the diagonal and nearest wins (ties: the
    side away from the data, i.e. below the diagonal for an over-confident bin; equal
    costs: the first candidate, nearest ring first). All candidates are scored at once."""
    hw, hh = half
    margin = 0.02
    centres = np.column_stack([x + _RADIUS * step * _COS, y + _RADIUS * step * _SIN])
    boxes = np.column_stack([centres[:, 0] - hw, centres[:, 1] - hh,
                             centres[:, 0] + hw, centres[:, 1] + hh])  # [K, 4]
    ok = ((boxes[:, 0] >= margin) & (boxes[:, 1] >= margin)
          & (boxes[:, 2] <= 1 - margin) & (boxes[:, 3] <= 1 - margin))
    if avoid is not None:
        ok &= _overlaps(boxes, np.asarray(avoid, dtype=np.float64)[None]).sum(axis=1) <= 0
    grown = boxes + np.array([-1, -1, 1, 1]) * marker_radius
    covered = np.zeros(len(boxes))
    if len(markers):
        mx, my = markers[:, 0][None], markers[:, 1][None]
        covered = np.sum((mx > grown[:, :1]) & (mx < grown[:, 2:3])
                         & (my > grown[:, 1:2]) & (my < grown[:, 3:4]), axis=1)
    bar_area = (_overlaps(boxes, bars).sum(axis=1) if len(bars) else np.zeros(len(boxes)))
    bar_area = bar_area / (4 * hw * hh)
    crosses = (boxes[:, 1] < boxes[:, 2]) & (boxes[:, 3] > boxes[:, 0])  # y = x passes
    preferred = -1.0 if below else 1.0
    side = np.sign(centres[:, 1] - centres[:, 0]) != preferred
    cost = 100 * covered + 10 * bar_area + 2 * crosses + 0.3 * side + 0.5 * _RING_OF
    best, best_cost = None, np.inf
    for k in np.flatnonzero(ok):  # in ring order: a later one must be better by 1e-9
        if cost[k] < best_cost - 1e-9:
            best, best_cost = (float(centres[k, 0]), float(centres[k, 1])), cost[k]
    return best if best is not None else (min(max(x, 0.5), 0.85), 0.1)


def _overlaps(boxes: np.ndarray, rectangles: np.ndarray) -> np.ndarray:
    """``[K, M]`` areas of the intersections of ``boxes`` ``[K, 4]`` with ``rectangles``
    ``[M, 4]`` (``(x0, y0, x1, y1)``; 0 where they do not overlap)."""
    w = (np.minimum(boxes[:, None, 2], rectangles[None, :, 2])
         - np.maximum(boxes[:, None, 0], rectangles[None, :, 0]))
    h = (np.minimum(boxes[:, None, 3], rectangles[None, :, 3])
         - np.maximum(boxes[:, None, 1], rectangles[None, :, 1]))
    return np.where((w > 0) & (h > 0), w * h, 0.0)


def format_value(value: float) -> str:
    """Metric value as printed on figures: 3 significant digits, ``n/a`` for NaN."""
    value = float(value)
    return "n/a" if not math.isfinite(value) else f"{value:.3g}"


def fit_label(text: str, ax, font_size: float) -> str:
    """``text`` on two lines (split at the middle space) when one line would be longer
    than the square panel ``ax`` is high before layout, so that it does not run on
    beside the count row underneath."""
    position = ax.get_position()
    inches = ax.figure.get_size_inches()
    side = min(position.width * inches[0], position.height * inches[1]) * 72 * 0.85
    if "\n" in text or " " not in text or 0.56 * font_size * len(text) <= side:
        return text
    spaces = [i for i, char in enumerate(text) if char == " "]
    middle = min(spaces, key=lambda i: abs(i - len(text) / 2))
    return text[:middle] + "\n" + text[middle + 1:]


def finish_axes(ax, hist_ax, *, xlabel: str, ylabel: str, title: str | None) -> None:
    """Limits 0–1, a square panel, axis names (the x name under the count row when there
    is one) and the title."""
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_box_aspect(1)
    size = matplotlib.rcParams["axes.labelsize"]
    size = size if isinstance(size, (int, float)) else matplotlib.rcParams["font.size"]
    ax.set_ylabel(fit_label(ylabel, ax, size) if hist_ax is not None else ylabel)
    if hist_ax is None:
        ax.set_xlabel(xlabel)
    else:
        ax.tick_params(axis="x", labelbottom=False)
        hist_ax.set_xlabel(xlabel)
        hist_ax.set_box_aspect(0.25)
    if title:
        ax.set_title(title)


def style_colorbar(colorbar) -> None:
    """The label and thin lines of a reliability histogram's colour bar."""
    colorbar.set_label("fraction of the column's images")
    colorbar.outline.set_linewidth(0.5)
    colorbar.ax.tick_params(width=0.5, length=2)


def draw_band(ax, x, band, color):
    """The pooled curve's bootstrap band ``(low [B], high [B])`` at the bins' mean
    confidence ``x`` (bins where all three are finite)."""
    x = np.asarray(x, dtype=np.float64)
    low, high = (np.asarray(b, dtype=np.float64) for b in band)
    ok = np.isfinite(x) & np.isfinite(low) & np.isfinite(high)
    return ax.fill_between(x[ok], low[ok], high[ok], color=color, alpha=0.25, linewidth=0,
                           zorder=2.5, label="95 % image-bootstrap band")
