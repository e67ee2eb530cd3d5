"""``calibviz compare BASE OTHER [OTHER …]``: is a model better calibrated than the baseline,
by how much, and how sure — paired statistics and bootstrap intervals."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..options import check_resamples, check_seed
from ..viz.presets import FORMATS
from .common import checked, choices, describe, fail, printable

ImageFormat = choices("ImageFormat", tuple(FORMATS))
#: The metrics of the terminal table, in order.
HEADLINE = ("ace", "ece", "mce", "brier", "dice")


def compare(
    base: Annotated[Path, typer.Argument(help="The baseline's results folder (a calibviz run "
                                         "or the reference layout).")],
    others: Annotated[list[Path] | None, typer.Argument(
        help="The results folders of the models compared with the baseline.",
        show_default=False)] = None,
    names: Annotated[str | None, typer.Option(help="Comma-separated model names, baseline "
                                              "first (default: the folder names).")] = None,
    out: Annotated[Path | None, typer.Option(help="Folder for comparison.csv and the "
                                             "figure (default: print only).")] = None,
    bootstrap: Annotated[int, typer.Option(
        callback=checked(check_resamples), help="Bootstrap resamples of the paired images "
        "for the intervals.")] = 10000,
    seed: Annotated[int, typer.Option(callback=checked(check_seed),
                                      help="Seed of the bootstrap.")] = 0,
    format: Annotated[ImageFormat, typer.Option("--format", help="Image format of the "
                                                "figure.")] = "png",
    figures: Annotated[bool, typer.Option(help="Draw the comparison figure.")] = True,
    quiet: Annotated[bool, typer.Option(help="Print nothing but errors.")] = False,
) -> None:
    """Compare OTHER models with the BASE model image by image: mean difference with its
    bootstrap interval, paired t-test (the paper's) and Wilcoxon signed-rank test with Holm's
    correction, the paper's percentage change, and micro differences."""
    from ..comparison import compare_runs

    if not others:
        fail(f"compare needs at least two results folders (the baseline {base} and a model "
             "to compare with it)")
    labels = None
    if names is not None:
        labels = [n.strip() for n in names.split(",")]
        if len(labels) != 1 + len(others) or not all(labels):
            fail(f"--names needs {1 + len(others)} names (the baseline first), got {names!r}")
    try:
        comparison = compare_runs(base, *others, names=labels, n_bootstrap=bootstrap,
                                  seed=seed)
    except (ValueError, OSError) as error:
        fail(describe(error))
    written = _write(comparison, out, str(format), figures) if out is not None else []
    if not quiet:
        _print(comparison, written)


def _write(comparison, out: Path, fmt: str, figures: bool) -> list[Path]:
    """``comparison.csv``, ``comparison_micro.csv``, ``unpaired.csv``, the notes
    (``comparison_notes.txt``, when there are any) and the figures."""
    from ..report import write_csv
    from ..store import write_atomic

    try:
        files = [write_csv(out / "comparison.csv", comparison.table)]
        if len(comparison.micro):
            files.append(write_csv(out / "comparison_micro.csv", comparison.micro))
        files.append(write_csv(out / "unpaired.csv", comparison.unpaired))
        if comparison.notes:
            files.append(write_atomic(out / "comparison_notes.txt",
                                      "".join(f"{note}\n" for note in comparison.notes)))
        if figures:
            files += _draw(comparison, out, fmt)
    except OSError as error:
        fail(f"cannot write to {out}: {describe(error)}")
    return files


def _draw(comparison, out: Path, fmt: str) -> list[Path]:
    from ..viz import save_figure
    from ..viz.comparison import plot_comparison
    from ..viz.render import safe_name

    files = []
    for model in comparison.models:
        name = ("comparison" if len(comparison.models) == 1
                else f"comparison_{safe_name(model)}")
        files.append(save_figure(plot_comparison(comparison, model=model),
                                 out / f"{name}.{fmt}"))
    return files


def _interval(row) -> str:
    """``[low, high]``, or why there is none (fewer than two images, discarded)."""
    if row["ci_low"] == row["ci_low"] and row["ci_high"] == row["ci_high"]:  # not NaN
        return f"[{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]"
    note = str(row.get("ci_note") or "")
    return "(discarded)" if note.startswith("discarded") else "(no interval)"


def _print(comparison, written: list[Path]) -> None:
    """The class-mean table per model and metric, a verdict per metric, unpaired cases."""
    from rich.console import Console, Group
    from rich.text import Text

    from ..comparison import verdict
    from ..run_values import DISPLAY_NAMES
    from .console import fitted_tables

    console = Console(highlight=False)
    table = comparison.table
    mean_rows = table[table["class"] == "mean"]
    rows = mean_rows[mean_rows["metric"].isin(HEADLINE)]
    cells = [[Text(printable(row["model"])), DISPLAY_NAMES.get(row["metric"], row["metric"]),
              f"{row['mean_baseline']:.4f} → {row['mean_model']:.4f}",
              f"{row['mean_diff']:+.4f}\n{_interval(row)}",
              f"{row['wilcoxon_p_holm']:.2g}", str(int(row["n"]))]
             for _, row in rows.iterrows()]
    title = Text(printable(f"Per-image class mean against {comparison.baseline.name}: mean "
                           "difference with its 95 % bootstrap interval, Wilcoxon p (Holm)"))
    headers = ["model", "metric", "baseline → model", "difference\n[95 % CI]", "p", "n"]
    console.print(Group(*fitted_tables(title, headers, cells, width=console.width, keys=2)))
    for _, row in rows.iterrows():
        console.print(Text(printable(f"{row['model']}: {verdict(row)}")))
    for note in comparison.notes:
        console.print(Text("note: ", style="yellow") + Text(printable(note)))
    unpaired = comparison.unpaired
    if len(unpaired):
        shown = ", ".join(map(printable, unpaired["case"].head(8)))
        more = f" and {len(unpaired) - 8} more" if len(unpaired) > 8 else ""
        console.print(Text(f"{len(unpaired)} cases are in only one run and were left out: "
                           f"{shown}{more}"))
    for path in written:
        console.print(Text(printable(f"wrote {path}")))
