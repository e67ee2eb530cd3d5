"""``summary.json`` in the structure nnU-Net's ``evaluate_folder`` / ``compute_metrics_on_folder``
writes, so tools that read nnU-Net summaries read calibviz's: ``metric_per_case`` (one entry
per image: ``metrics`` per label or region key, ``prediction_file``, ``reference_file``),
``mean`` (per key, NaN-skipping mean over images, nnU-Net's ``np.nanmean``) and
``foreground_mean`` (the plain mean of those over the keys other than 0, nnU-Net's
``np.mean``: NaN when any key's mean is NaN, e.g. a label empty in every truth and
prediction, whose Dice is NaN in every case).

Keys are nnU-Net's: a label value as a string (``"1"``), a region as the string of its tuple
(``"(1, 2, 4)"``). Per key: nnU-Net's ``Dice``, ``IoU``, ``TP``, ``FP``, ``FN``, ``TN``,
``n_pred``, ``n_ref`` (of the segmentation Dice uses, see ``dice_rule``), and calibviz's
``ECE``, ``ACE``, ``MCE``, ``Brier`` beside them. Dice and IoU are NaN when reference and
prediction are both empty (nnU-Net's convention); JSON ``NaN`` is written as Python writes it.
An image–class pair the run's absent policy leaves out (``exclude``: class absent from the
truth; ``drop-case``: every pair of an image missing any class) is NaN for every entry, the
counts too, as in ``per_image.csv``, so it drops out of ``mean``.
"""

from __future__ import annotations

import numpy as np

from .aggregate import absent_policy, included, per_image_metrics
from .results import Results

#: calibviz metric → nnU-Net style key.
CALIBRATION_KEYS = {"ece": "ECE", "ace": "ACE", "mce": "MCE", "brier": "Brier"}


def label_key(members) -> str:
    """nnU-Net's key of a label (``"1"``) or region (``"(1, 2)"``)."""
    members = [int(m) for m in members]
    return str(members[0]) if len(members) == 1 else str(tuple(members))


def summary_json(results: Results) -> dict:
    """The ``summary.json`` dict of a run (structure in the module docstring; keys are label
    values, so a ``top-label`` row is left out)."""
    results = results.classes_only()
    absent = absent_policy(results)
    metrics = per_image_metrics(results.stats, absent=absent)
    labels = results.options.get("class_labels") or {}
    keys = [label_key(labels.get(name, [c + 1])) for c, name in
            enumerate(results.class_names)]
    prediction_files = results.options.get("prediction_files") or {}
    reference_files = results.options.get("label_files") or {}
    per_case = []
    for i, (case, stats) in enumerate(zip(results.cases, results.stats)):
        entry = {}
        kept = included(stats, absent)
        for c, key in enumerate(keys):
            entry[key] = _segmentation_metrics(stats, c)
            entry[key].update({label: float(metrics[name][i, c])
                               for name, label in CALIBRATION_KEYS.items()})
            if not kept[c]:  # left out by the absent policy: NaN like per_image.csv
                entry[key] = dict.fromkeys(entry[key], float("nan"))
        per_case.append({"metrics": entry, "prediction_file": prediction_files.get(case, case),
                         "reference_file": reference_files.get(case, "")})
    means = {key: _mean_over_cases(per_case, key) for key in keys}
    names = list(next(iter(means.values())).keys()) if means else []
    foreground = [k for k in keys if k != "0"]
    foreground_mean = {m: _plain_mean([means[k][m] for k in foreground]) for m in names}
    return {"metric_per_case": per_case, "mean": means, "foreground_mean": foreground_mean}


def _segmentation_metrics(stats, c: int) -> dict:
    tp, fp, fn, tn = (int(getattr(stats, name)[c]) for name in ("tp", "fp", "fn", "tn"))
    both_empty = tp + fp + fn == 0
    return {
        "Dice": np.nan if both_empty else 2 * tp / (2 * tp + fp + fn),
        "IoU": np.nan if both_empty else tp / (tp + fp + fn),
        "FN": fn, "FP": fp, "TN": tn, "TP": tp, "n_pred": tp + fp, "n_ref": tp + fn,
    }


def _mean_over_cases(per_case: list[dict], key: str) -> dict:
    names = list(per_case[0]["metrics"][key]) if per_case else []
    return {m: _nanmean([case["metrics"][key][m] for case in per_case]) for m in names}


def _plain_mean(values) -> float:
    """nnU-Net's ``np.mean`` over labels: NaN when a value is NaN or there is none."""
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()) if values.size else float("nan")


def _nanmean(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")
