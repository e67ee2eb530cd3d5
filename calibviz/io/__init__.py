"""Reading real model outputs: discovering and pairing cases, one reader per source format,
the checks, and streaming channels into the binning kernel.

``evaluate_folder(pred_dir, label_dir, **options)`` is the library entry point; the pieces
(:func:`discover_cases`, :func:`evaluate_case`) let a caller run cases in a process pool.
Importing this package loads nibabel only when a file is read.
"""

from .classes import PRESETS, parse_classes, parse_regions, read_dataset_json
from .discover import discover_cases
from .evaluate import evaluate_case, evaluate_folder
from .types import Case, CaseResult, EvalOptions, FolderResult, LabelSpec, Problem

__all__ = [
    "PRESETS",
    "Case",
    "CaseResult",
    "EvalOptions",
    "FolderResult",
    "LabelSpec",
    "Problem",
    "discover_cases",
    "evaluate_case",
    "evaluate_folder",
    "parse_classes",
    "parse_regions",
    "read_dataset_json",
]
