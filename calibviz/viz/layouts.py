"""Multi-panel figures: every class of one image (:func:`plot_case`) and every class of a
dataset plus the all-classes panel (:func:`plot_dataset`), with one legend or one shared
colour scale and colour bar, sized by a :class:`~calibviz.viz.presets.Preset`."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
from matplotlib.colors import Normalize

from ..aggregate import absent_policy, reliability_histogram
from ..stats import BinStats, ReliabilityHistogram
from .annotate import LAYOUT_COUNTS, needs_log, style_count_axis
from .displays import (
    ALL_CLASSES,
    DatasetReliabilityHistogramDisplay,
    style_colorbar,
)
from .figures import make_norm, outer_labels, panel_grid, pin_empty_labels
from .frozen import FrozenLayout
from .presets import Preset, get_preset
from .raster import at_dpi
from .selection import resolve_classes


def plot_case(stats: BinStats, *, classes: Sequence[int | str] | None = None,
              title: str | None = None, histogram: bool = True,
              preset: str | Preset | None = None, **style):
    """Reliability diagrams of every class (or ``classes``, names or indices) of one image
    in one figure, with one legend (titled ``title``) and one count-axis rule (log in every
    panel when one needs it). ``style`` goes to :meth:`ReliabilityDiagramDisplay.plot`.
    Returns ``(figure, displays)``. To draw many images, build a
    :class:`~calibviz.viz.casefigure.CaseFigure` once and call its ``draw`` per image:
    the same figure, drawn much faster."""
    from .casefigure import CaseFigure

    case_figure = CaseFigure(stats, classes=classes, histogram=histogram, preset=preset,
                             **style)
    displays = case_figure.draw(title or "", stats)
    return case_figure.figure, displays


def _attach_bands(displays, keys, data, class_names, absent: str, n_bootstrap: int) -> None:
    """Give each display the bootstrap band of its pooled curve (``keys``: class indices
    into ``class_names``, or the all-classes panel)."""
    if isinstance(data, ReliabilityHistogram):
        raise ValueError("band needs the per-image statistics, not a ReliabilityHistogram")
    from ..bootstrap import pooled_frequency_band

    images = [s.select(list(class_names)) for s in data]
    low, high = pooled_frequency_band(images, n_bootstrap, absent=absent)
    for display, key in zip(displays, keys, strict=True):
        row = -1 if key == ALL_CLASSES else key
        display.band = (low[row], high[row])


def plot_dataset(data: ReliabilityHistogram | Sequence[BinStats], *,
                 classes: Sequence[int | str] | None = None, all_classes: bool | None = None,
                 absent: str | None = None, title: str | None = None, histogram: bool = True,
                 preset: str | Preset | None = None, cmap="YlOrRd",
                 norm: str | Normalize = "power", gamma: float = 0.35, band: int = 0,
                 **style):
    """Dataset reliability histograms of every class (or ``classes``) plus, when there is
    more than one class (or ``all_classes=True``), the all-classes panel (the classes shown
    pooled: titled "N classes pooled" when they are not all), with one shared
    colour scale and one colour bar. ``data``: a :class:`ReliabilityHistogram` or the
    per-image :class:`BinStats` list. ``band``: that many image-bootstrap resamples draw a
    95 % band around each pooled curve (needs the per-image list). Returns ``(figure,
    displays, colorbar)``. ``absent=None``: a Results' own absent policy, else "include"."""
    if not isinstance(data, ReliabilityHistogram):
        absent = absent_policy(data, absent)
        data = data.stats if hasattr(data, "options") else data
    histogram_data = (data if isinstance(data, ReliabilityHistogram)
                      else reliability_histogram(data, absent=absent))
    preset = get_preset(preset)
    picked = resolve_classes(histogram_data.pooled, classes)
    if all_classes is None:
        all_classes = len(picked) > 1
    subset = len(picked) != histogram_data.pooled.n_classes
    if all_classes and subset:
        histogram_data = _select_histogram(histogram_data, picked)
        picked = list(range(len(picked)))
    keys: list[int | str] = [*picked, ALL_CLASSES] if all_classes else list(picked)
    shared = make_norm(norm, gamma=gamma)
    displays = [DatasetReliabilityHistogramDisplay.from_histogram(histogram_data, key)
                for key in keys]
    if band:
        _attach_bands(displays, keys, data, histogram_data.class_names, absent, band)
    if histogram:  # one count-axis rule for the figure
        style.setdefault("log_counts", needs_log(*(_counts(d) for d in displays)))
    single = len(keys) == 1
    suffix = f"{histogram_data.n_images} images"
    with matplotlib.rc_context(preset.rc()):
        figure, panels, side = panel_grid(len(keys), preset, histogram, colorbar=True,
                                          top_labels=style.get("show_counts", True))
        style.setdefault("count_fontsize", 0.9 * side * 72 / histogram_data.pooled.n_bins)
        for (ax, hist_ax), display in zip(panels, displays, strict=True):
            panel_title = None
            if single:  # one panel: its title says it all, no figure title
                panel_title = f"{display.class_name} ({suffix})"
                panel_title = f"{title}: {panel_title}" if title else panel_title
            elif subset and display.class_name == ALL_CLASSES:  # not all: say which pool
                panel_title = f"{len(picked)} classes pooled"
            display.n_images = None
            display.plot(ax, hist_ax=hist_ax, histogram=histogram, cmap=cmap, norm=shared,
                         colorbar=False, title=panel_title, **style)
        outer_labels(figure, panels, preset.columns(len(keys)))
        axes = [a for pair in panels for a in pair if a is not None]
        colorbar = figure.colorbar(displays[0].mesh_, ax=axes,
                                   shrink=min(0.6, 3 / len(axes) + 0.3), aspect=30, pad=0.02)
        style_colorbar(colorbar)
        if not single:
            figure.suptitle(f"{title} ({suffix})" if title else suffix)
    return figure, displays, colorbar


def dataset_layout(data: ReliabilityHistogram | Sequence[BinStats], n_images: int, *,
                   dpi: float, preset: str | Preset | None = None, **options) -> FrozenLayout:
    """The layout (:func:`widest_layout`) of a :func:`plot_dataset` figure of ``n_images``
    images drawn with ``options`` at ``dpi``, made on a stand-in built from ``data``: any
    images with the same classes and bins give the same layout, so it can be made before
    the last case of a run is in."""
    preset = get_preset(preset)
    figure, displays, _ = plot_dataset(data, preset=preset, **options)
    pin_empty_labels(figure)  # as render_dataset_figure does: the same layout, made faster
    return widest_layout(figure, displays, n_images, dpi=dpi, preset=preset, restore=False)


def widest_layout(figure, displays: Sequence[DatasetReliabilityHistogramDisplay],
                  n_images: int, *, dpi: float, preset: str | Preset | None = None,
                  restore: bool = True) -> FrozenLayout:
    """Lay a :func:`plot_dataset` ``figure`` out at ``dpi`` (its layout engine, once) as if
    its labels were the widest ``n_images`` images can give it, and return that layout:
    every images-per-column count as wide as ``n_images`` (image-class pairs in the
    all-classes panel) and every count row on a log axis from 1 to 100M
    (:data:`LAYOUT_COUNTS`). The layout thus depends on the panels and the number of digits
    of ``n_images``, not on the data. Counts as wide as each other take the room of the
    outermost two, so only those two are laid out (the same layout; the engine measures
    every label of every axes several times). With ``restore`` the figure's own labels
    and count scales are put back (its layout engine stays: apply the layout returned)."""
    preset = get_preset(preset)
    n_pairs = n_images * max(1, sum(d.class_name != ALL_CLASSES for d in displays))
    kept = []
    with matplotlib.rc_context(preset.rc()):
        for display in displays:
            hist_ax, labels, limits = display.hist_ax_, None, None
            if display.count_labels_:
                labels = [text.get_text() for text in display.count_labels_]
                widest = str(n_pairs if display.class_name == ALL_CLASSES else n_images)
                shown = [i for i, text in enumerate(labels) if text]
                outer = {shown[0], shown[-1]} if shown else set()
                display.set_count_labels([widest if i in outer else ""
                                          for i in range(len(labels))])
            if hist_ax is not None:
                limits = (hist_ax.get_yscale() == "log", hist_ax.get_ylim(),
                          hist_ax.get_autoscaley_on())
                style_count_axis(hist_ax, log=True)
                hist_ax.set_ylim(*LAYOUT_COUNTS)
            kept.append((display, labels, hist_ax, limits))
        with at_dpi(figure, dpi):
            figure.get_layout_engine().execute(figure)
        layout = FrozenLayout.of(figure)
        if restore:
            for display, labels, hist_ax, limits in kept:
                if labels is not None:
                    display.set_count_labels(labels)
                if hist_ax is not None:
                    log, ylim, auto = limits
                    style_count_axis(hist_ax, log=log)
                    hist_ax.set_ylim(*ylim)
                    hist_ax.set_autoscaley_on(auto)
    return layout


def _counts(display: DatasetReliabilityHistogramDisplay):
    """What the count row of a dataset panel shows."""
    return (display.pooled_count if display.pooled_count is not None
            else display.images_per_column)


def _select_histogram(histogram: ReliabilityHistogram, picked: list[int]) -> ReliabilityHistogram:
    return ReliabilityHistogram(
        counts=histogram.counts[picked], voxel_counts=histogram.voxel_counts[picked],
        pooled=histogram.pooled.select(picked), n_images=histogram.n_images,
    )
