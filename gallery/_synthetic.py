"""Synthetic segmentation outputs shared by the gallery scripts (no real data needed).

A "true" class-probability map ``q`` is made by smoothing random noise and applying a
softmax; the ground truth is sampled from ``q`` (so ``q`` is perfectly calibrated); the
model's prediction is ``q`` distorted by a power ``sharpen`` and renormalised:
``sharpen > 1`` makes the model over-confident, ``< 1`` under-confident, ``1`` calibrated.
"""

import os
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

CLASS_NAMES = ("background", "liver", "tumour")


def output_dir(script: str) -> Path:
    """Where a script saves its image: ``$CALIBVIZ_GALLERY_OUT`` if set (the tests use a
    temporary folder), else next to the script."""
    return Path(os.environ.get("CALIBVIZ_GALLERY_OUT", Path(script).resolve().parent))


def synthetic_case(rng, *, shape=(96, 96), sharpen=2.0, n_classes=3):
    """One image: probabilities float32 ``[C, H, W]`` and a label map int ``[H, W]``."""
    logits = np.stack([gaussian_filter(rng.normal(size=shape), 5) * 45
                       for _ in range(n_classes)])
    logits[0] += 2.0  # background is the most common class
    q = np.exp(logits - logits.max(axis=0))
    q /= q.sum(axis=0)
    labels = (rng.random(shape)[None] > np.cumsum(q, axis=0)).sum(axis=0)  # sample from q
    p = q**sharpen
    p /= p.sum(axis=0)
    return p.astype(np.float32), labels
