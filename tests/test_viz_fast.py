"""The fast figure paths draw what the plain ones draw: PNGs written from the canvas with
one layout pass, case figures blitted over their static pixels, bars without Axes.bar,
artists moved from case to case, and figures drawn in worker processes."""

import matplotlib
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from calibviz import BinStats
from calibviz.viz import get_preset, plot_dataset, render_figures, save_figure
from calibviz.viz.annotate import bars
from calibviz.viz.casefigure import CaseFigure
from calibviz.viz.render import render_case_figures, start_figures
from calibviz.viz.worker import CAN_FORK, FigureWorker

from .viz_data import make_results


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path))


def savefig(figure, path, dpi):
    with matplotlib.rc_context(get_preset().rc()):
        figure.savefig(path, dpi=dpi)
    return path


def scaled(stats: BinStats, c: int, factor: float, k=slice(None)) -> BinStats:
    """``stats`` with the sums of class ``c`` in bins ``k`` times ``factor`` (0: the class
    is absent; 1000 in one bin: its count axis goes log)."""
    fields = {}
    for name in ("count", "sum_p", "sum_y", "sum_p2", "sum_py"):
        value = np.array(getattr(stats, name), dtype=np.float64)
        value[c, k] *= factor
        fields[name] = value.astype(getattr(stats, name).dtype)
    return stats.replace(**fields)


@pytest.fixture(scope="module")
def results():
    return make_results(6)


def test_png_from_the_canvas_has_savefigs_pixels(results, tmp_path):
    for classes in (None, ["tumour"]):
        fast = save_figure(plot_dataset(results.stats, classes=classes)[0],
                           tmp_path / "fast.png", dpi=50)
        slow = savefig(plot_dataset(results.stats, classes=classes)[0], tmp_path / "slow.png",
                       dpi=50)
        assert np.array_equal(pixels(fast), pixels(slow))
    figure = Figure(figsize=(4, 3))  # no layout engine at all
    FigureCanvasAgg(figure)
    figure.subplots().plot([0, 1], [1, 0])
    fast = save_figure(figure, tmp_path / "plain.png", dpi=40)
    assert np.array_equal(pixels(fast), pixels(savefig(figure, tmp_path / "p.png", dpi=40)))
    assert Image.open(fast).info["Software"] == "calibviz"


def test_save_figure_keeps_the_users_savefig_settings(results, tmp_path):
    with matplotlib.rc_context({"savefig.bbox": "tight"}):
        tight = save_figure(plot_dataset(results.stats)[0], tmp_path / "tight.png", dpi=40)
    full = save_figure(plot_dataset(results.stats)[0], tmp_path / "full.png", dpi=40)
    assert Image.open(tight).size != Image.open(full).size  # savefig did the cropping


def test_blitted_case_figures_equal_full_draws(results, tmp_path):
    cases = [*results.stats, scaled(results.stats[2], 1, 0), scaled(results.stats[4], 0, 1000, 0),
             results.stats[0]]
    case_figure = CaseFigure(cases[0])
    scales = set()
    for i, stats in enumerate(cases):
        dpi = (40, 70)[i % 2]  # a kept background per resolution
        case_figure.draw(f"case {i}", stats)
        scales |= {d.hist_ax_.get_yscale() for d in case_figure.displays}
        fast = case_figure.save(tmp_path / f"fast{i}.png", dpi=dpi)
        slow = savefig(case_figure.figure, tmp_path / f"slow{i}.png", dpi)
        assert np.array_equal(pixels(fast), pixels(slow)), f"case {i} at {dpi} dpi"
    assert scales == {"log", "linear"}  # both kinds of count axis were drawn
    assert case_figure.figure.dpi == 100  # saving left the figure as it was


def test_bars_are_those_of_axes_bar():
    figure = Figure()
    FigureCanvasAgg(figure)
    ours, theirs = figure.subplots(1, 2)
    left, height = np.array([0.0, 0.2, 0.6]), np.array([5.0, 300.0, 2.0])
    mine = bars(ours, left, height, 0.2, bottom=1.0, label="x", facecolor="C1", alpha=0.5)
    ref = theirs.bar(left, height, 0.2, bottom=1.0, align="edge", label="x", color="C1",
                     alpha=0.5)
    for ax in (ours, theirs):
        ax.set_yscale("log")
    assert [p.get_bbox().bounds for p in mine] == [p.get_bbox().bounds for p in ref]
    assert [p.sticky_edges.y for p in mine] == [p.sticky_edges.y for p in ref]
    assert [p.get_facecolor() for p in mine] == [p.get_facecolor() for p in ref]
    assert np.array_equal(ours.dataLim.get_points(), theirs.dataLim.get_points())
    assert ours.get_ylim() == theirs.get_ylim() and mine.get_label() == ref.get_label()
    # moved to fewer, then more bars: nothing stale stays in the axes
    fewer = bars(ours, left[:2], height[:2], 0.2, reuse=mine, facecolor="C1", alpha=0.5)
    assert len(ours.patches) == 2 and ours.containers == [fewer]
    more = bars(ours, np.arange(5) / 5, np.ones(5), 0.2, reuse=fewer, facecolor="C1")
    assert len(ours.patches) == 5 and ours.containers == [more]
    assert list(more.patches[:2]) == list(fewer.patches)  # moved, not rebuilt


def test_a_reused_case_figure_holds_only_the_last_cases_artists(results):
    case_figure = CaseFigure(results.stats[0])
    for i, stats in enumerate([*results.stats, scaled(results.stats[3], 0, 0)]):
        displays = case_figure.draw(str(i), stats)
    for display in displays:
        ax, keep = display.ax_, int(display.nonempty.sum())
        assert len(ax.patches) == len(display.bars_) == keep
        assert ax.containers == [display.bars_]
        assert len(ax.texts) == 1 + (display.mce_arrow_ is not None)  # metrics, MCE label
        assert display.text_ in ax.texts
        assert len(display.hist_ax_.patches) == int((display.count > 0).sum())
    assert displays[0].mce_arrow_ is None and "n/a" in displays[0].text_.get_text()


def test_a_figure_worker_draws_what_this_process_draws(results, tmp_path):
    pairs = list(zip(results.cases, results.stats)) * 2  # 12: the forked copy takes 1
    jobs = [(c, s, tmp_path / "worker" / f"{i}.png") for i, (c, s) in enumerate(pairs)]
    here = render_case_figures([(c, s, tmp_path / "here" / p.name) for c, s, p in jobs],
                               dpi=40)
    dataset = (results.stats, tmp_path / "worker.png", {"dpi": 40})
    worker = FigureWorker()
    try:
        worker.prepare(results.stats[0], dpi=40)
        drawn = worker.draw(jobs, dataset if CAN_FORK else None, dpi=40)()
    finally:
        worker.close()
    assert drawn["cases"] == [p for _, _, p in jobs] and drawn["prepared"]
    assert all(np.array_equal(pixels(a), pixels(b)) for a, b in zip(here, drawn["cases"]))
    if CAN_FORK:
        summary = render_figures(results, tmp_path / "plain", kind="dataset", dpi=40)
        assert drawn["dataset"] == dataset[1]
        assert np.array_equal(pixels(dataset[1]), pixels(summary["dataset"]))
    worker._process.join(10)
    assert worker._process.exitcode == 0  # told to stop, it did


def test_what_a_figure_worker_does_not_draw_is_drawn_here(results, tmp_path):
    gone = FigureWorker()
    gone._process.terminate()
    gone._process.join()
    summary = start_figures(results, tmp_path / "a", dpi=30, max_cases=2, worker=gone)()
    assert summary["dataset"].exists() and len(summary["cases"]) == 2
    assert all(path.exists() for path in summary["cases"])
    gone.close()
    worker = FigureWorker()  # a figure the worker cannot draw fails here too, with its error
    try:
        finish = start_figures(results, tmp_path / "b", dpi=30, worker=worker,
                               marker_color="not a colour")
        with pytest.raises(ValueError, match="not a colour"):
            finish()
    finally:
        worker.close()
    assert (tmp_path / "b" / "dataset_reliability_histogram.png").exists()


def test_an_absent_class_has_the_same_count_axis_however_the_figure_was_used(results,
                                                                           tmp_path):
    absent = scaled(scaled(results.stats[2], 1, 0), 0, 1000, 0)  # and a log count axis
    reused = CaseFigure(results.stats[0])
    for i, stats in enumerate(results.stats):  # linear count axes before
        reused.draw(str(i), stats)
    reused.draw("absent", absent)
    fresh = CaseFigure(absent)
    fresh.draw("absent", absent)
    assert [d.hist_ax_.get_ylim() for d in reused.displays][1] == (1.0, 10.0)
    assert np.array_equal(pixels(reused.save(tmp_path / "reused.png", dpi=50)),
                          pixels(fresh.save(tmp_path / "fresh.png", dpi=50)))



def test_pinned_empty_axis_names_change_no_pixel(results, tmp_path):
    from calibviz.viz.figures import pin_empty_labels

    for build in (lambda: plot_dataset(results.stats)[0],
                  lambda: CaseFigure(results.stats[1]).figure):
        plain, pinned = build(), build()
        pin_empty_labels(pinned)
        assert any(not a.yaxis._autolabelpos for a in pinned.axes)
        assert np.array_equal(pixels(save_figure(plain, tmp_path / "plain.png", dpi=40)),
                              pixels(save_figure(pinned, tmp_path / "pinned.png", dpi=40)))


# --------------------------------------------------- the dataset figure laid out ahead
def _dataset_png(stats, path, **options):
    from calibviz.viz.render import render_dataset_figure

    return render_dataset_figure(stats, path, dpi=40, **options).read_bytes()


def test_a_dataset_layout_made_ahead_on_one_case_draws_the_same_figure(results, tmp_path):
    from calibviz.viz.layouts import dataset_layout

    n = len(results.stats)
    fresh = _dataset_png(results.stats, tmp_path / "fresh.png")
    ahead = dataset_layout(results.stats[:1], n, dpi=40)  # one case stands in for all
    assert _dataset_png(results.stats, tmp_path / "ahead.png", layout=ahead) == fresh
    # a layout for another number of digits gives another figure: the worker does not use it
    wider = dataset_layout(results.stats[:1], 100_000 * n, dpi=40)
    assert wider != ahead
    assert _dataset_png(results.stats, tmp_path / "wider.png", layout=wider) != fresh


@pytest.mark.parametrize("n_images", [6, 123_456])
def test_the_widest_layout_is_that_of_every_count_as_wide(results, n_images):
    """The widest layout measures the outermost two counts of each panel only: the same
    layout as every count written as wide, with empty axis names pinned or not."""
    from calibviz.viz.figures import pin_empty_labels
    from calibviz.viz.frozen import FrozenLayout
    from calibviz.viz.layouts import LAYOUT_COUNTS, style_count_axis, widest_layout

    preset = get_preset()
    n_pairs = n_images * results.stats[0].n_classes
    with matplotlib.rc_context(preset.rc()):
        figure, displays, _ = plot_dataset(results.stats, preset=preset)
        for display in displays:
            labels = [t.get_text() for t in display.count_labels_]
            widest = str(n_pairs if display.class_name == "all classes" else n_images)
            display.set_count_labels([widest if t else "" for t in labels])
            style_count_axis(display.hist_ax_, log=True)
            display.hist_ax_.set_ylim(*LAYOUT_COUNTS)
        figure.dpi = 40
        figure.get_layout_engine().execute(figure)
        every = FrozenLayout.of(figure)
    figure, displays, _ = plot_dataset(results.stats, preset=preset)
    pin_empty_labels(figure)
    assert widest_layout(figure, displays, n_images, dpi=40, preset=preset) == every
    assert sum(bool(t.get_text()) for d in displays for t in d.count_labels_) > 8  # restored


def test_a_layout_of_other_panels_is_not_used(results, tmp_path):
    from calibviz.viz.frozen import FrozenLayout
    from calibviz.viz.layouts import dataset_layout

    one_class = dataset_layout(results.stats[:1], len(results.stats), dpi=40, classes=[1])
    figure = plot_dataset(results.stats)[0]
    assert not one_class.fits(figure)
    with pytest.raises(ValueError, match="this layout is for"):
        one_class.apply(figure)
    fresh = _dataset_png(results.stats, tmp_path / "fresh.png")  # laid out itself instead
    assert _dataset_png(results.stats, tmp_path / "other.png", layout=one_class) == fresh
    assert FrozenLayout.of(figure).fits(figure)


def test_the_worker_uses_its_layout_only_for_labels_as_wide(results):
    from calibviz.viz.worker import _with_layout

    options = {"classes": None, "absent": "include"}
    stats = results.stats  # 6 cases, 3 classes: 1 digit of images, 2 of pairs (18)
    dataset = (stats, "d.png", dict(options))
    assert "layout" in _with_layout(dataset, 7, options, "L")[2]  # 7 and 21: as wide
    assert "layout" not in _with_layout(dataset, 3, options, "L")[2]  # 3 and 9: not
    assert "layout" not in _with_layout(dataset, 10, options, "L")[2]
    assert "layout" not in _with_layout(dataset, 6, {**options, "absent": "exclude"}, "L")[2]


class _FakeWorker:
    def __init__(self):
        self.sent = []

    def prepare(self, template, **options):
        self.sent.append(("prepare", template.n_bins))

    def lay_out(self, template, n_images, **options):
        self.sent.append(("layout", n_images, options["absent"]))


@pytest.mark.parametrize("seconds_per_case, laid_out", [(0.05, False), (1.0, True)])
def test_a_run_lays_its_dataset_figure_out_ahead_only_when_it_has_time(results,
                                                                     seconds_per_case,
                                                                     laid_out):
    from calibviz.runfigures import LAYOUT_AHEAD_SECONDS, RunFigures

    now = [0.0]
    run = RunFigures(False, None, 5, n_cases=20, absent="exclude", clock=lambda: now[0])
    run.worker = _FakeWorker()
    now[0] = 30.0  # a slow start (imports, kernels) does not count as the cases' pace
    for stats in list(results.stats) * 3:
        now[0] += seconds_per_case
        run.case_done(stats)
    sent = run.worker.sent
    assert sent[0] == ("prepare", 5)  # the first case, at the figures' bins
    assert (("layout", 20, "exclude") in sent) == laid_out
    assert len(sent) <= 2  # once each
    assert 20 * 0.05 < LAYOUT_AHEAD_SECONDS <= 16 * 1.0


def test_a_figure_worker_draws_the_dataset_figure_with_its_layout(results, tmp_path):
    from calibviz.viz.render import dataset_figure_options

    if not CAN_FORK:
        pytest.skip("the worker draws the dataset figure in a fork")
    options = dataset_figure_options(dpi=40)
    dataset = (results.stats, tmp_path / "worker.png", options)
    worker = FigureWorker()
    try:
        worker.lay_out(results.stats[0], len(results.stats), **options)
        drawn = worker.draw([], dataset)()
    finally:
        worker.close()
    assert drawn["dataset"] == dataset[1]
    assert dataset[1].read_bytes() == _dataset_png(results.stats, tmp_path / "here.png")
