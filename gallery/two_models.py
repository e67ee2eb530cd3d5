"""Two models side by side: the same images, an over-confident and a calibrated model.

Shows how the display objects compose: draw each into your own axes, then add one colour
bar for both. Run ``python gallery/two_models.py``; it writes ``two_models.png``.
"""

import os
from pathlib import Path

import matplotlib
import numpy as np

from calibviz import bin_image
from calibviz.synthetic import make_calibrated_case
from calibviz.viz import (
    DatasetReliabilityHistogramDisplay,
    get_preset,
    make_norm,
    new_figure,
    save_figure,
)

CLASS_NAMES = ("background", "liver", "tumour")
# where the image goes: $CALIBVIZ_GALLERY_OUT if set (the tests use a temporary folder)
OUT = Path(os.environ.get("CALIBVIZ_GALLERY_OUT", Path(__file__).resolve().parent))

models = {"model A (over-confident)": 2.5, "model B (calibrated)": 1.0}
stats = {name: [] for name in models}
rng = np.random.default_rng(3)
for _ in range(40):
    for name, sharpen in models.items():  # same seed per image: same ground truth
        seed = int(rng.integers(1 << 31))
        labels, probs = make_calibrated_case(sharpen=sharpen, seed=seed)
        stats[name].append(bin_image(probs, labels, n_bins=20, class_names=CLASS_NAMES))

preset = get_preset("double")
norm = make_norm("power", gamma=0.35)  # one norm object: one colour scale for both panels
with matplotlib.rc_context(preset.rc()):  # fonts of the preset, global state untouched
    figure = new_figure(preset.width, 3.9)
    axes = figure.subplots(2, 2, height_ratios=[4, 1], sharex="col")
    for column, name in enumerate(models):
        display = DatasetReliabilityHistogramDisplay.from_stats(stats[name], "liver").plot(
            axes[0, column], hist_ax=axes[1, column], norm=norm, colorbar=False,
            log_counts=True, title=f"{name}, liver")  # one count-axis rule per figure
    colorbar = figure.colorbar(display.mesh_, ax=axes, shrink=0.7)
    colorbar.set_label("fraction of the column's images")
save_figure(figure, OUT / "two_models.png", preset=preset)
