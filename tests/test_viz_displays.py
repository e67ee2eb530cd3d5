"""Display objects: assertions on the data and artists they draw."""

import matplotlib
import numpy as np
import pytest
from matplotlib.colors import LogNorm, Normalize, PowerNorm

from calibviz import reliability_histogram
from calibviz.viz import (
    ALL_CLASSES,
    DatasetReliabilityHistogramDisplay,
    ReliabilityDiagramDisplay,
    format_value,
    make_norm,
)

from .viz_data import EDGES5, hand_stats, naive_metrics, synthetic_dataset


# ------------------------------------------------------------------ reliability diagram
def test_diagram_bars_are_gaps_and_markers_are_frequencies():
    stats = hand_stats()
    display = ReliabilityDiagramDisplay.from_stats(stats, "liver").plot()
    count, conf, freq = stats.count[0], stats.sum_p[0] / 1.0, stats.sum_y[0]
    keep = count > 0
    conf = np.where(keep, conf / np.maximum(count, 1), np.nan)
    freq = np.where(keep, freq / np.maximum(count, 1), np.nan)
    bars = list(display.bars_)
    assert len(bars) == keep.sum() == 4  # the empty bin draws no bar
    np.testing.assert_allclose([b.get_height() for b in bars], np.abs(conf - freq)[keep])
    np.testing.assert_allclose([b.get_y() for b in bars], np.minimum(conf, freq)[keep])
    np.testing.assert_allclose([b.get_x() for b in bars], EDGES5[:-1][keep])
    np.testing.assert_allclose([b.get_width() for b in bars], 0.2)
    x, y = display.markers_.get_data()
    np.testing.assert_allclose(x, conf[keep])
    np.testing.assert_allclose(y, freq[keep])
    np.testing.assert_allclose(display.diagonal_.get_xydata(), [[0, 0], [1, 1]])


def test_diagram_text_shows_the_metric_values():
    stats = hand_stats()
    for c in range(2):
        display = ReliabilityDiagramDisplay.from_stats(stats, c).plot()
        keep = stats.count[c] > 0
        conf = np.divide(stats.sum_p[c], stats.count[c], where=keep, out=np.zeros(5))
        freq = np.divide(stats.sum_y[c], stats.count[c], where=keep, out=np.zeros(5))
        expected = naive_metrics(conf, freq, stats.count[c])
        text = display.text_.get_text()
        for name, value in zip(("ECE", "ACE", "MCE"), expected, strict=True):
            assert f"{name} {format_value(value)}" in text
        assert display.ax_.get_title() == stats.class_names[c]


def test_mce_arrow_points_at_the_largest_gap():
    display = ReliabilityDiagramDisplay.from_stats(hand_stats(), "tumour").plot()
    # tumour gaps: 0.1, 0.1, 0.3 -> bin 2 (centre 0.5), bar from 0.2 to 0.5
    np.testing.assert_allclose(display.mce_arrow_.xy, (0.5, 0.35))
    assert display.mce_arrow_.get_text() == "MCE"
    x, y = display.mce_arrow_.xyann
    assert 0 < x < 1 and 0 < y < 1


def test_count_histogram_goes_log_above_ratio_100():
    liver = ReliabilityDiagramDisplay.from_stats(hand_stats(), "liver").plot()  # 1000 / 1
    tumour = ReliabilityDiagramDisplay.from_stats(hand_stats(), "tumour").plot()  # 5 / 5
    assert liver.hist_ax_.get_yscale() == "log"
    assert tumour.hist_ax_.get_yscale() == "linear"
    assert len(liver.hist_bars_) == 4
    np.testing.assert_allclose([b.get_height() for b in tumour.hist_bars_], [5, 5, 5])


def test_diagram_into_given_axes_without_histogram_or_legend():
    figure = matplotlib.figure.Figure()
    ax = figure.subplots()
    display = ReliabilityDiagramDisplay.from_stats(hand_stats(), 0).plot(
        ax, histogram=False, bar_color="tab:green", show_mce=False)
    assert display.ax_ is ax and display.figure_ is figure and display.hist_ax_ is None
    assert display.legend_ is None and display.mce_arrow_ is None
    assert ax.get_xlim() == (0, 1) and ax.get_ylim() == (0, 1)
    assert ax.get_xlabel() == "predicted foreground probability"
    assert ax.get_ylabel() == "empirical foreground frequency"
    with_legend = ReliabilityDiagramDisplay.from_stats(hand_stats(), 0).plot(
        figure.subplots(), legend=True)
    assert {t.get_text() for t in with_legend.legend_.get_texts()} == {
        "perfect calibration", "gap", "frequency"}


def test_all_empty_class_draws_nothing_and_says_nan():
    stats = hand_stats().mask_classes(np.array([False, True]))
    display = ReliabilityDiagramDisplay.from_stats(stats, 0).plot()
    assert len(display.bars_) == 0 and display.mce_arrow_ is None
    assert "ECE n/a" in display.text_.get_text()


def test_from_bins_checks_shapes_and_derives_metrics():
    with pytest.raises(ValueError, match="shape"):
        ReliabilityDiagramDisplay.from_bins([0.1], [0.2, 0.3], [1, 1], EDGES5[:3])
    display = ReliabilityDiagramDisplay.from_bins([0.1, np.nan], [0.3, np.nan], [2, 0],
                                                  [0, 0.5, 1])
    assert display.ece == pytest.approx(0.2) and display.mce == pytest.approx(0.2)


# -------------------------------------------------------- dataset reliability histogram
def test_heatmap_is_column_normalised_counts_with_blank_empty_columns():
    stats = synthetic_dataset()
    histogram = reliability_histogram(stats)
    display = DatasetReliabilityHistogramDisplay.from_histogram(histogram, 1).plot()
    expected = histogram.column_normalised()[1]
    drawn = display.mesh_.get_array()
    assert drawn.shape == expected.shape
    np.testing.assert_array_equal(np.ma.getmaskarray(drawn), np.isnan(expected))
    np.testing.assert_allclose(drawn.filled(np.nan), expected)
    # independent: the counts divided by their column sums
    counts = histogram.counts[1]
    cols = counts.sum(axis=0)
    np.testing.assert_allclose(drawn[:, cols > 0], counts[:, cols > 0] / cols[cols > 0])
    assert display.colorbar_ is not None and display.colorbar_.mappable is display.mesh_
    labels = [t.get_text() for t in display.count_labels_]
    assert labels == [str(n) for n in cols]
    x, y = display.curve_.get_data()
    keep = histogram.pooled.nonempty[1]
    np.testing.assert_allclose(x, histogram.pooled.mean_confidence[1][keep])
    np.testing.assert_allclose(y, histogram.pooled.frequency[1][keep])


def test_empty_columns_are_masked():
    counts = np.zeros((5, 5), dtype=int)
    counts[0, 0], counts[3, 0], counts[4, 4] = 1, 3, 2
    display = DatasetReliabilityHistogramDisplay(counts, EDGES5).plot(histogram=False)
    drawn = display.mesh_.get_array()
    assert np.ma.getmaskarray(drawn)[:, 1:4].all()
    np.testing.assert_allclose(drawn[:, 0], [0.25, 0, 0, 0.75, 0])
    assert display.curve_.get_xydata().size == 0


@pytest.mark.parametrize(
    ("norm", "kind", "gamma"),
    [("power", PowerNorm, 0.35), ("log", LogNorm, None), ("linear", Normalize, None)],
)
def test_norm_is_the_requested_one(norm, kind, gamma):
    display = DatasetReliabilityHistogramDisplay.from_stats(synthetic_dataset(3), 0).plot(
        norm=norm)
    assert type(display.mesh_.norm) is kind
    assert display.mesh_.norm is display.norm_
    if gamma is not None:
        assert display.norm_.gamma == gamma


def test_default_norm_is_power_035_and_custom_gamma():
    display = DatasetReliabilityHistogramDisplay.from_stats(synthetic_dataset(3), 0).plot()
    assert isinstance(display.norm_, PowerNorm) and display.norm_.gamma == 0.35
    assert display.mesh_.cmap.name.startswith("YlOrRd")
    assert make_norm("power", gamma=0.5).gamma == 0.5
    custom = Normalize(0, 0.5)
    assert make_norm(custom) is custom
    with pytest.raises(ValueError, match="unknown norm"):
        make_norm("sqrt")
    with pytest.raises(ValueError, match="gamma"):
        make_norm("power", gamma=0)


def test_all_classes_panel_sums_the_class_grids():
    histogram = reliability_histogram(synthetic_dataset())
    display = DatasetReliabilityHistogramDisplay.from_histogram(histogram, ALL_CLASSES)
    np.testing.assert_array_equal(display.counts, histogram.counts.sum(axis=0))
    pooled = histogram.pooled
    np.testing.assert_allclose(display.pooled_count, pooled.count.sum(axis=0))
    np.testing.assert_allclose(display.pooled_confidence,
                               pooled.sum_p.sum(0) / pooled.count.sum(0))




@pytest.mark.parametrize("policy", ["exclude", "drop-case"])
def test_figures_of_a_results_use_its_absent_policy(policy):
    """A1: drawing a loaded run shows the run's own absent policy unless told otherwise."""
    import matplotlib.pyplot as plt

    from calibviz import Results
    from calibviz.viz import plot_dataset
    from calibviz.viz.displays import DatasetReliabilityHistogramDisplay
    from calibviz.viz.render import dataset_figure
    from calibviz.viz.selection import figure_classes, select_cases

    from .conftest import random_images

    images = random_images(n_images=6)
    results = Results(tuple(f"c{i}" for i in range(6)), images, {"absent": policy})
    own = reliability_histogram(images, absent=policy)
    assert not np.array_equal(own.counts, reliability_histogram(images).counts)
    _, displays, _ = plot_dataset(results)
    assert np.array_equal(displays[0].counts, own.counts[0])
    _, displays, _ = plot_dataset(results, absent="include")
    assert np.array_equal(displays[0].counts, reliability_histogram(images).counts[0])
    display = DatasetReliabilityHistogramDisplay.from_stats(results, 2)
    assert np.array_equal(display.counts, own.counts[2])
    figure = dataset_figure(results, dpi=50)
    assert figure is not None
    plt.close("all")
    explicit = select_cases(results, "worst 3", absent=policy)
    assert select_cases(results, "worst 3") == explicit
    assert figure_classes(results, limit=1) == figure_classes(results, limit=1, absent=policy)
