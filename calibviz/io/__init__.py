"""Reading real model outputs: discovering and pairing cases (:mod:`.discover`), one reader
per source format (:mod:`.readers`), class and region resolution (:mod:`.classes`), the checks
(:mod:`.checks`) and one case's evaluation (:mod:`.case`). The folder loop is
:mod:`calibviz.run`. Importing this package loads nibabel only when a file is read.
"""

from .case import evaluate_case
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
