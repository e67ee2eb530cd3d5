"""Dataset reliability histogram of one class (the paper's figure, spec §7).

Run ``python gallery/dataset_histogram.py``; it writes ``dataset_histogram.png``.
"""

import os
from pathlib import Path

import numpy as np

from calibviz import bin_image
from calibviz.synthetic import make_calibrated_case
from calibviz.viz import DatasetReliabilityHistogramDisplay, save_figure

CLASS_NAMES = ("background", "liver", "tumour")
# where the image goes: $CALIBVIZ_GALLERY_OUT if set (the tests use a temporary folder)
OUT = Path(os.environ.get("CALIBVIZ_GALLERY_OUT", Path(__file__).resolve().parent))

rng = np.random.default_rng(1)
# 40 images of an over-confident model; each image is reduced to a few KB of bin sums.
cases = [make_calibrated_case(sharpen=2.0, seed=rng) for _ in range(40)]
stats = [bin_image(probs, labels, n_bins=20, class_names=CLASS_NAMES) for labels, probs in cases]

# Each column counts where the images' frequencies fall in that confidence bin,
# normalised to sum to 1 (power norm, gamma 0.35); the blue curve is the pooled (micro)
# reliability curve, the numbers on top are images per column.
display = DatasetReliabilityHistogramDisplay.from_stats(stats, "tumour").plot()
save_figure(display.figure_, OUT / "dataset_histogram.png")
