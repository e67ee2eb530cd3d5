"""The same image binned hard (each voxel in one bin) and soft (each voxel's weight split
between the two nearest bin centres, the paper's differentiable variant, spec §6).

Run ``python gallery/soft_vs_hard.py``; it writes ``soft_vs_hard.png``.
"""

import os
from pathlib import Path

import matplotlib
import numpy as np

from calibviz import bin_image
from calibviz.synthetic import make_calibrated_case
from calibviz.viz import ReliabilityDiagramDisplay, get_preset, new_figure, save_figure

CLASS_NAMES = ("background", "liver", "tumour")
# where the image goes: $CALIBVIZ_GALLERY_OUT if set (the tests use a temporary folder)
OUT = Path(os.environ.get("CALIBVIZ_GALLERY_OUT", Path(__file__).resolve().parent))

labels, probs = make_calibrated_case((64, 64), sharpen=2.0, seed=np.random.default_rng(4))
binned = {binning: bin_image(probs, labels, n_bins=10, binning=binning,
                             class_names=CLASS_NAMES)
          for binning in ("hard", "soft")}

preset = get_preset("double", width=6.0)
with matplotlib.rc_context(preset.rc()):
    figure = new_figure(preset.width, 4.0)
    axes = figure.subplots(2, 2, height_ratios=[4, 1], sharex="col")
    for column, (binning, stats) in enumerate(binned.items()):
        ReliabilityDiagramDisplay.from_stats(stats, "tumour").plot(
            axes[0, column], hist_ax=axes[1, column], title=f"tumour, {binning} binning")
    axes[1, 1].set_ylabel("soft weight")
save_figure(figure, OUT / "soft_vs_hard.png", preset=preset)
