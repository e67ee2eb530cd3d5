"""Display objects and figure helpers: assertions on the data and artists they draw."""

import subprocess
import sys

import matplotlib
import numpy as np
import pytest
from matplotlib.colors import LogNorm, Normalize, PowerNorm

from calibviz import BinStats, bin_image, reliability_histogram
from calibviz.plot import (
    ALL_CLASSES,
    PRESETS,
    DatasetReliabilityHistogramDisplay,
    ReliabilityDiagramDisplay,
    format_value,
    get_preset,
    make_norm,
    plot_case,
    plot_dataset,
    save_figure,
)

EDGES5 = np.linspace(0, 1, 6)


def hand_stats() -> BinStats:
    """Two classes, five bins; bin 2 of class 0 and bins 3–4 of class 1 are empty."""
    count = np.array([[10, 4, 0, 2, 1000], [5, 5, 5, 0, 0]])
    conf = np.array([[0.05, 0.3, 0.0, 0.7, 0.95], [0.1, 0.3, 0.5, 0.0, 0.0]])
    freq = np.array([[0.1, 0.25, 0.0, 0.5, 0.9], [0.0, 0.4, 0.2, 0.0, 0.0]])
    zeros = np.zeros(2, dtype=np.int64)
    return BinStats(
        count=count, sum_p=conf * count, sum_y=freq * count, sum_p2=conf**2 * count,
        sum_py=conf * freq * count, tp=np.array([5, 3]), fp=zeros, fn=zeros,
        tn=np.array([1011, 12]), edges=EDGES5, class_names=("liver", "tumour"),
    )


def naive_metrics(conf, freq, count):
    keep = count > 0
    gaps = np.abs(conf - freq)[keep]
    return (count[keep] * gaps).sum() / count[keep].sum(), gaps.mean(), gaps.max()


def synthetic_dataset(n_images=6, n_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_images):
        probs = rng.dirichlet(np.ones(n_classes), size=300).T  # float64 [C, 300]
        labels = np.array([rng.choice(n_classes, p=p ** 2 / (p ** 2).sum()) for p in probs.T])
        out.append(bin_image(probs, labels, n_bins=10))
    return out


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
        text = display.text_.txt.get_text()
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
    assert "ECE n/a" in display.text_.txt.get_text()


def test_constructor_checks_shapes_and_computes_metrics():
    with pytest.raises(ValueError, match="shape"):
        ReliabilityDiagramDisplay([0.1], [0.2, 0.3], [1, 1], EDGES5[:3])
    display = ReliabilityDiagramDisplay([0.1, np.nan], [0.3, np.nan], [2, 0], [0, 0.5, 1])
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
    labels = [t.get_text() for t in display.count_axis_.get_xticklabels()]
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


# ------------------------------------------------------------------- figure helpers
@pytest.mark.parametrize("n_classes", [1, 3, 21])
def test_dataset_figure_has_one_shared_colour_bar_for_any_class_count(n_classes):
    stats = synthetic_dataset(2, n_classes, seed=n_classes)
    figure, displays, colorbar = plot_dataset(stats, histogram=n_classes < 21,
                                              show_counts=n_classes < 21)
    expected_panels = n_classes + (1 if n_classes > 1 else 0)
    assert len(displays) == expected_panels
    assert displays[-1].class_name == (ALL_CLASSES if n_classes > 1 else "class0")
    assert colorbar is not None and colorbar.ax in figure.axes
    norms = {id(d.mesh_.norm) for d in displays}
    assert len(norms) == 1  # one shared colour scale
    assert all(d.colorbar_ is None for d in displays)
    figure.canvas.draw()  # the layout engine places everything without error
    bar = colorbar.ax.get_position()
    for display in displays:  # the colour bar does not sit over any panel
        assert display.ax_.get_position().x1 <= bar.x0 + 1e-9


def test_case_figure_one_panel_per_class_and_selection():
    stats = hand_stats()
    figure, displays = plot_case(stats, title="case 7")
    assert [d.class_name for d in displays] == ["liver", "tumour"]
    assert figure.legends and figure.legends[0].get_title().get_text() == "case 7"
    figure, displays = plot_case(stats, classes=["tumour"], histogram=False)
    assert len(displays) == 1 and displays[0].hist_ax_ is None
    with pytest.raises(ValueError, match="unknown class"):
        plot_case(stats, classes=["spleen"])


def test_presets_and_overrides():
    assert get_preset("single").width == 3.5 and get_preset("double").width == 7.16
    assert get_preset(None) is PRESETS["screen"]
    assert get_preset("single", font_size=6).font_size == 6
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("poster")
    figure, _, _ = plot_dataset(synthetic_dataset(2), preset="single")
    assert figure.get_size_inches()[0] == pytest.approx(3.5)
    figure, _ = plot_case(hand_stats(), preset="double")
    assert figure.get_size_inches()[0] == pytest.approx(7.16)


def test_plotting_and_saving_leave_rcparams_unchanged(tmp_path):
    before = dict(matplotlib.rcParams)
    figure, _ = plot_case(hand_stats(), preset="single")
    save_figure(figure, tmp_path / "case.pdf", preset="single")
    figure, _, _ = plot_dataset(synthetic_dataset(2), preset="double", norm="log")
    save_figure(figure, tmp_path / "dataset.svg", preset="double")
    ReliabilityDiagramDisplay.from_stats(hand_stats()).plot(preset="single")
    assert dict(matplotlib.rcParams) == before


@pytest.mark.parametrize(("suffix", "magic"),
                         [("png", b"\x89PNG"), ("pdf", b"%PDF"), ("svg", b"<?xml")])
def test_save_formats(tmp_path, suffix, magic):
    display = ReliabilityDiagramDisplay.from_stats(hand_stats()).plot()
    path = save_figure(display.figure_, tmp_path / f"diagram.{suffix}", dpi=50)
    assert path.read_bytes()[: len(magic)] == magic
    with pytest.raises(ValueError, match="unknown figure format"):
        save_figure(display.figure_, tmp_path / "diagram.gif")


def test_plot_module_does_not_import_pyplot():
    code = ("import sys, calibviz, calibviz.plot, calibviz.figures, calibviz.cli_plot; "
            "assert 'matplotlib.pyplot' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
