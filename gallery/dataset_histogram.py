"""Dataset reliability histogram of one class (the paper's figure, spec §7).

Run ``python gallery/dataset_histogram.py``; it writes ``dataset_histogram.png``.
"""

import numpy as np
from _synthetic import CLASS_NAMES, output_dir, synthetic_case

from calibviz import bin_image
from calibviz.plot import DatasetReliabilityHistogramDisplay, save_figure

rng = np.random.default_rng(1)
# 40 images of an over-confident model; each image is reduced to a few KB of bin sums.
stats = [bin_image(*synthetic_case(rng, sharpen=2.0), n_bins=20, class_names=CLASS_NAMES)
         for _ in range(40)]

# Each column counts where the images' frequencies fall in that confidence bin,
# normalised to sum to 1 (power norm, gamma 0.35); the blue curve is the pooled (micro)
# reliability curve, the numbers on top are images per column.
display = DatasetReliabilityHistogramDisplay.from_stats(stats, "tumour").plot()
save_figure(display.figure_, output_dir(__file__) / "dataset_histogram.png")
