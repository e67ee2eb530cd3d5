"""Time to draw figures, each new way against the plain ``savefig`` way in the same run:

* case figures of a run (3 classes, 20 bins, 12 cases, one reused figure): PNG by blitting
  (``CaseFigure.save``: static parts drawn once, each case drawn over their pixels) vs
  ``savefig`` of the same drawn figure (a full draw per case);
* dataset figure (200 images, 3 classes + all-classes panel): ``save_figure`` (one layout
  pass, ``raster.draw_png``) vs ``savefig`` (a layout draw, then the draw);
* ``calibviz plot`` of that run in-process (``render_figures``: dataset + 12 case figures);
* PDF: per-image and dataset figure (vector, drawn by ``savefig``).

Run ``python benchmarks/bench_plot.py`` (about a minute). Times are CPU seconds of this
process (best of 3), so that other load on the machine counts less; the PNG files of both
ways are checked to hold the same pixels.
"""

import sys
import tempfile
import time
from pathlib import Path

import matplotlib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's calibviz

from calibviz import Results, bin_image, reliability_histogram  # noqa: E402
from calibviz.viz import get_preset, render_dataset_figure, render_figures  # noqa: E402
from calibviz.viz.casefigure import CaseFigure  # noqa: E402
from calibviz.viz.layouts import plot_dataset  # noqa: E402
from calibviz.viz.render import render_case_figure  # noqa: E402


def synthetic(n_images: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_images):
        probs = rng.dirichlet(np.ones(3) * 0.5, size=2000).T
        truth = probs**0.7 / (probs**0.7).sum(axis=0)
        labels = (rng.random(2000) > np.cumsum(truth, axis=0)).sum(axis=0)
        out.append(bin_image(probs, labels, n_bins=20,
                             class_names=("background", "liver", "tumour")))
    return out


def best(function, repeats: int = 3) -> float:
    """Best CPU seconds of ``function()`` over ``repeats`` runs, after one warm-up."""
    function()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        function()
        times.append(time.process_time() - start)
    return min(times)


def pixels(path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path))


def case_rows(stats, out: Path) -> float:
    preset = get_preset()
    figure = CaseFigure(stats[0])

    def blit():
        for i, s in enumerate(stats[:12]):
            figure.draw(f"case {i}", s)
            figure.save(out / f"blit_{i}.png")

    def full():
        for i, s in enumerate(stats[:12]):
            figure.draw(f"case {i}", s)
            with matplotlib.rc_context(preset.rc()):
                figure.figure.savefig(out / f"full_{i}.png", dpi=preset.dpi)

    new, old = best(blit) / 12, best(full) / 12
    same = all(np.array_equal(pixels(out / f"blit_{i}.png"), pixels(out / f"full_{i}.png"))
               for i in range(12))
    print(f"  case figure, PNG: blitting {new:.3f} s, savefig {old:.3f} s per figure: "
          f"{old / new:.2f}x faster; same pixels: {same}")
    return old


def dataset_rows(stats, out: Path) -> float:
    histogram = reliability_histogram(stats)
    preset = get_preset()

    def one_pass():
        render_dataset_figure(stats, out / "dataset_new.png")

    def two_pass():
        figure, _, _ = plot_dataset(histogram)
        with matplotlib.rc_context(preset.rc()):
            figure.savefig(out / "dataset_old.png", dpi=preset.dpi)

    new, old = best(one_pass), best(two_pass)
    same = np.array_equal(pixels(out / "dataset_new.png"), pixels(out / "dataset_old.png"))
    print(f"  dataset figure ({len(stats)} images), PNG: one layout pass {new:.3f} s, "
          f"savefig {old:.3f} s: {old / new:.2f}x faster; same pixels: {same}")
    return old


def plot_row(stats, out: Path, savefig_seconds: float) -> None:
    results = Results(cases=[f"case_{i:03d}" for i in range(len(stats))], stats=stats,
                      options={"n_bins": 20})
    template = best(lambda: CaseFigure(stats[0]))
    seconds = best(lambda: render_figures(results, out / "plot", workers=1), repeats=2)
    by_savefig = savefig_seconds + template
    print(f"  calibviz plot in-process (dataset + 12 case figures): {seconds:.2f} s; the same "
          f"figures by savefig {by_savefig:.2f} s: {by_savefig / seconds:.2f}x faster")


def pdf_rows(stats, out: Path) -> None:
    case = best(lambda: render_case_figure("case", stats[0], out / "case.pdf"))
    dataset = best(lambda: render_dataset_figure(stats, out / "dataset.pdf"))
    print(f"  PDF: per-image figure {case:.3f} s, dataset figure {dataset:.3f} s")


def main() -> None:
    stats = synthetic(200)
    print("== figures (CPU seconds of this process, best of 3) ==")
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        case_old = case_rows(stats, out)
        dataset_old = dataset_rows(stats, out)
        plot_row(stats, out, 12 * case_old + dataset_old)
        pdf_rows(stats, out)


if __name__ == "__main__":
    main()
