"""Figure of a paired comparison (spec §10): per metric, the per-image differences
(model − baseline) per class as a jittered strip with the mean difference and its bootstrap
interval, zero marked; below, when both runs kept their bins, the two models' dataset
reliability histograms side by side on one colour scale.

No pyplot: figures are ``matplotlib.figure.Figure`` objects drawn inside ``rc_context``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..aggregate import reliability_histogram
from ..comparison import Comparison, verdict
from ..run_values import CLASS_MEAN, DISPLAY_NAMES
from .displays import ALL_CLASSES, XLABEL, YLABEL, DatasetReliabilityHistogramDisplay
from .figures import make_norm, new_figure
from .presets import Preset, get_preset

DIFFERENCE_LABEL = "model − baseline"
#: Widest comparison figure (inches) when the preset does not fix the width.
MAX_WIDTH = 13.0


class PairedDifferencesDisplay:
    """Per-image paired differences of one metric, one column of points per class.

    Parameters
    ----------
    differences : DataFrame ``[n_images, K]`` (model − baseline; columns = classes and
        ``mean``; NaN pairs are not drawn)
    mean_diff, ci_low, ci_high : float ``[K]`` mean difference and its interval (default:
        the column means, no interval)
    metric : metric name for the title; note : text under the title (e.g. the verdict)

    Attributes set by :meth:`plot`: ``ax_``, ``figure_``, ``points_`` (one collection per
    column), ``means_`` (the mean markers with error bars), ``bare_means_`` (the means without
    an interval: NaN, or not containing the mean), ``zero_line_``.
    """

    def __init__(self, differences: pd.DataFrame, *, mean_diff=None, ci_low=None,
                 ci_high=None, metric: str = "", note: str | None = None):
        self.differences = differences
        k = differences.shape[1]
        nan = np.full(k, np.nan)
        with np.errstate(invalid="ignore"):
            means = np.nanmean(differences.to_numpy(np.float64), axis=0) if len(
                differences) and np.isfinite(differences.to_numpy(np.float64)).any() else nan
        self.mean_diff = means if mean_diff is None else np.asarray(mean_diff, np.float64)
        self.ci_low = nan if ci_low is None else np.asarray(ci_low, np.float64)
        self.ci_high = nan if ci_high is None else np.asarray(ci_high, np.float64)
        for name in ("mean_diff", "ci_low", "ci_high"):
            if getattr(self, name).shape != (k,):
                raise ValueError(f"{name} must have shape ({k},), got "
                                 f"{getattr(self, name).shape}")
        self.metric = metric
        self.note = note

    def plot(self, ax=None, *, seed: int = 0, jitter: float = 0.28, color="tab:blue",
             mean_color="black", point_size: float | None = None,
             preset: str | Preset | None = None) -> PairedDifferencesDisplay:
        """Draw into ``ax`` (a new figure sized by ``preset`` when ``None``); point positions
        are jittered with a seeded generator so the figure is reproducible."""
        if ax is None:
            preset = get_preset(preset)
            with matplotlib.rc_context(preset.rc()):
                figure = new_figure(preset.figure_width(1), preset.panel_width * 0.9)
                return self._draw(figure.subplots(), seed, jitter, color, mean_color,
                                  point_size)
        return self._draw(ax, seed, jitter, color, mean_color, point_size)

    def _draw(self, ax, seed, jitter, color, mean_color, point_size):
        self.ax_, self.figure_ = ax, ax.figure
        rng = np.random.default_rng(seed)
        values = self.differences.to_numpy(np.float64)
        n = values.shape[0]
        size = point_size or (9.0 if n <= 50 else 4.0 if n <= 300 else 1.5)
        alpha = 0.6 if n <= 50 else 0.35 if n <= 300 else 0.2
        self.zero_line_ = ax.axhline(0.0, color="0.3", linewidth=0.8, linestyle="--",
                                     zorder=1)
        self.points_ = []
        positions = np.arange(values.shape[1], dtype=np.float64)
        for k, column in enumerate(values.T):
            keep = np.isfinite(column)
            x = k + rng.uniform(-jitter, jitter, size=keep.sum())
            self.points_.append(ax.scatter(x, column[keep], s=size, color=color, alpha=alpha,
                                           linewidths=0, zorder=2, rasterized=n > 300))
        ok, with_bar = self._interval_rows()
        lower = np.where(with_bar, self.mean_diff - self.ci_low, 0.0)
        upper = np.where(with_bar, self.ci_high - self.mean_diff, 0.0)
        self.means_ = ax.errorbar(positions[with_bar], self.mean_diff[with_bar],
                                  yerr=np.vstack([lower[with_bar], upper[with_bar]]), fmt="D",
                                  markersize=4, color=mean_color, ecolor=mean_color,
                                  elinewidth=1.2, capsize=3, zorder=4,
                                  label="mean and interval")
        bare = ok & ~with_bar  # a mean without an interval: the marker alone
        self.bare_means_ = ax.plot(positions[bare], self.mean_diff[bare], "D", markersize=4,
                                   color=mean_color, zorder=4)[0]
        labels = [str(c) for c in self.differences.columns]
        ax.set_xticks(positions, labels=labels,
                      rotation=45 if len(labels) > 5 or max(map(len, labels)) > 8 else 0,
                      ha="right" if len(labels) > 5 or max(map(len, labels)) > 8 else "center")
        if CLASS_MEAN in labels:  # the tested per-image class mean stands apart
            ax.axvline(labels.index(CLASS_MEAN) - 0.5, color="0.8", linewidth=0.6, zorder=0)
        ax.set_xlim(-0.6, len(labels) - 0.4)
        self._limits(ax, values)
        name = DISPLAY_NAMES.get(self.metric, self.metric)
        title = f"{name}: {DIFFERENCE_LABEL}" if name else DIFFERENCE_LABEL
        ax.set_title(f"{title}\n{self.note}" if self.note else title)
        ax.set_ylabel(f"{name or 'value'} difference")
        ax.grid(axis="y", color="0.92", linewidth=0.5, zorder=0)
        return self

    def _interval_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """bool ``[K]`` columns with a mean, and those whose interval is drawn: finite and
        containing the mean (any other interval is drawn as absent)."""
        ok = np.isfinite(self.mean_diff)
        with np.errstate(invalid="ignore"):
            with_bar = ok & np.isfinite(self.ci_low) & np.isfinite(self.ci_high) & \
                (self.ci_low <= self.mean_diff) & (self.mean_diff <= self.ci_high)
        return ok, with_bar

    def _limits(self, ax, values):
        """y range over the points, the intervals and 0, with a margin."""
        drawn = self._interval_rows()[1]
        parts = [values[np.isfinite(values)], self.ci_low[drawn], self.ci_high[drawn],
                 self.mean_diff[np.isfinite(self.mean_diff)], np.zeros(1)]
        every = np.concatenate(parts)
        low, high = float(every.min()), float(every.max())
        pad = 0.08 * (high - low) if high > low else 1.0
        ax.set_ylim(low - pad, high + pad)


def _metric_rows(table: pd.DataFrame, model: str, metric: str, columns: Sequence[str]):
    rows = table[(table["model"] == model) & (table["metric"] == metric)].set_index("class")
    return rows.reindex(list(columns))


def _short_verdict(row: dict) -> str:
    """The verdict in a few words for a panel title: "lower, p < 0.001" or "no evidence
    (p = 0.41)"."""
    text = verdict(row, method=False)
    name = DISPLAY_NAMES.get(str(row["metric"]), str(row["metric"]))
    text = text.replace(f" of a difference in {name}", "").replace(f" {name},", ",")
    return text.replace(f" to test {name}", "")


def plot_comparison(comparison: Comparison | pd.DataFrame, *, model: str | None = None,
                    metrics: Sequence[str] | None = None, histograms: bool = True,
                    histogram_class: str = ALL_CLASSES, preset: str | Preset | None = None,
                    seed: int = 0, max_columns: int = 3) -> Figure:
    """The comparison figure of one model against the baseline.

    ``comparison``: a :class:`~calibviz.comparison.Comparison` (points, means, intervals and,
    when both runs kept bins, the reliability histograms) or just its table (means and
    intervals only). ``model``: which model (default the first). ``histogram_class``: the
    class of the reliability histograms (default the pooled ``"all classes"`` panel).
    """
    preset = get_preset(preset)
    table = comparison.table if isinstance(comparison, Comparison) else comparison
    models = list(pd.unique(table["model"]))
    if not models:
        raise ValueError("the comparison table is empty")
    model = models[0] if model is None else model
    if model not in models:
        raise ValueError(f"no model {model!r} in the comparison; models: {', '.join(models)}")
    available = list(pd.unique(table.loc[table["model"] == model, "metric"]))
    metrics = available if metrics is None else list(metrics)
    unknown = [m for m in metrics if m not in available]
    if unknown or not metrics:
        raise ValueError(f"metric(s) {unknown or metrics} not compared; available: "
                         f"{', '.join(available)}")
    baseline = str(table.loc[table["model"] == model, "baseline"].iloc[0])
    full = isinstance(comparison, Comparison)
    show_histograms = histograms and full and _has_bins(comparison, model)

    columns = list(pd.unique(table.loc[table["model"] == model, "class"]))
    panel_w = max(preset.panel_width, 0.32 * len(columns) + 1.0)
    fit = max(1, int(MAX_WIDTH // panel_w)) if preset.width is None else max_columns
    n_cols = max(1, min(len(metrics), max_columns, fit))
    n_rows = math.ceil(len(metrics) / n_cols)
    width = preset.width or panel_w * n_cols
    strip_h = min(0.75 * width / n_cols, 3.2) + 0.35 * (len(columns) > 5)
    hist_h = min(0.42 * width, 4.0) if show_histograms else 0.0
    with matplotlib.rc_context(preset.rc()):
        figure = new_figure(width, n_rows * strip_h + hist_h + 0.5, layout="constrained")
        if show_histograms:
            top, bottom = figure.subfigures(2, 1, height_ratios=[n_rows * strip_h, hist_h])
            content = min(width, 2.4 * hist_h)  # two square panels and a colour bar
            if width - content > 0.2:  # keep the pair together, centred
                side = (width - content) / 2
                bottom = bottom.subfigures(1, 3, width_ratios=[side, content, side])[1]
        else:
            top, bottom = figure, None
        axes = np.atleast_1d(top.subplots(n_rows, n_cols, squeeze=False).ravel())
        for ax, metric in zip(axes, metrics, strict=False):
            rows = _metric_rows(table, model, metric, columns)
            if full:
                differences = comparison.differences(model, metric)
            else:
                differences = pd.DataFrame(columns=columns, dtype=np.float64)
            mean_row = rows.loc[CLASS_MEAN] if CLASS_MEAN in rows.index else None
            note = None
            if mean_row is not None and np.isfinite(mean_row["n"]):
                row = {**mean_row.to_dict(), "metric": metric}
                note = f"mean: {_short_verdict(row)}"
            display = PairedDifferencesDisplay(
                differences, mean_diff=rows["mean_diff"].to_numpy(),
                ci_low=rows["ci_low"].to_numpy(), ci_high=rows["ci_high"].to_numpy(),
                metric=metric, note=note)
            display.plot(ax, seed=seed)
        for ax in axes[len(metrics):]:
            ax.set_visible(False)
        n_pairs = int(table.loc[table["model"] == model, "n"].max())
        level = (comparison.settings.get("confidence", 0.95) if full else 0.95) * 100
        top.suptitle(f"{model} vs {baseline} (baseline): {n_pairs} paired images\n"
                     f"{'points: images · ' if full else ''}diamonds: mean difference "
                     f"with {level:g} % bootstrap interval · p: Wilcoxon, Holm-adjusted",
                     fontsize=matplotlib.rcParams["font.size"])
        if show_histograms:
            _draw_histograms(bottom, comparison, model, histogram_class)
    return figure


def _has_bins(comparison: Comparison, model: str) -> bool:
    other = comparison._run(model)
    return comparison.baseline.stats is not None and other.stats is not None


def _draw_histograms(subfigure, comparison: Comparison, model: str, class_: str):
    """The dataset reliability histograms of baseline and model on the paired cases, one
    shared colour scale and one colour bar."""
    runs = [comparison.baseline, comparison._run(model)]
    paired = set(comparison.differences(model, comparison.table["metric"].iloc[0]).index)
    shared = make_norm("power")
    axes = subfigure.subplots(1, 2)
    displays = []
    for ax, run in zip(axes, runs, strict=True):
        stats = [s for c, s in zip(run.case_ids, run.stats, strict=True) if c in paired]
        histogram = reliability_histogram(stats, absent=run.absent or "include")
        display = DatasetReliabilityHistogramDisplay.from_histogram(histogram, class_)
        display.plot(ax, histogram=False, norm=shared, colorbar=False, show_counts=False,
                     title=f"{run.name} — {display.class_name}")
        ax.set_xlabel(XLABEL)
        displays.append(display)
    axes[1].set_ylabel("")
    axes[0].set_ylabel(YLABEL)
    colorbar = subfigure.colorbar(displays[0].mesh_, ax=list(axes), shrink=0.85, aspect=25,
                                  pad=0.02)
    colorbar.set_label("fraction of the column's images")
    colorbar.outline.set_linewidth(0.5)
    axes[0].legend(loc="upper left", frameon=False,
                   fontsize=matplotlib.rcParams["legend.fontsize"])
    return displays
