"""Time to draw figures: per-image (case) figure and dataset figure, PNG and PDF.

Run ``python benchmarks/bench_plot.py`` (< 1 minute). Prints seconds per figure for a
3-class case figure and a dataset figure of 3 classes + all-classes panel (200 images).
"""

import tempfile
import time
from pathlib import Path

import numpy as np

from calibviz import bin_image, reliability_histogram
from calibviz.viz import render_case_figure, render_dataset_figure


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


def timed(function, repeats: int) -> float:
    function()  # warm-up (imports, font cache)
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    stats = synthetic(200)
    start = time.perf_counter()
    histogram = reliability_histogram(stats)
    print(f"reliability histogram of {len(stats)} images: "
          f"{time.perf_counter() - start:.3f} s (computed once, drawn below)")
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        for fmt in ("png", "pdf"):
            case = timed(lambda fmt=fmt: render_case_figure(
                "case", stats[0], out / f"case.{fmt}"), 5)
            dataset = timed(lambda fmt=fmt: render_dataset_figure(
                stats, out / f"dataset.{fmt}"), 3)
            print(f"{fmt.upper()}: per-image figure {case:.3f} s, "
                  f"dataset figure (200 images) {dataset:.3f} s "
                  f"[{histogram.counts.shape[0]} classes + all-classes panel]")


if __name__ == "__main__":
    main()
