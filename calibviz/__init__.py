"""calibviz: pixel-wise calibration of segmentation models.

Per-image marginal calibration errors (ECE, ACE, MCE), Brier, Dice and dataset reliability
histograms from one pass over each image. Importing calibviz loads NumPy only; the binning
kernels (Numba), readers (nibabel), reports (pandas) and figures (matplotlib) load when first
used (a process that only draws figures never loads Numba).
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

from .aggregate import (
    macro_summary,
    micro_metrics,
    per_image_metrics,
    pool,
    reliability_histogram,
    summarize,
)
from .metrics import METRICS, ace, brier, brier_decomposition, dice, ece, mce
from .results import Results
from .stats import BinStats, ReliabilityHistogram
from .store import load_results, save_results

try:
    __version__ = version("calibviz")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+local"

_LAZY = {
    "BinAccumulator": "calibviz.binning",
    "bin_edges": "calibviz.binning",
    "bin_image": "calibviz.binning",
    "evaluate_folder": "calibviz.run",
    "compare": "calibviz.comparison",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'calibviz' has no attribute {name!r}")


__all__ = [
    "METRICS",
    "BinAccumulator",
    "BinStats",
    "ReliabilityHistogram",
    "Results",
    "ace",
    "bin_edges",
    "bin_image",
    "brier",
    "brier_decomposition",
    "compare",
    "dice",
    "ece",
    "evaluate_folder",
    "load_results",
    "macro_summary",
    "mce",
    "micro_metrics",
    "per_image_metrics",
    "pool",
    "reliability_histogram",
    "save_results",
    "summarize",
]
