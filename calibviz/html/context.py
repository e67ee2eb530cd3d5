"""The data of the HTML report: plain dicts, lists and strings that the template lays out
(no HTML here). Each section is one function of a run folder and its
:class:`~calibviz.results.Results`."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from ..aggregate import mean_over_classes, per_image_metrics, with_class_mean
from ..intervals import honest_interval
from ..metrics import METRICS
from ..report import CLASS_MEAN, per_image_table, summary_table
from ..results import Results
from ..run_values import DISPLAY_NAMES

DISPLAY = DISPLAY_NAMES  # metric column -> the name a reader knows
#: Metrics where a higher value is better (every other one is an error: lower is better).
HIGHER_IS_BETTER = ("dice",)
DICE_RULES = {
    "argmax": "the argmax segmentation of the softmax map (as nnU-Net and MONAI write it)",
    "threshold": "each channel thresholded at p >= 0.5 (the paper's rule)",
}
DICE_EMPTY = "; NaN when truth and prediction are empty, 0 with false positives on empty truth"
DICE_LEFT_OUT = {  # how Dice treats the pairs the absent policy leaves out
    "exclude": "; NaN when truth and prediction are empty; NaN (left out of means and pooled "
               "values) where the class is absent from the truth (--absent exclude)",
    "drop-case": "; NaN when truth and prediction are empty; NaN (left out) for every class of "
                 "an image missing any class (--absent drop-case)",
}
MAX_LISTED = 200  # problems and skipped cases listed in full up to this many


def number(value, digits: int = 4) -> str:
    """``value`` with ``digits`` significant digits; an en dash for NaN or None.

    >>> number(0.0123456), number(float("nan")), number(12345.6)
    ('0.01235', '–', '1.235e+04')
    """
    if value is None or not math.isfinite(float(value)):
        return "–"
    return f"{float(value):.{digits}g}"


def read_run_json(folder: Path) -> dict:
    """``run.json`` of a run (empty when missing or unreadable: the report still works from
    ``stats.npz`` alone)."""
    try:
        data = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # RecursionError: nested too deeply
        return {}
    return data if isinstance(data, dict) else {}


def read_run_options(folder: Path) -> dict:
    """The ``options`` table of a run's ``run.json`` (empty when missing or not a table)."""
    options = read_run_json(folder).get("options")
    return options if isinstance(options, dict) else {}


# --------------------------------------------------------------------------- provenance
def provenance(folder: Path, results: Results, run: dict, problem_rows: list[dict], *,
               title: str | None, version: str) -> dict:
    """Title, date, version, the options that define the numbers, and the skipped cases."""
    options = results.options
    skipped, n_skipped = skipped_cases(results, problem_rows, run)
    name = options.get("name")
    labels = options.get("class_labels") or {}
    classes = ", ".join(
        f"{c} ({', '.join(map(str, labels[c]))})" if c in labels else str(c)
        for c in results.class_names)
    facts = [
        ("Results folder", str(folder)),
        ("Predictions", options.get("pred_dir") or "–"),
        ("Labels", options.get("label_dir") or "–"),
        ("Cases evaluated", str(len(results))),
        ("Cases skipped", str(n_skipped)),
        ("Classes", f"{len(results.class_names)}: {classes}" if classes else "0"),
        ("Input format", options.get("format") or "–"),
        ("Bins", f"{options.get('n_bins', '–')} equal-width, {options.get('binning', 'hard')}"
                 f" binning, {options.get('closure', 'right')}-closed"),
        ("Absent classes", options.get("absent", "include")),
        ("Dice rule", DICE_RULES.get(options.get("dice_rule"),
                                     "each channel thresholded at p >= 0.5")
         + DICE_LEFT_OUT.get(options.get("absent"), DICE_EMPTY)),
    ]
    extra = {k: v for k, v in options.items() if k in _EXTRA_OPTIONS and v not in (None, "")}
    facts += [(_EXTRA_OPTIONS[k], _text(v)) for k, v in extra.items()]
    versions = run.get("versions") if isinstance(run.get("versions"), dict) else {}
    return {
        "title": title or name or f"Calibration report: {folder.resolve().name}",
        "model": name or Path(str(options.get("pred_dir") or folder)).name,
        "date": datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z").strip(),
        "version": version,
        "run_finished": str(run.get("finished", ""))[:19].replace("T", " "),
        "versions": ", ".join(f"{k} {v}" for k, v in versions.items() if v),
        "facts": facts,
        "skipped": skipped,
        "n_skipped": n_skipped,
        "n_cases": len(results),
    }


_EXTRA_OPTIONS = {
    "include_background": "Background channel scored", "regions": "Regions",
    "preset": "Region preset", "mask_dir": "Masks", "ignore_label": "Ignored label",
    "postfix": "File-name postfix", "pattern": "Prediction pattern",
    "label_pattern": "Label pattern", "layout": "Array layout", "npz_key": ".npz key",
    "scale": "Scale", "activation": "Activation",
}


def _text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def skipped_cases(results: Results, problem_rows: list[dict], run: dict) -> tuple[list, int]:
    """``({case, reasons}, …)`` of the skipped cases (their error messages; at most
    :data:`MAX_LISTED`) and how many were skipped. ``stats.npz`` keeps no list of them: they
    are the cases with errors that were not evaluated, and ``run.json`` counts them."""
    evaluated = set(results.cases)
    reasons: dict[str, list[str]] = {case: [] for case in results.skipped}
    for row in problem_rows:
        if row["severity"] == "error" and row["case"] and row["case"] not in evaluated:
            reasons.setdefault(row["case"], []).append(row["message"])
    listed = [{"case": case, "reasons": "; ".join(found) or "no reason recorded"}
              for case, found in list(reasons.items())[:MAX_LISTED]]
    counted = run.get("cases_skipped")
    return listed, max(len(reasons), counted if isinstance(counted, int) else 0)


# --------------------------------------------------------------------------- headline
def headline(folder: Path, results: Results, *, n_bootstrap: int, seed: int,
             confidence: float) -> dict:
    """Per class and class mean, per metric: macro mean with bootstrap interval and micro
    value, each with a bar width (% of the largest value of that metric)."""
    table = _summary(folder, results)
    if "ci_low" not in table.columns or "ci_high" not in table.columns:
        table = _with_intervals(table, results, n_bootstrap, seed, confidence)
    names = [*results.class_names, CLASS_MEAN]
    metrics = [m for m in METRICS if m in set(table["metric"])]
    rows = [{"name": "class mean" if n == CLASS_MEAN else n, "is_mean": n == CLASS_MEAN,
             "cells": []} for n in names]
    for metric in metrics:
        part = table[table["metric"] == metric].set_index("class").reindex(names)
        values = part[["mean", "ci_low", "ci_high", "micro"]].to_numpy(dtype=float)
        if "notnans" in part.columns:  # a summary.csv written before the interval rules
            values[:, 1], values[:, 2], _ = honest_interval(
                values[:, 0], values[:, 1], values[:, 2],
                part["notnans"].to_numpy(dtype=float))
        scale = np.nanmax(np.abs(values)) if np.isfinite(values).any() else 1.0
        scale = scale if scale > 0 else 1.0
        for row, (mean, low, high, micro) in zip(rows, values, strict=True):
            row["cells"].append({
                "mean": number(mean), "low": number(low), "high": number(high),
                "micro": number(micro), "mean_w": _width(mean, scale),
                "micro_w": _width(micro, scale), "ci_left": _width(low, scale),
                "ci_w": max(_width(high, scale) - _width(low, scale), 0.0),
            })
    return {"metrics": [{"key": m, "name": DISPLAY.get(m, m),
                         "better": "higher" if m in HIGHER_IS_BETTER else "lower"}
                        for m in metrics],
            "rows": rows, "confidence": f"{confidence * 100:g}"}


def _width(value: float, scale: float) -> float:
    return round(min(max(float(value) / scale * 100, 0.0), 100.0), 1) \
        if math.isfinite(value) else 0.0


def _summary(folder: Path, results: Results) -> pd.DataFrame:
    """``summary.csv`` of the run when it is readable and matches the classes, else the same
    table computed from the statistics."""
    try:
        table = pd.read_csv(folder / "summary.csv", keep_default_na=True)
        table["class"] = table["class"].astype(str)
        if {"metric", "class", "mean", "micro"} <= set(table.columns) and \
                set(table["class"]) == {*results.class_names, CLASS_MEAN}:
            return table
    except (OSError, ValueError, pd.errors.ParserError):
        pass
    return summary_table(results, absent=results.options.get("absent", "include"))


def _with_intervals(table: pd.DataFrame, results: Results, n_bootstrap: int, seed: int,
                    confidence: float) -> pd.DataFrame:
    """``table`` with ``ci_low``/``ci_high``: bootstrap intervals of the macro means."""
    from ..bootstrap import macro_mean_interval

    per_image = per_image_metrics(results.stats, absent=results.options.get("absent",
                                                                           "include"))
    table = table.copy()
    table["ci_low"] = np.nan
    table["ci_high"] = np.nan
    names = [*results.class_names, CLASS_MEAN]
    for metric, values in per_image.items():
        columns = with_class_mean(values, results.class_names)
        low, high = macro_mean_interval(columns, n_bootstrap, seed, confidence)
        for c, name in enumerate(names):
            where = (table["metric"] == metric) & (table["class"] == name)
            table.loc[where, ["ci_low", "ci_high"]] = [low[c], high[c]]
    return table


# --------------------------------------------------------------------------- per image
PER_IMAGE_COLUMNS = ("case", "class", *METRICS, "n_voxels", "n_truth", "absent", "n_clipped")


def worst_cases(results: Results, count: int) -> list[int]:
    """Indices of the ``count`` cases with the highest mean ACE (NaN never counts)."""
    scores = mean_over_classes(results.stats, "ace",
                               absent=results.options.get("absent", "include"))
    order = [i for i in np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable")
             if math.isfinite(scores[i])]
    return order[:count]


def per_image_rows(results: Results, worst: Sequence[int]) -> dict:
    """Every case and class: cells with the text shown and the value sorted on."""
    table = per_image_table(results, absent=results.options.get("absent", "include"))
    rank = {results.cases[i]: k + 1 for k, i in enumerate(worst)}
    columns = [c for c in PER_IMAGE_COLUMNS if c in table.columns]
    rows = []
    for record in table.to_dict("records"):
        k = rank.get(record["case"])
        cells = [{"text": f"#{k}" if k else "", "sort": k or "", "numeric": True}]
        for column in columns:
            cells.append(_cell(record[column]))
        rows.append({"worst": k, "cells": cells})
    headers = [{"key": "worst", "name": "Worst", "numeric": True}]
    headers += [{"key": c, "name": DISPLAY.get(c, c.replace("_", " ")),
                 "numeric": c not in ("case", "class")} for c in columns]
    return {"headers": headers, "rows": rows}


def _cell(value) -> dict:
    if isinstance(value, bool | np.bool_):
        return {"text": "yes" if value else "no", "sort": int(value), "numeric": True}
    if isinstance(value, int | np.integer):
        return {"text": str(int(value)), "sort": int(value), "numeric": True}
    if isinstance(value, float | np.floating):
        finite = math.isfinite(value)
        return {"text": number(value), "sort": repr(float(value)) if finite else "",
                "numeric": True}
    return {"text": str(value), "sort": str(value), "numeric": False}


def case_scores(results: Results, index: int) -> str:
    """``liver ACE 0.09, tumour ACE 0.25, …`` of one case (for captions and alt text)."""
    values = per_image_metrics([results.stats[index]],
                               absent=results.options.get("absent", "include"))["ace"][0]
    return ", ".join(f"{name} ACE {number(v, 3)}"
                     for name, v in zip(results.class_names, values, strict=True))


# --------------------------------------------------------------------------- problems
def problem_rows(folder: Path, results: Results) -> list[dict]:
    """The problems of the run (``problems.csv``, else those stored with the statistics):
    ``{case, file, severity, message}`` each."""
    try:
        table = pd.read_csv(folder / "problems.csv", dtype=str, keep_default_na=False)
        rows = table.reindex(columns=["case", "file", "severity", "message"]).fillna("")
        rows = rows.to_dict("records")
    except (OSError, ValueError, pd.errors.ParserError):
        rows = [{"case": p.case, "file": p.file, "severity": p.severity,
                 "message": p.message} for p in results.problems]
    return rows


def problems(rows: list[dict]) -> dict:
    """The problems section: the first :data:`MAX_LISTED` rows and the counts."""
    counts = {s: sum(r["severity"] == s for r in rows) for s in ("error", "warning")}
    return {"rows": rows[:MAX_LISTED], "total": len(rows), **counts}
