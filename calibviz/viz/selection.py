"""Which classes and cases a figure shows, and the files case figures go to: plain
Python and NumPy (no Matplotlib), so that a run can hand its case figures to a worker
before this process loads Matplotlib.

``resolve_classes`` turns class names, indices or label values into indices;
``figure_classes`` picks the classes a run's figures show (all, or the worst by mean ACE
when there are too many for one figure);
``select_cases`` picks the cases to draw (all, the worst N by mean ACE, or given ids);
``safe_name`` and ``unique_file_names`` turn case ids into file names.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import numpy as np

from ..aggregate import absent_policy, macro_summary, mean_over_classes
from ..results import Results
from ..stats import BinStats

#: The most classes a figure shows unless the classes are named: one panel per class, and a
#: case figure of 117 classes (TotalSegmentator) is 18,000 pixels tall and takes a minute.
MAX_FIGURE_CLASSES = 16

_WORST = re.compile(r"^\s*worst\s+(\d+)(\s+by\s+ace)?\s*$", re.IGNORECASE)


def resolve_classes(stats: BinStats, classes: Sequence[int | str] | None, *,
                    class_labels: Mapping[str, Sequence[int] | int] | None = None) -> list[int]:
    """Class indices of ``classes`` (``None``: all).

    Python integers are 0-based indices; strings are class names, else (with
    ``class_labels``, the run's ``{name: [label values]}``) the label value of a
    single-value class. ``ValueError`` listing the class names (and label values when
    known) for anything else.

    >>> stats = BinStats.zeros(2, [0.0, 0.5, 1.0], class_names=("liver", "tumour"))
    >>> resolve_classes(stats, ["tumour", 0]), resolve_classes(stats, ["1"],
    ...                                                        class_labels={"liver": [1]})
    ([1, 0], [0])
    """
    if classes is None:
        return list(range(stats.n_classes))
    by_value = _label_values(stats, class_labels)
    out = []
    for value in classes:
        if isinstance(value, str) and value not in stats.class_names:
            text = value.strip()
            value = text if text in stats.class_names else by_value.get(text)
            if value is None:
                raise ValueError(_unknown_class(text, stats, class_labels))
        out.append(stats.class_index(value))
    if not out:
        raise ValueError("no classes selected")
    return out


def figure_classes(results: Results, classes: Sequence[int | str] | None = None, *,
                   absent: str | None = None,
                   limit: int = MAX_FIGURE_CLASSES) -> tuple[list[int] | None, str]:
    """The class indices a run's figures show and a phrase saying how they were chosen.

    ``classes`` given: those (:func:`resolve_classes`), phrase ``""``. Otherwise all
    (``None``, ``""``) when there are at most ``limit``, else the ``limit`` classes with the
    highest ACE averaged over the images (NaN last; ties in class order), in class order.
    """
    first = results.stats[0]
    if classes is not None:
        return resolve_classes(first, classes), ""
    if first.n_classes <= limit:
        return None, ""
    means = macro_summary(results.stats, absent=absent_policy(results, absent))["ace"]["mean"]
    return sorted(_highest(means[:-1], limit)), (f"{limit} of {first.n_classes} classes "
                                                 "(those with the highest mean ACE)")


def _label_values(stats: BinStats, class_labels) -> dict[str, str]:
    """``{label value as text: class name}`` of the classes that have one label value."""
    out = {}
    for name, values in (class_labels or {}).items():
        values = list(values) if isinstance(values, list | tuple) else [values]
        if len(values) == 1 and name in stats.class_names:
            out.setdefault(str(values[0]), name)
    return out


def _unknown_class(value, stats: BinStats, class_labels) -> str:
    known = ", ".join(stats.class_names)
    if class_labels:
        labelled = ", ".join(f"{name}={v}" for v, name in
                             _label_values(stats, class_labels).items())
        return f"unknown class {value!r}; known: {known} (label values: {labelled})"
    if str(value).strip().lstrip("-").isdigit():
        return (f"unknown class {value!r}: not a class name, and these results record no "
                f"label values; known: {known}")
    return f"unknown class {value!r}; known: {known}"


def safe_name(case_id: str) -> str:
    """A file name for a case id: characters other than letters, digits, ``.-_`` become ``_``."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", str(case_id)).strip("._") or "case"
    return name


def unique_file_names(case_ids: Sequence[str]) -> list[str]:
    """:func:`safe_name` of each case id, made unique (also ignoring case, for file systems
    that do): a later id whose name is taken gets ``-2``, ``-3``, … in the order given.

    >>> unique_file_names(["case 004", "case_004", "Case_004"])
    ['case_004', 'case_004-2', 'Case_004-3']
    """
    taken: set[str] = set()
    names = []
    for case_id in case_ids:
        base = name = safe_name(case_id)
        suffix = 1
        while name.lower() in taken:
            suffix += 1
            name = f"{base}-{suffix}"
        taken.add(name.lower())
        names.append(name)
    return names


def select_cases(results: Results, cases=None, *, max_cases: int = 12,
                 absent: str | None = None) -> tuple[list[int], str]:
    """Indices of the cases to draw and a phrase saying how they were chosen.

    ``cases``: ``None`` (all, or the worst ``max_cases`` by mean ACE when there are more),
    ``"worst N"`` (also ``"worst N by ACE"``), or a list of case ids (a comma-separated
    string works too). Unknown ids raise ``ValueError`` naming them.  ``absent=None``: the
    run's own absent policy (``results.options["absent"]``), else ``"include"``.
    """
    n = len(results)
    absent = absent_policy(results, absent)
    if isinstance(cases, str):
        match = _WORST.match(cases)
        if match:
            return _worst(results, int(match.group(1)), absent), f"worst {match.group(1)} by ACE"
        cases = [c.strip() for c in cases.split(",") if c.strip()]
        if not cases:
            raise ValueError("--cases is empty; give case ids or 'worst N'")
    if cases is None:
        if max_cases < 0:
            raise ValueError(f"max_cases must be >= 0, got {max_cases}")
        if n <= max_cases:
            return list(range(n)), "all cases"
        return _worst(results, max_cases, absent), f"worst {max_cases} by ACE"
    cases = [str(c) for c in cases]
    position = {case: i for i, case in enumerate(results.cases)}
    unknown = [c for c in cases if c not in position]
    if unknown:
        shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise ValueError(f"unknown case id(s): {shown} ({n} cases in these results)")
    return list(dict.fromkeys(position[c] for c in cases)), "selected cases"


def _worst(results: Results, count: int, absent: str) -> list[int]:
    """Indices of the ``count`` cases with the highest mean ACE (NaN last, stable order)."""
    return _highest(mean_over_classes(results.stats, "ace", absent=absent), count)


def _highest(scores: np.ndarray, count: int) -> list[int]:
    """Indices of the ``count`` highest ``scores`` (NaN last, ties in index order)."""
    order = sorted(range(len(scores)),
                   key=lambda i: (math.isnan(scores[i]), -np.nan_to_num(scores[i])))
    return order[:count]
