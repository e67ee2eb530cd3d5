"""Checks that the arrays of a statistics archive (``stats.npz``, ``stats_fine.npz``, a
partial-store case file) describe statistics that can exist, before anything is computed
from them. Each check raises :class:`DamagedArchive` naming the file and the field. NumPy
only.

What can exist (spec §2): per image, class and bin a voxel count ``n`` (an integer; a
non-negative float soft weight ``W`` with soft binning) and float64 sums of ``p``, ``y``,
``p²`` and ``p·y`` with ``0 <= p, y <= 1``, hence ``0 <= Σp² <= Σp <= n`` and
``0 <= Σp·y <= min(Σp, Σy)``, ``Σy <= n``; integer confusion counts; edges ``k/B``;
unique case ids and class names; confusion counts that cover the voxels and the truth the
bins hold.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .options import (
    ABSENT_POLICIES,
    BINNINGS,
    CLOSURES,
    CSV_STYLES,
    DICE_RULES,
    MAX_RESAMPLES,
    MAX_SEED,
)
from .stats import SUM_FIELDS

#: Sums may exceed their bound by float64 rounding only (they are computed in the same order,
#: so in practice never; this leaves room for other summation orders).
RELATIVE_SLACK = 1e-9
ABSOLUTE_SLACK = 1e-9
#: Edges may differ from ``k/B`` by a float16 rounding (earlier versions stored them so).
EDGE_SLACK = 2.0 ** -11
#: ``(smaller, larger)`` pairs of binned fields: ``smaller <= larger`` in every bin.
BOUNDS = (("sum_p", "count"), ("sum_y", "count"), ("sum_p2", "sum_p"), ("sum_py", "sum_p"),
          ("sum_py", "sum_y"))
BINNED = ("count", "sum_p", "sum_y", "sum_p2", "sum_py")
COUNTS = ("tp", "fp", "fn", "tn", "n_clipped")
#: Option values downstream code reads, with what each must be (when present and not null).
_TEXT_OPTIONS = ("name", "pred_dir", "label_dir", "dice_rule", "format")
_INT_OPTIONS = {"n_bins": (1, None), "fine_bins": (1, None), "bootstrap": (0, MAX_RESAMPLES),
                "seed": (0, MAX_SEED), "workers": (0, None)}
#: Option values that are one of a few words.
_CHOICE_OPTIONS = {"absent": ABSENT_POLICIES, "closure": CLOSURES, "binning": BINNINGS,
                   "dice": DICE_RULES, "dice_rule": ("argmax", "threshold"),
                   "csv_style": CSV_STYLES}
_TABLE_OPTIONS = ("class_labels", "prediction_files", "label_files")


class DamagedArchive(ValueError):
    """A statistics archive whose content cannot be right (one line: file, field, what)."""

    def __init__(self, path: Path, what: str) -> None:
        super().__init__(f"{path} is damaged: {what}")


def _describe(values: np.ndarray, limit: int = 3) -> str:
    shown = ", ".join(repr(v) for v in np.asarray(values).ravel()[:limit].tolist())
    return shown + (", …" if np.asarray(values).size > limit else "")


def text_list(arrays: dict, key: str, path: Path, *, unique: bool) -> tuple[str, ...]:
    """Field ``key`` as a tuple of strings: a 1-D array of text; if ``unique`` (ids and
    names), none blank and no repeats."""
    value = np.asarray(arrays[key])
    if value.ndim != 1 or (value.size and value.dtype.kind not in "US"):
        raise DamagedArchive(path, f"{key} is not a list of names (dtype {value.dtype}, "
                                   f"shape {value.shape})")
    items = tuple(str(v) for v in value.tolist())
    if unique and not all(item.strip() for item in items):  # ids and names: never blank
        raise DamagedArchive(path, f"{key} holds an empty name (entry "
                                   f"{[item.strip() for item in items].index('') + 1})")
    if unique:
        seen: set[str] = set()
        repeated = [v for v in items if v in seen or seen.add(v)]
        if repeated:
            raise DamagedArchive(path, f"{key} lists {_describe(np.array(repeated))} more than "
                                       "once")
    return items


def text_scalar(arrays: dict, key: str, path: Path, allowed=None) -> str:
    """Field ``key`` as one string (one of ``allowed`` when given)."""
    value = np.asarray(arrays[key])
    if value.ndim != 0 or value.dtype.kind not in "US":
        raise DamagedArchive(path, f"{key} is not a text value (dtype {value.dtype}, shape "
                                   f"{value.shape})")
    text = str(value)
    if allowed is not None and text not in allowed:
        raise DamagedArchive(path, f"{key} is {text!r}; expected one of "
                                   f"{', '.join(map(repr, allowed))}")
    return text


def integer_scalar(arrays: dict, key: str, path: Path) -> int:
    value = np.asarray(arrays[key])
    if value.ndim != 0 or value.dtype.kind not in "iu":
        raise DamagedArchive(path, f"{key} is not an integer (found {_describe(value)}, dtype "
                                   f"{value.dtype})")
    return int(value)


def json_field(arrays: dict, key: str, path: Path, kind: type):
    """Field ``key`` parsed from JSON, which must be a ``kind`` (dict or list)."""
    text = text_scalar(arrays, key, path)
    try:
        value = json.loads(text)
    except ValueError as error:
        raise DamagedArchive(path, f"{key} is not valid JSON ({error})") from None
    except RecursionError:
        raise DamagedArchive(path, f"{key} is nested too deeply to be calibviz's") from None
    if not isinstance(value, kind):
        expected = "a JSON object" if kind is dict else "a JSON list"
        raise DamagedArchive(path, f"{key} is not {expected} (found "
                                   f"{type(value).__name__})")
    return value


def check_problems(records: list, path: Path) -> list[dict]:
    """``problems_json`` records: objects with text fields case, file, message, severity."""
    from .io.types import SEVERITIES

    for number, record in enumerate(records, 1):
        where = f"problems_json entry {number}"
        if not isinstance(record, dict):
            raise DamagedArchive(path, f"{where} is not an object")
        unknown = set(record) - {"case", "file", "message", "severity"}
        missing = {"case", "file", "message"} - set(record)
        if unknown or missing:
            raise DamagedArchive(path, f"{where} has fields {', '.join(sorted(record))}; "
                                       "expected case, file, message and severity")
        if not all(isinstance(v, str) for v in record.values()):
            raise DamagedArchive(path, f"{where} holds a value that is not text")
        if record.get("severity", "error") not in SEVERITIES:
            raise DamagedArchive(path, f"{where} has severity {record['severity']!r}; "
                                       f"expected one of {', '.join(SEVERITIES)}")
    return records


def check_options(options: dict, path: Path) -> None:
    """The option values other code reads have the type they were written with."""
    def bad(key: str, expected: str) -> DamagedArchive:
        return DamagedArchive(path, f"options_json: {key} is {options[key]!r}; expected "
                                    f"{expected}")

    present = {k: v for k, v in options.items() if v is not None}
    for key, allowed in _CHOICE_OPTIONS.items():
        if key in present and present[key] not in allowed:
            raise bad(key, "one of " + ", ".join(allowed))
    for key, (least, most) in _INT_OPTIONS.items():
        value = present.get(key)
        if key in present and (isinstance(value, bool) or not isinstance(value, int)
                               or value < least or (most is not None and value > most)):
            raise bad(key, f"an integer from {least}" + (f" to {most}" if most else " up"))
    for key in ("empty_weight", "scale"):
        value = present.get(key)
        if key in present and (isinstance(value, bool) or not isinstance(value, int | float)
                               or not math.isfinite(value) or value < 0):
            raise bad(key, "a finite number >= 0")
    if isinstance(present.get("roi"), str):
        from .roi import parse_roi

        try:
            parse_roi(present["roi"])
        except ValueError as error:
            raise bad("roi", f"a region of interest ({error})") from None
    for key in _TEXT_OPTIONS:
        if key in present and not isinstance(present[key], str):
            raise bad(key, "text")
    if "roi" in present and not isinstance(present["roi"], (str, bool)):
        raise bad("roi", "text")
    for key in _TABLE_OPTIONS:
        if key in present and not isinstance(present[key], dict):
            raise bad(key, "a table")
    for key, value in (present.get("class_labels") or {}).items():
        if not isinstance(value, list):
            raise DamagedArchive(path, f"options_json: class_labels of {key!r} is {value!r}; "
                                       "expected a list of label values")


def _bin_count(arrays: dict, path: Path) -> int:
    """The number of bins most fields agree on (edges count one more); a field that
    disagrees with it is the damaged one."""
    found = {f"stats_{n}": np.shape(arrays[f"stats_{n}"])[-1:] for n in BINNED}
    found = {key: shape[0] for key, shape in found.items() if shape}
    edges = np.shape(arrays["stats_edges"])
    if len(edges) == 1:
        found["stats_edges"] = edges[0] - 1
    values = list(found.values())
    n_bins = max(values, key=values.count) if values else 0
    if n_bins < 1:
        raise DamagedArchive(path, "the statistics hold no bin")
    odd = [key for key, value in found.items() if value != n_bins]
    if odd or len(edges) != 1:
        key = odd[0] if odd else "stats_edges"
        expected = f"{n_bins + 1} edges" if key == "stats_edges" else f"{n_bins} bins"
        raise DamagedArchive(path, f"{key} has shape {np.shape(arrays[key])}; the other "
                                   f"fields hold {n_bins} bins, so {expected} were expected")
    return n_bins


def check_statistics(arrays: dict, path: Path, cases: tuple[str, ...]) -> None:
    """The ``stats_*`` fields of the images ``cases``: shapes, types and the bounds every
    real statistic obeys (see the module text)."""
    names = text_list(arrays, "stats_class_names", path, unique=True)
    n_cases = len(cases)
    rows = [np.shape(arrays[f"stats_{n}"])[1] for n in SUM_FIELDS
            if f"stats_{n}" in arrays and np.ndim(arrays[f"stats_{n}"]) >= 2]
    if rows and len(names) not in rows and len(set(rows)) == 1:
        raise DamagedArchive(path, f"stats_class_names lists {len(names)} classes; the "
                                   f"statistics hold {rows[0]}")
    text_scalar(arrays, "stats_closure", path, CLOSURES)
    binning = text_scalar(arrays, "stats_binning", path, BINNINGS)
    weight = np.asarray(arrays["stats_empty_weight"])
    if weight.ndim != 0 or weight.dtype.kind not in "iuf" or not np.isfinite(weight) or \
            weight < 0:
        raise DamagedArchive(path, f"stats_empty_weight is {_describe(weight)}; expected a "
                                   "non-negative number")
    images = np.asarray(arrays["stats_n_images"])
    if images.shape != (n_cases,) or images.dtype.kind not in "iu" or \
            (images.size and images.min() < 1):
        raise DamagedArchive(path, f"stats_n_images must be {n_cases} integers >= 1 (one per "
                                   f"case); found {_describe(images)} (dtype {images.dtype}, "
                                   f"shape {images.shape})")
    count = np.asarray(arrays["stats_count"])
    if count.ndim != 3 or count.shape[:2] != (n_cases, len(names)) or count.shape[2] < 1:
        raise DamagedArchive(path, f"stats_count has shape {count.shape}; expected ({n_cases}"
                                   f" cases, {len(names)} classes, bins)")
    n_bins = _bin_count(arrays, path)
    edges = np.asarray(arrays["stats_edges"])
    if edges.dtype.kind not in "iuf":
        raise DamagedArchive(path, f"stats_edges holds {edges.dtype} values, not numbers")
    if not np.isfinite(edges).all() or not (np.diff(edges) > 0).all():
        raise DamagedArchive(path, "stats_edges are not strictly increasing")
    # k/B, as written now, or rounded to the input's precision (float16 at worst), as
    # archives of earlier versions hold them; the statistics always use k/B
    if not np.allclose(edges, np.arange(n_bins + 1) / n_bins, rtol=0, atol=EDGE_SLACK):
        raise DamagedArchive(path, "stats_edges are not the equal-width edges k/B")
    values = {}
    for name in SUM_FIELDS:
        key = f"stats_{name}"
        if key not in arrays:  # only n_clipped may be missing (older archives)
            continue
        value = np.asarray(arrays[key])
        shape = (n_cases, len(names), n_bins) if name in BINNED else (n_cases, len(names))
        if value.shape != shape:
            raise DamagedArchive(path, f"{key} has shape {value.shape}; expected {shape}")
        if value.dtype.kind not in "iuf":
            raise DamagedArchive(path, f"{key} holds {value.dtype} values, not numbers")
        if not np.isfinite(value).all():
            raise DamagedArchive(path, f"{key} holds NaN or infinite values")
        if value.size and value.min() < 0:
            raise DamagedArchive(path, f"{key} holds negative values (e.g. "
                                       f"{value.min().item():.6g})")
        integral = name in COUNTS or (name == "count" and binning == "hard")
        if integral and not (np.mod(value, 1) == 0).all():
            raise DamagedArchive(path, f"{key} holds non-integer counts (e.g. "
                                       f"{_describe(value[np.mod(value, 1) != 0], 1)})")
        values[name] = value.astype(np.float64)
    for smaller, larger in BOUNDS:
        excess = values[smaller] - values[larger] * (1 + RELATIVE_SLACK) - ABSOLUTE_SLACK
        if (excess > 0).any():
            case, row, k = np.unravel_index(int(np.argmax(excess)), excess.shape)
            raise DamagedArchive(
                path, f"stats_{smaller} exceeds stats_{larger} (case {cases[case]!r}, class "
                      f"{names[row]!r}, bin {k + 1}: {values[smaller][case, row, k]:.6g} > "
                      f"{values[larger][case, row, k]:.6g}), which no probabilities in "
                      "[0, 1] can give")
    _check_confusion(values, path, cases, names, exact=binning == "hard")


def _check_confusion(values: dict, path: Path, cases, names, *, exact: bool) -> None:
    """Per image and class the confusion counts cover the voxels the bins hold (``tp + fp
    + fn + tn = Σ count``) and the truth they hold (``tp + fn = Σ y``): both are counted in
    the same pass over the same voxels (soft binning: weights summing to 1 per voxel)."""
    confusion = values["tp"] + values["fp"] + values["fn"] + values["tn"]
    for total, expected, what in (
            (confusion, values["count"].sum(axis=-1), "tp + fp + fn + tn", ),
            (values["tp"] + values["fn"], values["sum_y"].sum(axis=-1), "tp + fn")):
        reference = "stats_count" if what.startswith("tp + fp") else "stats_sum_y"
        slack = 0.0 if exact and reference == "stats_count" else (
            RELATIVE_SLACK * np.abs(expected) + ABSOLUTE_SLACK)
        off = np.abs(total - expected) - slack
        if (off > 0).any():
            case, row = np.unravel_index(int(np.argmax(off)), off.shape)
            raise DamagedArchive(
                path, f"the confusion counts disagree with the bins (case {cases[case]!r}, "
                      f"class {names[row]!r}: {what} = {total[case, row]:.15g}, but "
                      f"{reference} summed over the bins is {expected[case, row]:.15g}); "
                      "both count the same voxels")
