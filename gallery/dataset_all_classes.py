"""All classes of a dataset plus the all-classes panel, one shared colour scale.

Run ``python gallery/dataset_all_classes.py``; it writes ``dataset_all_classes.png``.
"""

import os
from pathlib import Path

import numpy as np

from calibviz import bin_image, reliability_histogram
from calibviz.synthetic import make_calibrated_case
from calibviz.viz import plot_dataset, save_figure

CLASS_NAMES = ("background", "liver", "tumour")
# where the image goes: $CALIBVIZ_GALLERY_OUT if set (the tests use a temporary folder)
OUT = Path(os.environ.get("CALIBVIZ_GALLERY_OUT", Path(__file__).resolve().parent))

rng = np.random.default_rng(2)
cases = [make_calibrated_case(sharpen=1.6, seed=rng) for _ in range(40)]
stats = [bin_image(probs, labels, n_bins=20, class_names=CLASS_NAMES) for labels, probs in cases]

# The histogram is computed once from the per-image statistics; the figure helper adds a
# panel per class, the all-classes panel (sum of the class grids) and one colour bar.
histogram = reliability_histogram(stats)
figure, displays, colorbar = plot_dataset(histogram, title="synthetic dataset",
                                          preset="double")
save_figure(figure, OUT / "dataset_all_classes.png")
