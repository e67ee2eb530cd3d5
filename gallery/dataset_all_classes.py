"""All classes of a dataset plus the all-classes panel, one shared colour scale.

Run ``python gallery/dataset_all_classes.py``; it writes ``dataset_all_classes.png``.
"""

import numpy as np
from _synthetic import CLASS_NAMES, output_dir, synthetic_case

from calibviz import bin_image, reliability_histogram
from calibviz.plot import plot_dataset, save_figure

rng = np.random.default_rng(2)
stats = [bin_image(*synthetic_case(rng, sharpen=1.6), n_bins=20, class_names=CLASS_NAMES)
         for _ in range(40)]

# The histogram is computed once from the per-image statistics; the figure helper adds a
# panel per class, the all-classes panel (sum of the class grids) and one colour bar.
histogram = reliability_histogram(stats)
figure, displays, colorbar = plot_dataset(histogram, title="synthetic dataset",
                                          preset="double")
save_figure(figure, output_dir(__file__) / "dataset_all_classes.png")
