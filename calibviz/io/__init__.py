"""Reading real model outputs: discovering and pairing cases (:mod:`.discover`), one reader
per source format (:mod:`.readers`), class and region resolution (:mod:`.classes`), the checks
(:mod:`.checks`) and one case's evaluation (:mod:`.case`). The folder loop is
:mod:`calibviz.run`. Importing this package loads nibabel only when a file is read, and the
binning kernels (Numba) only when ``evaluate_case`` is first used (reading a run's
``stats.npz`` needs neither).
"""

from importlib import import_module

from .classes import read_dataset_json
from .discover import discover_cases
from .types import Case, CaseResult, InputError, LabelSpec, Problem

__all__ = [
    "Case",
    "CaseResult",
    "InputError",
    "LabelSpec",
    "Problem",
    "discover_cases",
    "evaluate_case",
    "read_dataset_json",
]


def __getattr__(name):
    if name == "evaluate_case":
        return import_module(f"{__name__}.case").evaluate_case
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

