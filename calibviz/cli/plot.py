"""``calibviz plot RESULTS``: redraw the figures of a run from its ``stats.npz``.

A plain function with Typer annotations; ``calibviz.cli`` registers it with
``app.command("plot")(plot)``. It parses options, calls
:func:`calibviz.viz.render_figures`, prints one line per file written and, on bad input,
one clear line on stderr and exit status 2. The choices of ``--size-preset``, ``--format``
and ``--norm`` come from the library's own tuples (matplotlib loads only when drawing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..options import check_resamples
from ..viz.presets import FORMATS, NORMS, SIZE_PRESETS
from .common import checked, choices, describe, fail

#: Limits of the numeric options: font size in points, resolution, pixels per side.
FONT_SIZE_MAX = 72.0
DPI_RANGE = (10, 1200)
MAX_PIXELS = 20_000


SizePreset = choices("SizePreset", tuple(SIZE_PRESETS))
ImageFormat = choices("ImageFormat", tuple(FORMATS))
Norm = choices("Norm", tuple(NORMS))


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
        "--classes", help="Comma-separated class names or label values (default: all).")
    ] = None,
    fmt: Annotated[ImageFormat, typer.Option(
        "--format", "-f", help="Image file format.")] = ImageFormat.png,
    size_preset: Annotated[SizePreset, typer.Option(
        "--size-preset",
        help="Figure size and fonts: a screen figure or a single or double paper column.")
    ] = SizePreset.screen,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Output folder (default: figures/ beside the stats.npz).")] = None,
    dpi: Annotated[int | None, typer.Option(
        "--dpi", help="PNG resolution, 10 to 1200 (default: the preset's).")] = None,
    max_cases: Annotated[int, typer.Option(
        "--max-cases", help="Without --cases, draw at most this many (the worst by ACE).",
        min=0)] = 12,
    norm: Annotated[Norm, typer.Option(
        "--norm", help="Colour norm of the dataset histogram.")] = Norm.power,
    gamma: Annotated[float, typer.Option(
        "--gamma", help="Exponent of the power norm.")] = 0.35,
    band: Annotated[int, typer.Option(
        "--band", callback=checked(check_resamples), help="Draw the pooled curve's 95 % "
        "image-bootstrap band from this many resamples (0: none).")] = 0,
    cmap: Annotated[str, typer.Option(
        "--cmap", help="Matplotlib colour map of the dataset histogram.")] = "YlOrRd",
    font_size: Annotated[float | None, typer.Option(
        "--font-size", help="Base font size in points, up to 72 (default: the preset's).")
    ] = None,
    width: Annotated[float | None, typer.Option(
        "--width", help="Figure width in inches (default: the preset's).")] = None,
    absent: Annotated[str | None, typer.Option(
        "--absent", help="Classes absent from an image: include, exclude or drop-case "
        "(default: the run's policy).", show_default=False)] = None,
) -> None:
    """Redraw reliability diagrams and the dataset reliability histogram from a stats.npz."""
    import matplotlib

    from ..runchecks import check_out_outside
    from ..store import load_results
    from ..viz import get_preset, render_figures, resolve_classes
    from ..viz.worker import HereWorker, can_fork_here

    try:
        if cmap not in matplotlib.colormaps:
            raise ValueError(f"unknown colour map {cmap!r} (any matplotlib name, e.g. YlOrRd)")
        chosen = get_preset(size_preset.value, font_size=font_size, width=width)
        check_sizes(chosen, font_size=font_size, width=width, dpi=dpi)
        loaded = load_results(results)
        picked = None
        if classes is not None and loaded.stats:
            picked = resolve_classes(loaded.stats[0], _split(classes) or [],
                                     class_labels=loaded.options.get("class_labels"))
        base = results if results.is_dir() else results.parent
        out_dir = out if out is not None else base / "figures"
        check_out_outside(out_dir, *(loaded.options.get(key) for key in
                                     ("pred_dir", "label_dir", "mask_dir")))
        summary = render_figures(
            loaded, out_dir, kind=kind, cases=cases, classes=picked, fmt=fmt.value,
            preset=chosen, max_cases=max_cases, absent=absent, dpi=dpi, norm=norm.value,
            gamma=gamma, cmap=cmap, band=band,
            worker=HereWorker() if can_fork_here() else None,  # dataset figure beside
        )
    except (ValueError, OSError) as error:
        fail(describe(error))
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
    if summary["class_selection"]:
        typer.echo(f"figures show {summary['class_selection']}; choose others with --classes")


def check_sizes(preset, *, font_size: float | None, width: float | None,
                dpi: int | None) -> None:
    """``ValueError`` naming the option unless the font size is in (0, 72] points, the width
    positive, the resolution in 10–1200 dpi and the image at most 20000 pixels wide."""
    if font_size is not None and not 0 < font_size <= FONT_SIZE_MAX:
        raise ValueError(f"--font-size must be in (0, {FONT_SIZE_MAX:g}] points, got {font_size:g}")
    if width is not None and not width > 0:
        raise ValueError(f"--width must be positive, got {width:g}")
    low, high = DPI_RANGE
    if dpi is not None and not low <= dpi <= high:
        raise ValueError(f"--dpi must be in [{low}, {high}], got {dpi}")
    resolution = dpi or preset.dpi
    inches = preset.figure_width(preset.max_columns)
    if resolution * inches > MAX_PIXELS:
        raise ValueError(
            f"a {inches:g} in wide figure at {resolution} dpi is {resolution * inches:.0f} pixels "
            f"wide (at most {MAX_PIXELS}); lower --dpi or --width")
