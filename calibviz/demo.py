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

from .synthetic import (
    liver_phantom,
    sample_labels,
    sharpen,
    write_label,
    write_monai,
    write_nnunet_v2,
)

DEMO_CLASSES = {"background": 0, "liver": 1, "tumour": 2, "vessel": 3}
OVERCONFIDENT_TEMPERATURE = 0.5
#: Voxel grid of a demo case.
DEMO_SHAPE = (32, 32, 20)
#: Most cases ``calibviz demo`` writes (a typo such as 100000 would fill a disk).
MAX_DEMO_CASES = 1000


def demo_bytes(n_cases: int, shape=DEMO_SHAPE) -> int:
    """Upper bound of the bytes the demo data of ``n_cases`` cases take: two models' float32
    probability maps of every class (stored compressed, so usually less) per case."""
    return int(n_cases) * 2 * len(DEMO_CLASSES) * int(np.prod(shape)) * 4


def check_demo_cases(n_cases: int, shape=DEMO_SHAPE) -> int:
    """``n_cases`` when it is 1..:data:`MAX_DEMO_CASES`; else ``ValueError`` naming the cap
    and the size the request would write."""
    if not 1 <= n_cases <= MAX_DEMO_CASES:
        raise ValueError(
            f"--cases {n_cases}: the demo writes at least 1 and at most {MAX_DEMO_CASES} "
            f"cases (up to {demo_bytes(MAX_DEMO_CASES, shape) / 1e9:.1f} GB); {n_cases} "
            f"would write up to {demo_bytes(max(n_cases, 0), shape) / 1e9:.1f} GB of "
            "probability maps"
        )
    return n_cases


@dataclass(frozen=True)
class DemoData:
    """Paths of the demo dataset."""

    root: Path
    labels: Path
    nnunet: Path  # the over-confident model, nnU-Net v2 prediction folder
    monai: Path  # the calibrated model, MONAI SaveImage folder (one folder per case)


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
    root: str | Path, *, n_cases: int = 10, shape=DEMO_SHAPE, seed: int = 2025
) -> DemoData:
    """Write labels, the nnU-Net v2 folder and the MONAI folder under ``root``
    (``n_cases`` at most :data:`MAX_DEMO_CASES`)."""
    check_demo_cases(n_cases, shape)
    root = Path(root)
    _claim_folder(root)
    rng = np.random.default_rng(seed)
    affine = np.diag([1.5, 1.5, 3.0, 1.0])
    labels_dir, nnunet_dir, monai_dir = root / "labels", root / "nnunet_overconfident", \
        root / "monai_calibrated"
    nnunet_cases = {}
    for index in range(n_cases):
        case_id = f"liver_{index:03d}"
        q = liver_phantom(shape, rng)
        labels = sample_labels(q, rng)
        write_label(labels_dir / f"{case_id}.nii.gz", labels, affine)
        write_monai(monai_dir, case_id, q.astype(np.float32), affine, postfix="prob")
        nnunet_cases[case_id] = (sharpen(q, OVERCONFIDENT_TEMPERATURE).astype(np.float32), affine)
    write_nnunet_v2(nnunet_dir, nnunet_cases, DEMO_CLASSES)
    return DemoData(root=root, labels=labels_dir, nnunet=nnunet_dir, monai=monai_dir)
