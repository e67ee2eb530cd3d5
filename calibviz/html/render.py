"""Render the self-contained HTML audit report of a run (``calibviz report``).

One Jinja2 template (``report.html.j2``, autoescaped: case and file names are text, never
markup) filled with the plain data of :mod:`calibviz.html.context` and the inlined figures of
:mod:`calibviz.html.figures`. The page needs nothing else: CSS, the sorting and filtering
script and every image are inside the one file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

from ..bootstrap import check_settings
from ..options import check_figure_bins
from ..results import Results
from . import context

TEMPLATE = "report.html.j2"
#: Cases whose reliability diagrams are drawn (the worst by mean ACE) unless told otherwise.
WORST_CASES = 8


def load_run_folder(folder: str | os.PathLike) -> tuple[Path, Results]:
    """The run folder and its results; ``ValueError`` (one line) when ``folder`` is not a
    calibviz results folder or its ``stats.npz`` cannot be read."""
    from ..store import STATS_FILE, check_finished, load_results

    folder = Path(folder)
    if folder.is_file() and folder.name == STATS_FILE:
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder (expected the --out folder of "
                         "calibviz evaluate)")
    check_finished(folder)
    if not (folder / STATS_FILE).is_file():
        if (folder / "run.json").is_file() and (folder / "problems.csv").is_file():
            raise ValueError(f"{folder} holds a run in which no case was evaluated: nothing "
                             f"to report; why each case failed is in "
                             f"{folder / 'problems.csv'}")
        raise ValueError(f"{folder} is not a calibviz results folder: it holds no "
                         f"{STATS_FILE} (write one with calibviz evaluate)")
    results = load_results(folder)
    if not results.stats:
        raise ValueError(f"{folder / STATS_FILE} holds no evaluated case; nothing to report")
    return folder, results


def comparison_section(folder: Path, others: Sequence[str | os.PathLike], *,
                       n_bootstrap: int, seed: int, confidence: float) -> dict | None:
    """The comparison of every run in ``others`` with this one (the baseline): rows of the
    table with their verdicts, and one figure per model; ``None`` without ``others``."""
    if not others:
        return None
    from ..comparison import compare_runs, verdict
    from .figures import comparison_figures

    runs = [folder, *map(Path, others)]
    comparison = compare_runs(*runs, names=run_names(runs), n_bootstrap=n_bootstrap,
                              seed=seed, confidence=confidence)
    rows = []
    for record in comparison.table.to_dict("records"):
        better = _better(record)
        rows.append({
            "model": record["model"], "metric": context.DISPLAY.get(record["metric"],
                                                                    record["metric"]),
            "class": "class mean" if record["class"] == context.CLASS_MEAN
            else record["class"],
            "n": int(record["n"]),
            "base": context.number(record["mean_baseline"]),
            "other": context.number(record["mean_model"]),
            "diff": context.number(record["mean_diff"], 3),
            "ci": _interval_text(record),
            "p": context.number(record["wilcoxon_p_holm"], 2),
            "verdict": verdict(record, method=False), "better": better,
            "is_mean": record["class"] == context.CLASS_MEAN,
        })
    unpaired = comparison.unpaired.to_dict("records")
    return {"baseline": comparison.baseline.name, "models": list(comparison.models),
            "rows": rows, "figures": comparison_figures(comparison),
            "unpaired": unpaired[:context.MAX_LISTED], "n_unpaired": len(unpaired),
            "notes": list(comparison.notes),
            "confidence": f"{confidence * 100:g}"}


def _interval_text(record: dict) -> str:
    """``low to high``; an en dash without an interval, ``discarded`` for one discarded for
    not containing its mean difference."""
    low, high = float(record["ci_low"]), float(record["ci_high"])
    if math.isfinite(low) and math.isfinite(high):
        return f"{context.number(low, 3)} to {context.number(high, 3)}"
    return "discarded" if str(record.get("ci_note") or "").startswith("discarded") else "–"


def roi_sections(folder: Path, *, n_bootstrap: int, seed: int, confidence: float) -> list:
    """One section per region-of-interest result set of the run (``evaluate --roi``:
    ``folder/roi-<spec>/``): its region, folder, number of images, headline metrics and
    dataset histograms; a set that cannot be read gives its one-line reason instead, and
    the rest of the report stands."""
    from ..store import ROI_PREFIX
    from .figures import dataset_figure

    sections = []
    for sub in sorted(p for p in folder.glob(f"{ROI_PREFIX}*") if p.is_dir()):
        options = context.read_run_options(sub)
        section = {"region": str(options.get("roi") or sub.name[len(ROI_PREFIX):]),
                   "folder": sub.name, "error": None}
        try:
            _, results = load_run_folder(sub)
            section.update(
                n_images=len(results.cases),
                headline=context.headline(sub, results, n_bootstrap=n_bootstrap, seed=seed,
                                          confidence=confidence),
                dataset=dataset_figure(results))
        except (ValueError, OSError) as error:
            section["error"] = str(error)
        sections.append(section)
    return sections


def run_names(folders: Sequence[Path]) -> list[str]:
    """A label per run: its ``--name``, else its prediction folder's name, else its own
    folder's name; repeated labels get their folder's name added."""
    names = []
    for folder in folders:
        options = context.read_run_options(folder)
        names.append(str(options.get("name") or Path(str(options.get("pred_dir") or folder))
                         .name or folder.resolve().name))
    if len(set(names)) < len(names):
        names = [f"{name} ({folder.resolve().name})" for name, folder in zip(names, folders)]
    if len(set(names)) < len(names):
        names = [f"{name} #{i + 1}" for i, name in enumerate(names)]
    return names


def _better(record: dict, alpha: float = 0.05) -> str:
    """``better``/``worse`` (for the model) when the Holm-adjusted Wilcoxon test says so."""
    p, diff = float(record["wilcoxon_p_holm"]), float(record["mean_diff"])
    if not p < alpha or diff == 0:
        return ""
    higher_better = record["metric"] in context.HIGHER_IS_BETTER
    return "better" if (diff > 0) == higher_better else "worse"


def render_report(results_dir: str | os.PathLike, *, compare: Sequence = (),
                  title: str | None = None, worst: int = WORST_CASES,
                  n_bootstrap: int = 10000, seed: int = 0,
                  confidence: float = 0.95) -> str:
    """The HTML text of the report of the run in ``results_dir``; with ``compare``, also
    the comparison of those runs with it (it is the baseline). ``worst``: how many of the
    worst cases by mean ACE are highlighted and drawn. Raises ``ValueError`` (one line) for
    a folder that is not a readable results folder."""
    from .. import __version__
    from .figures import case_figures, dataset_figure

    if worst < 0:
        raise ValueError(f"--worst must be at least 0, got {worst}")
    check_settings(n_bootstrap, confidence, seed)
    folder, results = load_run_folder(results_dir)
    if results.stats:
        check_figure_bins(results.stats[0].n_bins, "the report's figures")
    comparison = comparison_section(folder, compare, n_bootstrap=n_bootstrap, seed=seed,
                                    confidence=confidence)  # its input errors first
    run = context.read_run_json(folder)
    picked = context.worst_cases(results, worst)
    captions = [context.case_scores(results, i) for i in picked]
    problem_rows = context.problem_rows(folder, results)
    data = {
        "p": context.provenance(folder, results, run, problem_rows, title=title,
                                version=__version__),
        "headline": context.headline(folder, results, n_bootstrap=n_bootstrap, seed=seed,
                                     confidence=confidence),
        "dataset": dataset_figure(results),
        "per_image": context.per_image_rows(results, picked),
        "worst": case_figures(results, picked, captions),
        "n_worst_asked": worst,
        "problems": context.problems(problem_rows),
        "roi": roi_sections(folder, n_bootstrap=n_bootstrap, seed=seed,
                            confidence=confidence),
        "comparison": comparison,
    }
    return _environment().get_template(TEMPLATE).render(**data)


def _environment():
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("calibviz", "html"),
        autoescape=True, undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True,
    )


def write_report(results_dir: str | os.PathLike, out: str | os.PathLike | None = None,
                 **options) -> Path:
    """Write the report of ``results_dir`` to ``out`` (a file, or a folder to write
    ``report.html`` in; default ``results_dir/report.html``) atomically and return its path;
    ``options`` as in :func:`render_report`."""
    from ..store import write_atomic

    check_report_path(out)
    text = render_report(results_dir, **options)
    folder = Path(results_dir)
    folder = folder.parent if folder.is_file() else folder
    target = Path(out) if out is not None else folder / "report.html"
    if target.is_dir():  # a folder to write it in, as cp takes one
        target = target / "report.html"
    return write_atomic(target, text)


def check_report_path(out: str | os.PathLike | None) -> None:
    """``ValueError`` unless ``out`` is None, a folder or a path ending in ``.html``/``.htm``
    (so that a report never replaces a run's ``stats.npz`` or a CSV)."""
    if out is None or Path(out).is_dir():
        return
    if Path(out).suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"--out {out}: the report is an HTML file; give a path ending in "
                         ".html, or a folder to write report.html in")
