"""Tables (pandas) and report files: per-image and summary CSVs, the reference layout,
problems, and atomic writing so a reader never sees half a file."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from .aggregate import class_mean, macro_summary, micro_metrics, per_image_metrics, summarize
from .metrics import METRICS
from .results import Results
from .store import STATS_FILE, save_results, write_atomic

CLASS_MEAN = "mean"  # the name of the per-image class-mean row in summaries
STATISTICS = ("mean", "median", "max", "min", "p90", "std", "notnans")
REFERENCE_STATISTICS = {"p90": "90percentile"}


# --------------------------------------------------------------------------- writing
def write_csv(path: str | os.PathLike, table: pd.DataFrame) -> Path:
    return write_atomic(path, table.to_csv(index=False, float_format="%.10g"))


def write_json(path: str | os.PathLike, data) -> Path:
    return write_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


# --------------------------------------------------------------------------- tables
def per_image_table(results: Results, *, absent: str = "include") -> pd.DataFrame:
    """One row per image and class: case, class, n_voxels, n_truth, every metric, absent."""
    if not results.stats:
        return pd.DataFrame(columns=["case", "class", "n_voxels", "n_truth", *METRICS, "absent"])
    metrics = per_image_metrics(results.stats, absent=absent)
    rows = []
    for i, (case, stats) in enumerate(zip(results.cases, results.stats)):
        for c, name in enumerate(stats.class_names):
            row = {
                "case": case,
                "class": name,
                "n_voxels": int(stats.n_voxels[c]),
                "n_truth": int(stats.n_truth[c]),
            }
            row.update({metric: float(values[i, c]) for metric, values in metrics.items()})
            row["absent"] = bool(stats.absent[c])
            row["n_clipped"] = int(stats.n_clipped[c])
            rows.append(row)
    return pd.DataFrame(rows)


def summary_table(results: Results, *, absent: str = "include") -> pd.DataFrame:
    """Per metric and class (plus the per-image class mean): macro statistics and the micro
    (pooled-sums) value. Columns: metric, class, mean, median, max, min, p90, std, notnans,
    micro."""
    macro = macro_summary(results.stats, absent=absent)
    micro = micro_metrics(results.stats, absent=absent)
    names = [*results.class_names, CLASS_MEAN]
    rows = []
    for metric, stats in macro.items():
        micro_values = np.append(micro[metric], np.nanmean(micro[metric]) if
                                 np.isfinite(micro[metric]).any() else np.nan)
        for c, name in enumerate(names):
            row = {"metric": metric, "class": name}
            row.update({s: float(stats[s][c]) for s in STATISTICS})
            row["micro"] = float(micro_values[c])
            rows.append(row)
    table = pd.DataFrame(rows)
    table["notnans"] = table["notnans"].astype(int)
    return table


def problems_table(problems: Iterable) -> pd.DataFrame:
    rows = [
        {"case": p.case, "file": p.file, "severity": p.severity, "message": p.message}
        for p in problems
    ]
    return pd.DataFrame(rows, columns=["case", "file", "severity", "message"])


# --------------------------------------------------------------- reference layout
def reference_tables(
    results: Results, *, absent: str = "include", metrics: Sequence[str] = ("ece", "ace", "mce")
) -> dict[str, pd.DataFrame]:
    """The reference implementation's files: ``<metric>_raw.csv`` (filename, class0.., mean),
    ``<metric>_summary.csv`` (class, mean, median, max, min, 90percentile, std, notnans) and
    ``metrics.csv`` (name, value: macro/micro ECE, ACE, MCE)."""
    per_image = per_image_metrics(results.stats, absent=absent)
    micro = micro_metrics(results.stats, absent=absent)
    class_columns = [f"class{i}" for i in range(len(results.class_names))]
    tables: dict[str, pd.DataFrame] = {}
    lines = []
    for metric in metrics:
        values = per_image[metric]
        raw = pd.DataFrame(values, columns=class_columns)
        raw.insert(0, "filename", list(results.cases))
        raw["mean"] = class_mean(values)
        tables[f"{metric}_raw.csv"] = raw
        stats = summarize(np.column_stack([values, class_mean(values)]))
        summary = pd.DataFrame({"class": [*class_columns, "mean"]})
        for s in STATISTICS:
            summary[REFERENCE_STATISTICS.get(s, s)] = stats[s]
        summary["notnans"] = summary["notnans"].astype(int)
        tables[f"{metric}_summary.csv"] = summary
        lines.append({"name": f"macro_{metric}", "value": float(stats["mean"][-1])})
        lines.append({"name": f"micro_{metric}", "value": float(np.nanmean(micro[metric]))})
    tables["metrics.csv"] = pd.DataFrame(lines, columns=["name", "value"])
    return tables


# --------------------------------------------------------------------------- a run's files
def write_reports(results: Results, out_dir: Path, *, csv_style: str = "tidy") -> list[Path]:
    """``stats.npz``, ``per_image.csv``, ``summary.csv`` (and the reference layout with
    ``csv_style="reference"``) of a run; nothing when no case was evaluated."""
    if not results.stats:
        return []
    absent = results.options.get("absent", "include")
    files = [
        save_results(out_dir / STATS_FILE, results),
        write_csv(out_dir / "per_image.csv", per_image_table(results, absent=absent)),
        write_csv(out_dir / "summary.csv", summary_table(results, absent=absent)),
    ]
    if csv_style == "reference":
        for name, table in reference_tables(results, absent=absent).items():
            files.append(write_csv(out_dir / name, table))
    return files


def write_problems(problems: Iterable, out_dir: Path) -> Path:
    return write_csv(out_dir / "problems.csv", problems_table(problems))


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in ("calibviz", "numpy", "numba", "nibabel", "pandas", "matplotlib", "scipy"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    versions["python"] = platform.python_version()
    return versions


def write_run_json(report, started: datetime) -> Path:
    """``run.json``: options, versions, times, counts, problems and the figures drawn of a
    :class:`calibviz.run.RunReport`."""
    results = report.results
    data = {
        "options": results.options,
        "versions": _versions(),
        "started": started.isoformat(),
        "finished": datetime.now(UTC).isoformat(),
        "cases_ok": len(results),
        "cases_skipped": len(results.skipped),
        "cases_resumed": report.n_resumed,
        "absent_pairs": results.n_absent,
        "classes": list(results.class_names),
        "timings_seconds": report.timings,
        "errors": [p.message for p in results.errors],
        "warnings": [p.message for p in results.warnings],
        "figures": _figure_summary(report.figures),
    }
    return write_json(report.out_dir / "run.json", data)


def _figure_summary(figures: dict | None):
    if figures is None:
        return None
    return {key: (str(value) if isinstance(value, Path) else value)
            for key, value in figures.items()
            if isinstance(value, int | str | float | Path | type(None))}
