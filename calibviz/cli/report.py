"""``calibviz report RESULTS``: one self-contained HTML audit report of a run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..options import check_resamples, check_seed
from .common import checked, describe, fail

REPORT_EXAMPLE = """
Example: calibviz report results/ --compare results_monai/ --out audit.html

RESULTS is the --out folder of calibviz evaluate; with --compare it is the baseline.
"""


def report(
    results: Annotated[Path, typer.Argument(help="Results folder written by calibviz "
                                            "evaluate (its stats.npz).")],
    compare: Annotated[list[Path] | None, typer.Option(
        "--compare", metavar="OTHER", help="Another model's results folder to compare "
        "with RESULTS (the baseline); repeat for more.")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="The HTML file to write, or a folder to write report.html in "
        "(default: RESULTS/report.html).")] = None,
    title: Annotated[str | None, typer.Option(
        help="Report title (default: the run's --name, else the folder name).")] = None,
    worst: Annotated[int, typer.Option(
        min=0, help="Highlight and draw this many worst cases (by mean ACE).")] = 8,
    bootstrap: Annotated[int, typer.Option(
        callback=checked(check_resamples), help="Bootstrap resamples for the intervals.")]
    = 10000,
    seed: Annotated[int, typer.Option(
        callback=checked(check_seed), help="Seed of the bootstrap resamples.")] = 0,
    open_: Annotated[bool, typer.Option(
        "--open", help="Open the report in the default web browser.")] = False,
) -> None:
    """Write one self-contained HTML report of a run: provenance, headline metrics with
    intervals, dataset reliability histograms, a sortable table of every image, the worst
    cases' reliability diagrams, problems and (with --compare) the comparison."""
    path = make_report(results, out, compare=compare or [], title=title, worst=worst,
                       n_bootstrap=bootstrap, seed=seed)
    typer.echo(f"wrote {path}")
    if open_:
        import webbrowser

        webbrowser.open(path.resolve().as_uri())


def make_report(results: Path, out: Path | None, **options) -> Path:
    """:func:`calibviz.html.write_report`, each input problem one line and exit 2."""
    from ..html import write_report

    try:
        return write_report(results, out, **options)
    except ValueError as error:
        fail(str(error))
    except OSError as error:
        fail(f"cannot write the report: {describe(error)}")
