"""Render the figures of a run (:class:`~calibviz.results.Results`) to files.

``render_figures`` writes ``out_dir/dataset_reliability_histogram.<fmt>`` and
``out_dir/cases/<case>.<fmt>``; ``render_case_figure`` draws one case and is safe to call from
a worker process (it takes plain data and returns the path written). A large dataset does not
produce thousands of figures by accident: without an explicit selection only the
``max_cases`` worst cases by mean ACE are drawn, and the returned dict says so.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from ..aggregate import included, mean_over_classes, reliability_histogram
from ..results import Results
from ..stats import BinStats
from .casefigure import CaseFigure
from .figures import check_format, make_norm, save_figure
from .layouts import plot_dataset, resolve_classes
from .presets import Preset, get_preset

KINDS = ("both", "dataset", "case")
DATASET_FIGURE = "dataset_reliability_histogram"
_WORST = re.compile(r"^\s*worst\s+(\d+)(\s+by\s+ace)?\s*$", re.IGNORECASE)


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


def render_case_figure(case_id: str, stats: BinStats, path: str | Path, *,
                       classes: Sequence[int | str] | None = None,
                       preset: str | Preset | None = None, dpi: int | None = None,
                       histogram: bool = True, **style) -> Path:
    """Draw the reliability diagrams of every (or the given) class of one case and write them
    to ``path`` (format from the suffix). Pure inputs, so it runs in a worker process; for
    many cases :func:`render_case_figures` builds the figure once."""
    return render_case_figures([(case_id, stats, path)], classes=classes, preset=preset,
                               dpi=dpi, histogram=histogram, **style)[0]


def render_case_figures(jobs, *, classes: Sequence[int | str] | None = None,
                        preset: str | Preset | None = None, dpi: int | None = None,
                        histogram: bool = True, **style) -> list[Path]:
    """Draw ``jobs`` (``(case id, BinStats, path)`` of one run: same classes and bins) with
    one :class:`~calibviz.viz.casefigure.CaseFigure`, built once and redrawn per case;
    returns the paths written."""
    jobs = list(jobs)
    if not jobs:
        return []
    case_figure = CaseFigure(jobs[0][1], classes=classes, histogram=histogram,
                             preset=preset, **style)
    written = []
    for case_id, stats, path in jobs:
        case_figure.draw(str(case_id), stats)
        written.append(case_figure.save(path, dpi=dpi))
    return written


def render_dataset_figure(stats: Sequence[BinStats], path: str | Path, *,
                          classes: Sequence[int | str] | None = None, absent: str = "include",
                          preset: str | Preset | None = None, dpi: int | None = None,
                          title: str | None = None, **style) -> Path:
    """Draw the dataset reliability histogram of all (or the given) classes plus the
    all-classes panel and write it to ``path``."""
    data = stats if style.get("band") else reliability_histogram(stats, absent=absent)
    figure, _, _ = plot_dataset(data, classes=classes, absent=absent, title=title,
                                preset=preset, **style)
    return save_figure(figure, path, dpi=dpi, preset=preset)


def select_cases(results: Results, cases=None, *, max_cases: int = 12,
                 absent: str = "include") -> tuple[list[int], str]:
    """Indices of the cases to draw and a phrase saying how they were chosen.

    ``cases``: ``None`` (all, or the worst ``max_cases`` by mean ACE when there are more),
    ``"worst N"`` (also ``"worst N by ACE"``), or a list of case ids (a comma-separated
    string works too). Unknown ids raise ``ValueError`` naming them.
    """
    n = len(results)
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
    scores = mean_over_classes(results.stats, "ace", absent=absent)
    order = sorted(range(len(scores)),
                   key=lambda i: (math.isnan(scores[i]), -np.nan_to_num(scores[i])))
    return order[:count]


def render_figures(results: Results, out_dir: str | Path, *, kind: str = "both", cases=None,
                   classes: Sequence[int | str] | None = None, fmt: str = "png",
                   preset: str | Preset | None = None, max_cases: int = 12,
                   absent: str = "include", dpi: int | None = None, workers: int = 1,
                   **style) -> dict:
    """Write the figures of a run.

    Writes ``out_dir/dataset_reliability_histogram.<fmt>`` (``kind`` "dataset" or "both")
    and ``out_dir/cases/<case>.<fmt>`` (``kind`` "case" or "both"). ``cases`` and
    ``max_cases`` as in :func:`select_cases`; ``classes`` names or indices; ``style`` goes to
    the displays (e.g. ``norm="log"``, ``gamma=0.5``, ``cmap="viridis"`` for the dataset
    figure). ``workers > 1`` draws case figures in that many processes.

    Returns ``{"dataset": Path | None, "cases": [Path], "n_drawn": int (case figures),
    "n_skipped": int (cases not drawn), "n_cases": int, "selection": str}``.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    fmt = check_format(fmt)
    if len(results) == 0:
        raise ValueError("these results hold no cases; nothing to draw")
    preset = get_preset(preset)
    included(results.stats[0], absent)  # checks the policy name
    make_norm(style.get("norm", "power"), gamma=style.get("gamma", 0.35))  # checks the norm
    if classes is not None:
        classes = resolve_classes(results.stats[0], classes)
    out_dir = Path(out_dir)
    dataset_style = {k: v for k, v in style.items() if k in _DATASET_STYLE}
    case_style = {k: v for k, v in style.items() if k not in _DATASET_STYLE}
    summary = {"dataset": None, "cases": [], "n_drawn": 0, "n_skipped": 0,
               "n_cases": len(results), "selection": ""}
    pending = None
    if kind in ("both", "case"):
        picked, summary["selection"] = select_cases(results, cases, max_cases=max_cases,
                                                    absent=absent)
        file_names = unique_file_names(results.cases)
        jobs = [(results.cases[i], results.stats[i],
                 out_dir / "cases" / f"{file_names[i]}.{fmt}") for i in picked]
        options = {"classes": classes, "preset": preset, "dpi": dpi, **case_style}
        pending = _start_cases(jobs, options, workers)  # drawn while the dataset figure is
        summary["n_drawn"] = len(picked)
        summary["n_skipped"] = len(results) - len(picked)
    try:
        if kind in ("both", "dataset"):
            summary["dataset"] = render_dataset_figure(
                results.stats, out_dir / f"{DATASET_FIGURE}.{fmt}", classes=classes,
                absent=absent, preset=preset, dpi=dpi, **dataset_style)
    finally:
        if pending is not None:
            summary["cases"] = pending()
    return summary


_DATASET_STYLE = ("cmap", "norm", "gamma", "show_curve", "show_counts", "all_classes",
                  "curve_color", "title", "band")


def _render_chunk(chunk_and_options):
    chunk, options = chunk_and_options
    return render_case_figures(chunk, **options)


#: Case figures per worker below which a worker process does not pay for its start.
MIN_FIGURES_PER_WORKER = 4


def _start_cases(jobs, options: dict, workers: int):
    """Start drawing ``jobs``; returns a function that waits and gives the paths in job
    order. With ``workers > 1`` and enough figures the jobs are split into that many
    chunks, each drawn with one reused figure in a spawned process, while the caller
    draws the dataset figure; else they are drawn here, when the result is asked for."""
    workers = min(workers, len(jobs) // MIN_FIGURES_PER_WORKER)
    if workers <= 1:
        return lambda: render_case_figures(jobs, **options)
    chunks = [jobs[i::workers] for i in range(workers)]
    # spawn, not fork: the parent may hold Numba's worker threads (fork copies their locks)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))
    futures = [pool.submit(_render_chunk, (chunk, options)) for chunk in chunks]

    def wait() -> list[Path]:
        try:
            drawn = [future.result() for future in futures]
        finally:
            pool.shutdown(cancel_futures=True)
        by_path = {path: path for paths in drawn for path in paths}
        return [by_path[Path(path)] for _, _, path in jobs]

    return wait
