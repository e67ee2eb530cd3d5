"""The bundled demo: a small synthetic dataset scored by two simulated models whose
calibration is known by construction, written in two real layouts.

Ground truth is *sampled* from a smooth reference probability field ``q`` (``label ~
Categorical(q)`` per voxel), so a model that predicts ``q`` is calibrated by construction.
Model "calibrated" predicts ``q`` (MONAI-style NIfTI folder); model "overconfident"
predicts ``softmax(log q / T)`` with ``T = 0.5`` (an nnU-Net v2 folder): sharper than the
truth, so its reliability curve sags below the diagonal at high confidence.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .synthetic import smooth, write_label, write_monai, write_nnunet_v2

DEMO_CLASSES = {"background": 0, "liver": 1, "tumour": 2, "vessel": 3}
OVERCONFIDENT_TEMPERATURE = 0.5


@dataclass(frozen=True)
class DemoData:
    """Paths of the demo dataset."""

    root: Path
    labels: Path
    nnunet: Path  # the over-confident model, nnU-Net v2 prediction folder
    monai: Path  # the calibrated model, MONAI SaveImage folder (one folder per case)


def reference_probabilities(shape, rng: np.random.Generator) -> np.ndarray:
    """float64 ``(4, *shape)`` smooth class probabilities: a liver blob holding a tumour and
    vessels, soft at the boundaries."""
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    centre = rng.uniform(-0.15, 0.15, size=3)[:, None, None, None]
    radius = np.sqrt((((grid - centre) / np.array([0.7, 0.6, 0.8])[:, None, None, None]) ** 2)
                     .sum(axis=0))
    tumour_centre = centre + rng.uniform(-0.25, 0.25, size=3)[:, None, None, None]
    tumour = np.sqrt((((grid - tumour_centre) / 0.3) ** 2).sum(axis=0))
    vessel = np.abs(grid[0] - centre[0, 0] + 0.3 * np.sin(3 * grid[2])) / 0.1
    liver = 15.0 * (1.0 - radius)
    logits = np.stack([
        np.zeros(shape),
        liver,
        liver + 18.0 * (1.0 - tumour) - 3.0,
        liver + 9.0 * (1.0 - vessel) - 1.0,
    ])
    logits += smooth(rng.normal(scale=1.2, size=logits.shape), passes=3)
    logits -= logits.max(axis=0, keepdims=True)
    q = np.exp(logits)
    return q / q.sum(axis=0, keepdims=True)


def sample_labels(q: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 label map with ``P(label = c) = q[c]`` independently per voxel."""
    cumulative = np.cumsum(q, axis=0)
    draw = rng.random(q.shape[1:])
    return np.minimum((draw[None] > cumulative).sum(axis=0), q.shape[0] - 1).astype(np.uint8)


def sharpen(q: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log q / T)``: over-confident for ``T < 1``."""
    logits = np.log(np.clip(q, 1e-12, None)) / temperature
    logits -= logits.max(axis=0, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=0, keepdims=True)


MARKER = ".calibviz-demo"
DEMO_PARTS = ("labels", "nnunet_overconfident", "monai_calibrated", "results", "results_monai")


def _claim_folder(root: Path) -> None:
    """Use ``root`` for the demo: new, empty, or an earlier demo (whose parts are replaced)."""
    if root.exists() and not root.is_dir():
        raise ValueError(f"{root} exists and is not a folder")
    if root.exists() and any(root.iterdir()) and not (root / MARKER).exists():
        raise ValueError(
            f"{root} is not empty and holds no earlier calibviz demo; choose a new folder"
        )
    for part in DEMO_PARTS:
        if (root / part).exists():
            shutil.rmtree(root / part)
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text("written by `calibviz demo`; safe to delete\n")


def write_demo_dataset(
    root: str | Path, *, n_cases: int = 10, shape=(32, 32, 20), seed: int = 2025
) -> DemoData:
    """Write labels, the nnU-Net v2 folder and the MONAI folder under ``root``."""
    root = Path(root)
    _claim_folder(root)
    rng = np.random.default_rng(seed)
    affine = np.diag([1.5, 1.5, 3.0, 1.0])
    labels_dir, nnunet_dir, monai_dir = root / "labels", root / "nnunet_overconfident", \
        root / "monai_calibrated"
    nnunet_cases = {}
    for index in range(n_cases):
        case_id = f"liver_{index:03d}"
        q = reference_probabilities(shape, rng)
        labels = sample_labels(q, rng)
        write_label(labels_dir / f"{case_id}.nii.gz", labels, affine)
        write_monai(monai_dir, case_id, q.astype(np.float32), affine, postfix="prob")
        nnunet_cases[case_id] = (sharpen(q, OVERCONFIDENT_TEMPERATURE).astype(np.float32), affine)
    write_nnunet_v2(nnunet_dir, nnunet_cases, DEMO_CLASSES)
    return DemoData(root=root, labels=labels_dir, nnunet=nnunet_dir, monai=monai_dir)
