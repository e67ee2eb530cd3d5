"""Shared fixtures: the published reference values (copied into ``tests/data`` so a clone of
the project alone runs every test), small synthetic images and a demo dataset."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from calibviz import bin_image

DATA = Path(__file__).resolve().parent / "data"
#: Published reference vectors of the paper's code (from ``shared/reference``).
REFERENCE_VECTORS = DATA / "reference_vectors.json"


@cache
def load_reference() -> dict:
    """The published reference vectors (binning, metrics, dataset histogram cases)."""
    return json.loads(REFERENCE_VECTORS.read_text())


def random_images(n_images=6, n_classes=3, seed=20, shape=(12, 10, 4), n_bins=10):
    """Per-image :class:`BinStats` of random Dirichlet maps; every third image lacks the
    last class in its labels."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(n_images):
        probs = rng.dirichlet(np.ones(n_classes) * 0.4, size=shape).transpose(3, 0, 1, 2)
        labels = rng.integers(0, n_classes - (1 if i % 3 == 0 else 0), size=shape)
        images.append(bin_image(probs.astype(np.float32), labels, n_bins=n_bins))
    return images


def softmax_batch(seed, batch=3, n_classes=3, spatial=(9, 8, 5), dtype=np.float32):
    """``(probs (B, C, *spatial), labels (B, *spatial))``: random softmax maps and labels."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(batch, n_classes, *spatial)) * 2.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = rng.integers(0, n_classes, size=(batch, *spatial))
    return probs.astype(dtype), labels


@pytest.fixture
def images():
    """Six small per-image BinStats with three classes and 10 bins."""
    return random_images()


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    """The demo dataset (labels, nnU-Net v2 and MONAI folders), written once per session."""
    from calibviz.demo import write_demo_dataset

    return write_demo_dataset(tmp_path_factory.mktemp("demo") / "d", n_cases=5,
                              shape=(16, 14, 10))


def count_host_transfers(monkeypatch) -> list[str]:
    """A list that records every device-to-host transfer of a torch tensor from now on
    (``tolist``, ``item`` and the conversions to bool, float, int)."""
    import torch

    calls: list[str] = []
    for name in ("tolist", "item", "__bool__", "__float__", "__int__"):
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    return calls
