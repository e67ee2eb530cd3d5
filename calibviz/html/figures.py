"""Figures of the HTML report, drawn in memory and inlined as PNG data URIs (nothing is
written to disk, nothing is fetched when the report opens). Case figures are drawn at a low
resolution so that a report of hundreds of cases stays small."""

from __future__ import annotations

import base64
from collections.abc import Sequence

from ..results import Results

#: Resolution (dots per inch) of the dataset figure, the case figures and the comparison.
DATASET_DPI = 110
CASE_DPI = 90
COMPARISON_DPI = 90
#: Panel width (inches) of the comparison strips: room for their one-line verdicts.
COMPARISON_PANEL = 4.2


def data_uri(figure, *, dpi: int, preset=None) -> str:
    """``data:image/png;base64,…`` of a Matplotlib ``figure``."""
    from ..viz.figures import figure_bytes

    return png_uri(figure_bytes(figure, "png", dpi=dpi, preset=preset))


def png_uri(png: bytes) -> str:
    """``data:image/png;base64,…`` of the PNG file contents ``png``."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def dataset_figure(results: Results) -> dict:
    """The dataset reliability histograms (one panel per class and the all-classes panel)."""
    from ..aggregate import dropped_cases
    from ..viz import render

    absent = results.options.get("absent", "include")
    classes, note = render.figure_classes(results, absent=absent)
    figure = render.dataset_figure(results.stats, dpi=DATASET_DPI, absent=absent,
                                   classes=classes)
    n_images = int((~dropped_cases(results.stats, absent)).sum())
    names = [results.class_names[c] for c in classes or range(len(results.class_names))]
    panels = ", ".join(names) + (" and all classes pooled" if len(names) > 1 else "")
    alt = (f"Dataset reliability histograms of {n_images} images ({panels}): "
           "per confidence bin, the share of images at each observed frequency, with the "
           "pooled reliability curve and the diagonal of perfect calibration.")
    return {"src": data_uri(figure, dpi=DATASET_DPI), "alt": alt,
            "note": f"The figure shows {note}." if note else ""}


def case_figures(results: Results, indices: Sequence[int], captions: Sequence[str]) -> list:
    """Reliability diagrams of the cases ``indices`` (the classes of
    :func:`~calibviz.viz.selection.figure_classes`: all, or the worst of many), small PNGs,
    drawn in one :class:`~calibviz.viz.casefigure.CaseFigure` (built once, redrawn per
    case)."""
    if not len(indices):
        return []
    from ..viz.casefigure import CaseFigure
    from ..viz.figures import pin_empty_labels
    from ..viz.selection import figure_classes

    classes, _ = figure_classes(results, absent=results.options.get("absent", "include"))
    case_figure = CaseFigure(results.stats[indices[0]], classes=classes)
    pin_empty_labels(case_figure.figure)
    drawn = []
    for rank, (i, caption) in enumerate(zip(indices, captions, strict=True), start=1):
        case = results.cases[i]
        case_figure.draw(f"#{rank} {case}", results.stats[i])
        drawn.append({
            "case": case, "rank": rank, "caption": caption,
            "src": png_uri(case_figure.image("png", dpi=CASE_DPI)),
            "alt": f"Reliability diagrams of case {case} (worst #{rank} by mean ACE), one "
                   f"panel per class shown: {caption}.",
        })
    return drawn


def comparison_figures(comparison) -> list[dict]:
    """The comparison figure of each model against the baseline."""
    from ..viz.comparison import plot_comparison
    from ..viz.figures import pin_empty_labels
    from ..viz.presets import get_preset

    drawn = []
    for model in comparison.models:
        figure = plot_comparison(comparison, model=model,
                                 preset=get_preset(None, panel_width=COMPARISON_PANEL))
        pin_empty_labels(figure)  # the same pixels, laid out faster
        drawn.append({
            "model": model, "src": data_uri(figure, dpi=COMPARISON_DPI),
            "alt": f"Paired per-image differences {model} minus {comparison.baseline.name} "
                   "for each metric and class, with mean differences, bootstrap intervals "
                   "and Holm-adjusted Wilcoxon p-values, and the two models' reliability "
                   "histograms.",
        })
    return drawn
