"""Figure-level layouts, presets and saving; rendering a run's figures to files; image
regression of the two main figures against committed baselines (regenerate with
CALIBVIZ_UPDATE_BASELINES=1)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from matplotlib.testing.compare import compare_images

from calibviz import Results, bin_image
from calibviz.aggregate import mean_over_classes
from calibviz.viz import (
    ALL_CLASSES,
    SIZE_PRESETS,
    ReliabilityDiagramDisplay,
    figure_classes,
    get_preset,
    plot_case,
    plot_dataset,
    render_case_figure,
    render_dataset_figure,
    render_figures,
    resolve_classes,
    safe_name,
    save_figure,
    select_cases,
)

from .viz_data import hand_stats, make_results, synthetic_dataset

BASELINE = Path(__file__).parent / "baseline"


@pytest.fixture(scope="module")
def results():
    return make_results()


def naive_ace_table(stats):
    """float64 [n_images, C]: each image's ACE per class, by loops."""
    table = []
    for s in stats:
        row = []
        for c in range(s.n_classes):
            gaps = [abs(s.sum_p[c, k] / s.count[c, k] - s.sum_y[c, k] / s.count[c, k])
                    for k in range(s.n_bins) if s.count[c, k] > 0]
            row.append(sum(gaps) / len(gaps))
        table.append(row)
    return np.array(table)


def naive_mean_ace(stats):
    """float64 [n_images]: each image's ACE averaged over its classes."""
    return naive_ace_table(stats).mean(axis=1)


def naive_class_ace(stats):
    """float64 [C]: each class's ACE averaged over the images."""
    return naive_ace_table(stats).mean(axis=0)


def many_class_results(n_classes, n_cases=3):
    rng = np.random.default_rng(1)
    names = tuple(f"organ{c}" for c in range(n_classes))
    stats = []
    for _ in range(n_cases):
        probs = rng.dirichlet(np.ones(n_classes) * 0.3, size=600).T
        sharpen = rng.uniform(0.5, 3, size=(n_classes, 1))  # classes calibrated differently
        truth = probs ** sharpen / (probs ** sharpen).sum(axis=0)
        labels = (rng.random(600) > np.cumsum(truth, axis=0)).sum(axis=0)
        stats.append(bin_image(probs, np.minimum(labels, n_classes - 1), n_bins=10,
                               class_names=names))
    return Results(cases=[f"c{i}" for i in range(n_cases)], stats=stats,
                   options={"n_bins": 10})


def test_figures_of_many_classes_show_the_worst_by_mean_ace():
    """A 117-class model (TotalSegmentator) would get figures of 117 panels, minutes each
    and tens of thousands of pixels tall: figures show MAX_FIGURE_CLASSES classes unless
    the user names them, the worst by mean ACE, in the run's class order."""
    from calibviz.viz.selection import MAX_FIGURE_CLASSES

    results = many_class_results(MAX_FIGURE_CLASSES + 5)
    scores = naive_class_ace(results.stats)
    expected = sorted(np.argsort(-scores, kind="stable")[:MAX_FIGURE_CLASSES].tolist())
    picked, phrase = figure_classes(results)
    assert picked == expected
    assert f"{MAX_FIGURE_CLASSES} of {MAX_FIGURE_CLASSES + 5} classes" in phrase
    assert figure_classes(results, ["organ3", 0]) == ([3, 0], "")
    few = many_class_results(MAX_FIGURE_CLASSES)
    assert figure_classes(few) == (None, "")


def test_render_figures_of_many_classes_say_which_are_shown(tmp_path):
    from calibviz.viz.selection import MAX_FIGURE_CLASSES

    results = many_class_results(MAX_FIGURE_CLASSES + 2, n_cases=2)
    summary = render_figures(results, tmp_path, dpi=20)
    assert summary["classes"] == figure_classes(results)[0]
    assert summary["class_selection"] == figure_classes(results)[1]
    named = render_figures(results, tmp_path, dpi=20, classes=["organ1"], kind="dataset")
    assert named["classes"] == [1] and named["class_selection"] == ""


def test_mean_ace_and_worst_selection(results):
    expected = naive_mean_ace(results.stats)
    np.testing.assert_allclose(mean_over_classes(results.stats, "ace"), expected)
    worst, phrase = select_cases(results, "worst 2")
    assert worst == list(np.argsort(-expected)[:2]) and phrase == "worst 2 by ACE"
    assert select_cases(results, "Worst 3 by ACE")[0] == list(np.argsort(-expected)[:3])
    assert select_cases(results, None, max_cases=10) == ([0, 1, 2, 3, 4], "all cases")
    capped, phrase = select_cases(results, None, max_cases=2)
    assert capped == worst and phrase == "worst 2 by ACE"
    assert select_cases(results, ["case/003", "case/001"])[0] == [3, 1]
    assert select_cases(results, "case/003, case/001")[0] == [3, 1]
    with pytest.raises(ValueError, match="unknown case id.*nope"):
        select_cases(results, ["nope"])


def test_render_figures_writes_files_and_counts(results, tmp_path):
    summary = render_figures(results, tmp_path, max_cases=3, dpi=40)
    assert summary["n_drawn"] == 3 and summary["n_skipped"] == 2 and summary["n_cases"] == 5
    assert summary["dataset"] == tmp_path / "dataset_reliability_histogram.png"
    assert summary["dataset"].read_bytes()[:4] == b"\x89PNG"
    assert len(summary["cases"]) == 3
    worst = select_cases(results, "worst 3")[0]
    assert [p.name for p in summary["cases"]] == [
        f"{safe_name(results.cases[i])}.png" for i in worst]
    assert all(p.parent == tmp_path / "cases" and p.exists() for p in summary["cases"])


def test_render_figures_kinds_formats_and_classes(results, tmp_path):
    summary = render_figures(results, tmp_path, kind="dataset", fmt="pdf",
                             classes=["tumour", 1], norm="log")
    assert summary["cases"] == [] and summary["n_drawn"] == 0
    assert summary["dataset"].read_bytes()[:4] == b"%PDF"
    summary = render_figures(results, tmp_path, kind="case", cases=["case/002"], fmt="svg")
    assert summary["dataset"] is None and summary["n_drawn"] == 1
    assert summary["cases"][0] == tmp_path / "cases" / "case_002.svg"
    for bad, match in [({"kind": "all"}, "unknown kind"), ({"fmt": "gif"}, "format"),
                       ({"classes": ["spleen"]}, "unknown class"),
                       ({"norm": "sqrt"}, "unknown norm"), ({"absent": "drop"}, "absent")]:
        with pytest.raises(ValueError, match=match):
            render_figures(results, tmp_path, **bad)


def test_render_case_figure_in_worker_processes(results, tmp_path):
    summary = render_figures(results, tmp_path, kind="case", cases="worst 2", workers=2,
                             dpi=30)
    assert len(summary["cases"]) == 2 and all(p.exists() for p in summary["cases"])


# ------------------------------------------------------------------- layouts, presets
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
    assert figure.legends and "case 7" in [text.get_text() for text in figure.texts]
    figure, displays = plot_case(stats, classes=["tumour"], histogram=False)
    assert len(displays) == 1 and displays[0].hist_ax_ is None
    with pytest.raises(ValueError, match="unknown class"):
        plot_case(stats, classes=["spleen"])


def test_presets_and_overrides():
    assert get_preset("single").width == 3.5 and get_preset("double").width == 7.16
    assert get_preset(None) is SIZE_PRESETS["screen"]
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


def test_viz_does_not_import_pyplot():
    code = ("import sys, calibviz, calibviz.viz.displays, calibviz.viz.layouts, "
            "calibviz.viz.render, calibviz.cli.plot; "
            "assert 'matplotlib.pyplot' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_resolve_classes_names_indices_and_label_values():
    stats = hand_stats()  # liver, tumour
    assert resolve_classes(stats, None) == [0, 1]
    assert resolve_classes(stats, ["tumour", 0, " liver"]) == [1, 0, 0]
    labels = {"liver": [1], "tumour": [2], "whole": [1, 2]}
    assert resolve_classes(stats, ["2", "liver"], class_labels=labels) == [1, 0]
    with pytest.raises(ValueError, match=r"unknown class '7'; known: liver, tumour "
                                         r"\(label values: liver=1, tumour=2\)"):
        resolve_classes(stats, ["7"], class_labels=labels)
    with pytest.raises(ValueError, match="record no label values; known: liver, tumour"):
        resolve_classes(stats, ["1"])
    with pytest.raises(ValueError, match="unknown class 'spleen'; known: liver, tumour"):
        resolve_classes(stats, ["spleen"])
    with pytest.raises(ValueError, match="out of range"):
        resolve_classes(stats, [2])
    with pytest.raises(ValueError, match="no classes selected"):
        resolve_classes(stats, [])


def test_save_figure_writes_atomically_with_the_usual_permissions(tmp_path):
    display = ReliabilityDiagramDisplay.from_stats(hand_stats()).plot()
    path = save_figure(display.figure_, tmp_path / "sub" / "diagram.png", dpi=30)
    assert path.read_bytes()[:4] == b"\x89PNG"
    mask = os.umask(0o022)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
    assert [p.name for p in path.parent.iterdir()] == ["diagram.png"]


# ------------------------------------------------------------- image regression
def _regression(name: str, render, tmp_path):
    actual = render(tmp_path / name)
    expected = BASELINE / name
    if os.environ.get("CALIBVIZ_UPDATE_BASELINES") or not expected.exists():
        if not os.environ.get("CALIBVIZ_UPDATE_BASELINES"):
            pytest.fail(f"no baseline {expected}; run with CALIBVIZ_UPDATE_BASELINES=1")
        BASELINE.mkdir(exist_ok=True)
        shutil.copy(actual, expected)
    failure = compare_images(str(expected), str(actual), tol=6)
    assert failure is None, failure


def test_image_regression_case_figure(results, tmp_path):
    _regression("case_figure.png", lambda path: render_case_figure(
        "case 004", results.stats[4], path, dpi=60), tmp_path)


def test_image_regression_dataset_figure(results, tmp_path):
    _regression("dataset_figure.png", lambda path: render_dataset_figure(
        results.stats, path, dpi=60, title="regression"), tmp_path)


# ------------------------------------------------ reused case figure, layout defects
def test_reused_case_figure_draws_exactly_like_a_fresh_one(results, tmp_path):
    from calibviz.viz.casefigure import CaseFigure

    fresh = render_case_figure("case/004", results.stats[4], tmp_path / "fresh.png", dpi=60)
    reused = CaseFigure(results.stats[0])
    for i in (0, 2, 1):  # other cases first: other heights, markers, arrows, scales
        reused.draw(results.cases[i], results.stats[i])
    reused.draw("case/004", results.stats[4])
    path = reused.save(tmp_path / "reused.png", dpi=60)
    assert compare_images(str(fresh), str(path), tol=0.01) is None


def test_case_figure_refuses_other_classes_or_bins(results):
    from calibviz.viz.casefigure import CaseFigure

    case_figure = CaseFigure(results.stats[0])
    with pytest.raises(ValueError, match="classes and bins it was built for"):
        case_figure.draw("x", hand_stats())


def test_count_axes_follow_one_rule_per_figure():
    stats = hand_stats()  # liver counts span 1000 / 1 (log), tumour 5 / 5 (linear alone)
    _, displays = plot_case(stats)
    assert {d.hist_ax_.get_yscale() for d in displays} == {"log"}
    _, displays, _ = plot_dataset([stats, stats])
    assert len({d.hist_ax_.get_yscale() for d in displays}) == 1


def _extent(artist):
    return artist.get_window_extent()


def test_single_class_dataset_figure_is_readable():
    figure, displays, _ = plot_dataset(make_results(8).stats, classes=["tumour"])
    figure.canvas.draw()
    width, height = figure.get_size_inches() * 150
    assert width >= 600 and height >= 600  # was 450 x 412 px
    display = displays[0]
    assert display.ax_.get_title() == "tumour (8 images)" and not figure._suptitle
    ylabel = _extent(display.ax_.yaxis.label)
    voxels = _extent(display.hist_ax_.yaxis.label)
    assert ylabel.y0 > voxels.y1  # the frequency label stays clear of "voxels"
    labels = [t for t in display.count_labels_ if t.get_text()]
    assert labels[0].get_fontsize() >= 5
    boxes = [_extent(t) for t in labels]
    assert all(a.x1 <= b.x0 + 0.5 for a, b in zip(boxes, boxes[1:]))  # no overlap


def test_two_panel_api_colour_bars_keep_off_the_next_panel():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from calibviz.viz import DatasetReliabilityHistogramDisplay

    figure = Figure()
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2)
    stats = make_results(6).stats
    displays = [DatasetReliabilityHistogramDisplay.from_stats(stats, c).plot(ax=ax)
                for ax, c in zip(axes, ["liver", "tumour"])]
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    bar = displays[0].colorbar_.ax.get_tightbbox(renderer)
    assert bar.x1 <= axes[1].get_tightbbox(renderer).x0


def test_all_classes_panel_counts_image_class_pairs():
    _, displays, _ = plot_dataset(make_results(4).stats)
    assert displays[-1].count_axis_.get_xlabel() == "image–class pairs per column"
    assert displays[0].count_axis_.get_xlabel() == "images per column"


def test_mce_label_covers_no_data_point(results):
    for stats in results.stats:
        figure, displays = plot_case(stats)
        figure.canvas.draw()
        for display in displays:
            if display.mce_arrow_ is None:
                continue
            box = display.mce_arrow_.get_bbox_patch().get_window_extent()
            points = display.ax_.transData.transform(display.markers_.get_xydata())
            inside = ((points[:, 0] > box.x0) & (points[:, 0] < box.x1)
                      & (points[:, 1] > box.y0) & (points[:, 1] < box.y1))
            assert not inside.any(), (display.class_name, display.mce_arrow_.xyann)


def test_image_regression_single_class_dataset_figure(results, tmp_path):
    _regression("dataset_single_class.png", lambda path: render_dataset_figure(
        results.stats, path, classes=["tumour"], dpi=60), tmp_path)


def test_image_regression_two_panel_api(results, tmp_path):
    from calibviz.viz import DatasetReliabilityHistogramDisplay, new_figure

    def render(path):
        figure = new_figure(6.4, 3.2, layout="none")
        for ax, c in zip(figure.subplots(1, 2), ["liver", "tumour"]):
            DatasetReliabilityHistogramDisplay.from_stats(results.stats, c).plot(ax=ax)
        return save_figure(figure, path, dpi=60)

    _regression("two_panel_api.png", render, tmp_path)


def _naive_place_label(x, y, *, below, markers, bars, half, step, marker_radius, avoid):
    """The MCE label's place by the rule, one candidate at a time (the test's oracle)."""
    hw, hh = half
    best, best_cost = None, np.inf
    for ring, radius in enumerate((1.0, 1.6, 2.3, 3.0)):
        for angle in np.deg2rad(np.arange(0, 360, 22.5)):
            tx, ty = x + radius * step * np.cos(angle), y + radius * step * np.sin(angle)
            box = (tx - hw, ty - hh, tx + hw, ty + hh)
            if min(box[0], box[1]) < 0.02 or max(box[2], box[3]) > 0.98:
                continue

            def area(a, b):
                w = min(a[2], b[2]) - max(a[0], b[0])
                h = min(a[3], b[3]) - max(a[1], b[1])
                return w * h if w > 0 and h > 0 else 0.0

            if avoid is not None and area(box, avoid) > 0:
                continue
            r = marker_radius
            covered = sum(box[0] - r < mx < box[2] + r and box[1] - r < my < box[3] + r
                          for mx, my in markers)
            bar_area = float(np.sum([area(box, b) for b in bars])) / (4 * hw * hh)
            crosses = box[1] < box[2] and box[3] > box[0]
            side = np.sign(ty - tx) != (-1.0 if below else 1.0)
            cost = 100 * covered + 10 * bar_area + 2 * crosses + 0.3 * side + 0.5 * ring
            if cost < best_cost - 1e-9:
                best, best_cost = (float(tx), float(ty)), cost
    return best if best is not None else (min(max(x, 0.5), 0.85), 0.1)


def test_mce_label_place_is_that_of_the_rule_candidate_by_candidate():
    from calibviz.viz.annotate import place_label

    rng = np.random.default_rng(7)
    for trial in range(300):
        n = int(rng.integers(0, 25))
        edges = np.linspace(0, 1, n + 1)
        conf, freq = rng.random(n), np.round(rng.random(n), 1 if trial % 2 else 3)
        low = np.minimum(conf, freq)
        bars = np.column_stack([edges[:-1], low, edges[1:], low + np.abs(conf - freq)])
        size, side = rng.uniform(6, 12), rng.uniform(80, 300)
        kwargs = dict(below=bool(trial % 3), markers=np.column_stack([conf, freq]), bars=bars,
                      half=(1.3 * size / side, 0.65 * size / side),
                      step=max(2.2 * size / side, 0.1), marker_radius=2 / side,
                      avoid=(0.0, 0.7, 0.3, 1.0) if trial % 4 else None)
        x, y = rng.random(2)
        assert place_label(x, y, **kwargs) == pytest.approx(
            _naive_place_label(x, y, **kwargs), abs=1e-12)
