"""Per-image reliability diagrams: every class of one image in one figure.

Run ``python gallery/reliability_diagram.py``; it writes ``reliability_diagram.png``.
"""

import numpy as np
from _synthetic import CLASS_NAMES, output_dir, synthetic_case

from calibviz import bin_image
from calibviz.plot import plot_case, save_figure

rng = np.random.default_rng(0)
# An over-confident model (sharpen > 1) on one synthetic image.
probs, labels = synthetic_case(rng, sharpen=2.0)
# One pass over the voxels: per-class, per-bin sufficient statistics (20 bins).
stats = bin_image(probs, labels, n_bins=20, class_names=CLASS_NAMES)

# One panel per class: gap bars, frequency markers, ECE/ACE/MCE, an arrow to the MCE bin,
# and the voxel counts per bin underneath (log axis when they span > 100x).
figure, displays = plot_case(stats, title="synthetic case 000 (over-confident model)")
save_figure(figure, output_dir(__file__) / "reliability_diagram.png")
