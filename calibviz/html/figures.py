"""Figures of the HTML report, drawn in memory and inlined as PNG data URIs (nothing is
written to disk, nothing is fetched when the report opens). Case figures are drawn at a low
resolution so that a report of hundreds of cases stays small."""

from __future__ import annotations

import base64
import io
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
    import matplotlib

    from ..viz.presets import get_preset

    buffer = io.BytesIO()
    with matplotlib.rc_context(get_preset(preset).rc()):
        figure.savefig(buffer, format="png", dpi=dpi, metadata={"Software": "calibviz"})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def dataset_figure(results: Results) -> dict:
    """The dataset reliability histograms (one panel per class and the all-classes panel)."""
    from ..aggregate import reliability_histogram
    from ..viz.layouts import plot_dataset

    histogram = reliability_histogram(results.stats,
                                      absent=results.options.get("absent", "include"))
    figure, _, _ = plot_dataset(histogram)
    panels = ", ".join(results.class_names) + (" and all classes pooled"
                                               if len(results.class_names) > 1 else "")
    alt = (f"Dataset reliability histograms of {histogram.n_images} images ({panels}): "
           "per confidence bin, the share of images at each observed frequency, with the "
           "pooled reliability curve and the diagonal of perfect calibration.")
    return {"src": data_uri(figure, dpi=DATASET_DPI), "alt": alt}


def case_figures(results: Results, indices: Sequence[int], captions: Sequence[str]) -> list:
    """Reliability diagrams of the cases ``indices`` (every class of each), small PNGs."""
    from ..viz.layouts import plot_case

    drawn = []
    for rank, (i, caption) in enumerate(zip(indices, captions, strict=True), start=1):
        case = results.cases[i]
        figure, _ = plot_case(results.stats[i], title=f"#{rank} {case}")
        drawn.append({
            "case": case, "rank": rank, "caption": caption,
            "src": data_uri(figure, dpi=CASE_DPI),
            "alt": f"Reliability diagrams of case {case} (worst #{rank} by mean ACE), one "
                   f"panel per class: {caption}.",
        })
    return drawn


def comparison_figures(comparison) -> list[dict]:
    """The comparison figure of each model against the baseline."""
    from ..viz.comparison import plot_comparison
    from ..viz.presets import get_preset

    drawn = []
    for model in comparison.models:
        figure = plot_comparison(comparison, model=model,
                                 preset=get_preset(None, panel_width=COMPARISON_PANEL))
        drawn.append({
            "model": model, "src": data_uri(figure, dpi=COMPARISON_DPI),
            "alt": f"Paired per-image differences {model} minus {comparison.baseline.name} "
                   "for each metric and class, with mean differences, bootstrap intervals "
                   "and Holm-adjusted Wilcoxon p-values, and the two models' reliability "
                   "histograms.",
        })
    return drawn
