"""Per-image reliability diagrams: every class of one image in one figure.

Run ``python gallery/reliability_diagram.py``; it writes ``reliability_diagram.png``.
"""

import os
from pathlib import Path

import numpy as np

from calibviz import bin_image
from calibviz.synthetic import make_calibrated_case
from calibviz.viz import plot_case, save_figure

CLASS_NAMES = ("background", "liver", "tumour")
# where the image goes: $CALIBVIZ_GALLERY_OUT if set (the tests use a temporary folder)
OUT = Path(os.environ.get("CALIBVIZ_GALLERY_OUT", Path(__file__).resolve().parent))

# An over-confident model (sharpen > 1) on one synthetic image.
labels, probs = make_calibrated_case(sharpen=2.0, seed=np.random.default_rng(0))
# One pass over the voxels: per-class, per-bin sufficient statistics (20 bins).
stats = bin_image(probs, labels, n_bins=20, class_names=CLASS_NAMES)

# One panel per class: gap bars, frequency markers, ECE/ACE/MCE, an arrow to the MCE bin,
# and the voxel counts per bin underneath (log axis when they span > 100x).
figure, displays = plot_case(stats, title="synthetic case 000 (over-confident model)")
save_figure(figure, OUT / "reliability_diagram.png")
