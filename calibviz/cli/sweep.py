"""``calibviz sweep RUN --bins 5,10,15,20,30,50,100``: every metric at every bin count from
one run's fine statistics (``stats.npz``), with no voxel read again.

Writes ``sweep.csv`` (``metric, class, bins, macro, micro``), ``equal_mass.csv`` (the pooled
equal-mass bin boundaries) and a figure of each metric against the number of bins.  The run's
bin count is the fine resolution: any ``B`` dividing it works (``evaluate --fine-bins 600``
makes 5, 10, 15, 20, 25, 30, 40, 50, 60, 75, 100, … possible).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..options import ABSENT_POLICIES, check_n_bins
from ..sweep import DEFAULT_SWEEP_BINS
from ..viz.presets import FORMATS
from .common import choices, describe, fail

ImageFormat = choices("SweepFormat", tuple(FORMATS))
Absent = choices("SweepAbsent", ABSENT_POLICIES)


def parse_bins(text: str) -> list[int]:
    """``"5,10,15"`` → ``[5, 10, 15]``; ``ValueError`` naming ``--bins`` otherwise."""
    items = [item.strip() for item in str(text).split(",") if item.strip()]
    try:
        values = [int(item) for item in items]
    except ValueError:
        raise ValueError(f"--bins: expected comma-separated positive integers, got {text!r}"
                         ) from None
    if not values or min(values) < 1:
        raise ValueError(f"--bins: expected comma-separated positive integers, got {text!r}")
    for value in values:
        check_n_bins(value, "--bins")
    return list(dict.fromkeys(values))


def sweep(
    run: Annotated[Path, typer.Argument(help="Run folder or its stats.npz (calibviz evaluate; "
                                        "ideally with --fine-bins 600).")],
    bins: Annotated[str | None, typer.Option(
        "--bins", help="Comma-separated bin counts, each dividing the run's bin count "
        f"(default: those of {','.join(map(str, DEFAULT_SWEEP_BINS))} that divide it).",
        show_default=False)] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Output folder (default: sweep/ beside the stats.npz).")] = None,
    fmt: Annotated[ImageFormat, typer.Option("--format", "-f", help="Figure file format.")]
    = ImageFormat.png,
    absent: Annotated[Absent | None, typer.Option(
        "--absent", help="Classes absent from an image (default: the run's policy).")] = None,
) -> None:
    """Metrics against the number of bins (and on equal-mass bins) from one run's sums."""
    from ..report import write_csv
    from ..store import load_finest_results
    from ..sweep import (
        check_divides,
        default_bins,
        equal_mass_table,
        fine_bins_hint,
        sweep_figure,
        sweep_table,
    )
    from ..viz.figures import save_figure

    try:
        wanted = parse_bins(bins) if bins is not None else None
        results = load_finest_results(run)
        if not results.stats:
            raise ValueError(f"{run} holds no evaluated case")
        first = results.stats[0]
        check_divides(first.n_bins, 1, first.binning)  # hard binning
        if wanted is None:
            wanted, left_out = default_bins(first.n_bins)
            if left_out:
                typer.echo(f"note: left out {', '.join(map(str, left_out))} bins: they do not "
                           f"divide the run's {first.n_bins} bins "
                           f"({fine_bins_hint(first.n_bins, left_out)})", err=True)
        for b in wanted:
            check_divides(first.n_bins, b, first.binning)
        policy = absent.value if absent is not None else results.options.get("absent", "include")
        table = sweep_table(results.stats, wanted, absent=policy)
        masses = equal_mass_table(results.stats, wanted, absent=policy)
        base = run if run.is_dir() else run.parent
        out_dir = out if out is not None else base / "sweep"
        written = [write_csv(out_dir / "sweep.csv", table),
                   write_csv(out_dir / "equal_mass.csv", masses),
                   save_figure(sweep_figure(table), out_dir / f"sweep.{fmt.value}")]
    except (ValueError, OSError) as error:
        fail(describe(error))
    for path in written:
        typer.echo(f"wrote {path}")
