"""``calibviz plot RESULTS``: redraw the figures of a run from its ``stats.npz``.

A plain function with Typer annotations; ``calibviz.cli`` registers it with
``app.command("plot")(plot)``. It parses options, calls
:func:`calibviz.figures.render_figures`, prints one line per file written and, on bad input,
one clear line on stderr and exit status 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def _split(text: str | None) -> list[str] | None:
    if text is None:
        return None
    items = [item.strip() for item in text.split(",") if item.strip()]
    return items or None


def plot(
    results: Annotated[Path, typer.Argument(
        help="Run folder or its stats.npz (written by calibviz evaluate).")],
    kind: Annotated[str, typer.Option(
        "--kind", help="Which figures: dataset, case or both.")] = "both",
    cases: Annotated[str | None, typer.Option(
        "--cases", help="Comma-separated case ids, or 'worst N' (by mean ACE).")] = None,
    classes: Annotated[str | None, typer.Option(
        "--classes", help="Comma-separated class names or indices (default: all).")] = None,
    fmt: Annotated[str, typer.Option(
        "--format", "-f", help="File format: png, pdf or svg.")] = "png",
    preset: Annotated[str, typer.Option(
        "--preset", help="Figure size and fonts: screen, single or double (column).")
    ] = "screen",
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Output folder (default: figures/ beside the stats.npz).")] = None,
    dpi: Annotated[int | None, typer.Option(
        "--dpi", help="PNG resolution (default: the preset's).", min=10, max=2400)] = None,
    max_cases: Annotated[int, typer.Option(
        "--max-cases", help="Without --cases, draw at most this many (the worst by ACE).",
        min=0)] = 50,
    norm: Annotated[str, typer.Option(
        "--norm", help="Colour norm of the dataset histogram: power, log or linear.")
    ] = "power",
    gamma: Annotated[float, typer.Option(
        "--gamma", help="Exponent of the power norm.")] = 0.35,
    cmap: Annotated[str, typer.Option(
        "--cmap", help="Matplotlib colour map of the dataset histogram.")] = "YlOrRd",
    font_size: Annotated[float | None, typer.Option(
        "--font-size", help="Base font size in points (default: the preset's).")] = None,
    width: Annotated[float | None, typer.Option(
        "--width", help="Figure width in inches (default: the preset's).")] = None,
    absent: Annotated[str, typer.Option(
        "--absent", help="Classes absent from an image: include or exclude.")] = "include",
) -> None:
    """Redraw reliability diagrams and the dataset reliability histogram from a stats.npz."""
    import matplotlib

    from calibviz import load_results
    from calibviz.figures import render_figures
    from calibviz.plot import get_preset

    try:
        if cmap not in matplotlib.colormaps:
            raise ValueError(f"unknown colour map {cmap!r} (any matplotlib name, e.g. YlOrRd)")
        chosen = get_preset(preset, font_size=font_size, width=width)
        if font_size is not None and font_size <= 0 or width is not None and width <= 0:
            raise ValueError("--font-size and --width must be positive")
        loaded = load_results(results)
        base = results if results.is_dir() else results.parent
        out_dir = out if out is not None else base / "figures"
        summary = render_figures(
            loaded, out_dir, kind=kind, cases=cases, classes=_split(classes), fmt=fmt,
            preset=chosen, max_cases=max_cases, absent=absent, dpi=dpi, norm=norm,
            gamma=gamma, cmap=cmap,
        )
    except (ValueError, OSError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    for path in summary["cases"]:
        typer.echo(f"wrote {path}")
    if summary["dataset"] is not None:
        typer.echo(f"wrote {summary['dataset']}")
    if kind in ("both", "case"):
        line = (f"drew {summary['n_drawn']} of {summary['n_cases']} case figures "
                f"({summary['selection']})")
        if summary["n_skipped"] and cases is None:
            line += "; choose others with --cases or --max-cases"
        typer.echo(line)
