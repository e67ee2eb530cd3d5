"""The ``calibviz`` command line: thin Typer commands that parse options and call the
library. Every input problem prints one clear line; exit status 0 (done), 1 (cases
skipped with ``--strict``, or nothing evaluated), 2 (usage error)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from .cli_plot import plot

app = typer.Typer(
    name="calibviz",
    help="Pixel-wise calibration of segmentation models: ECE, ACE, MCE, Brier, Dice and "
    "dataset reliability histograms.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class Closure(StrEnum):
    right = "right"
    left = "left"


class Binning(StrEnum):
    hard = "hard"
    soft = "soft"


class Format(StrEnum):
    auto = "auto"
    nnunet = "nnunet"
    nifti = "nifti"
    npy = "npy"
    per_class_files = "per-class-files"


class Absent(StrEnum):
    include = "include"
    exclude = "exclude"


class CsvStyle(StrEnum):
    tidy = "tidy"
    reference = "reference"


class Preset(StrEnum):
    brats2021 = "brats2021"
    brats2023 = "brats2023"
    kits23 = "kits23"


EVALUATE_EXAMPLE = """
Example: calibviz evaluate preds/ labels/ --bins 20 --out results/

Writes per_image.csv, summary.csv, stats.npz, run.json, problems.csv and figures/ to --out.
"""


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@app.command(epilog=EVALUATE_EXAMPLE)
def evaluate(
    pred_dir: Annotated[Path, typer.Argument(help="Folder of probability maps (nnU-Net, "
                                             "MONAI, NIfTI, .npy/.npz).")],
    label_dir: Annotated[Path, typer.Argument(help="Folder of ground-truth label NIfTIs.")],
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("calibviz-results"),
    bins: Annotated[int, typer.Option(min=1, help="Number of equal-width bins.")] = 20,
    closure: Annotated[Closure, typer.Option(help="Bin closure: right (e_k < p <= e_k+1, "
                                             "as the paper) or left.")] = Closure.right,
    binning: Annotated[Binning, typer.Option(help="Hard bins or the paper's soft "
                                             "(linearly split) bins.")] = Binning.hard,
    format: Annotated[Format, typer.Option("--format", help="Prediction format; auto "
                                           "detects it.")] = Format.auto,
    classes: Annotated[str | None, typer.Option(help="Channel names and label values, "
                                                "e.g. 'liver=1,tumour=2'.")] = None,
    regions: Annotated[str | None, typer.Option(help="Score regions, e.g. "
                                                "'WT=1,2,4;TC=1,4;ET=4'.")] = None,
    preset: Annotated[Preset | None, typer.Option(help="Named regions: brats2021, "
                                                  "brats2023 or kits23.")] = None,
    include_background: Annotated[bool | None, typer.Option(
        "--include-background/--exclude-background",
        help="Score the background channel (default: excluded when the model has one).",
        show_default=False)] = None,
    absent: Annotated[Absent, typer.Option(help="Classes absent from an image's truth: "
                                           "include (scored) or exclude (NaN).")] = Absent.include,
    mask_dir: Annotated[Path | None, typer.Option(help="Folder of masks paired by case id; "
                                                  "voxels outside are ignored.")] = None,
    ignore_label: Annotated[int | None, typer.Option(help="Label value whose voxels are "
                                                     "ignored.")] = None,
    layout: Annotated[str | None, typer.Option(help="Axis order of .npy/.npz arrays, e.g. "
                                               "cijk or ckji.")] = None,
    npz_key: Annotated[str | None, typer.Option(help="Array name inside .npz files.")] = None,
    class_pattern: Annotated[str | None, typer.Option(help="One file per class: pattern with "
                                                      "{case} and {class}.")] = None,
    pattern: Annotated[str | None, typer.Option(help="Glob for prediction files (relative "
                                                "to PRED_DIR).")] = None,
    label_pattern: Annotated[str | None, typer.Option(help="Glob for label files (relative "
                                                      "to LABEL_DIR).")] = None,
    postfix: Annotated[str | None, typer.Option(help="File-name postfix to strip, e.g. "
                                                "MONAI's seg or prob.")] = None,
    scale: Annotated[float | None, typer.Option(help="Multiplier for integer-stored "
                                                "probabilities without scl_slope, e.g. "
                                                "0.00392156862745098 (1/255).")] = None,
    self_check: Annotated[bool, typer.Option(help="nnU-Net: the npz argmax must equal the "
                                             "segmentation next to it.")] = True,
    workers: Annotated[int | None, typer.Option(min=1, help="Parallel worker processes "
                                                "(default: one per core when it pays).")]
    = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run in --out, "
                                         "skipping finished cases.")] = False,
    strict: Annotated[bool, typer.Option(help="Exit 1 when a case is skipped; unpaired files "
                                         "are errors.")] = False,
    figures: Annotated[bool, typer.Option(help="Draw reliability diagrams and dataset "
                                          "histograms.")] = True,
    figure_format: Annotated[str, typer.Option(help="Figure format: png, pdf or svg.")] = "png",
    max_case_figures: Annotated[int, typer.Option(min=0, help="Draw at most this many "
                                                  "per-image figures (the worst by ACE).")] = 50,
    csv_style: Annotated[CsvStyle, typer.Option(help="tidy, or also the reference "
                                                "implementation's CSV layout.")] = CsvStyle.tidy,
    quiet: Annotated[bool, typer.Option(help="No progress bar or summary table.")] = False,
) -> None:
    """Score every case of PRED_DIR against LABEL_DIR and write reports and figures."""
    from .io import EvalOptions
    from .pipeline import UsageError, run_evaluation

    try:
        options = EvalOptions(
            n_bins=bins, closure=closure.value, binning=binning.value, format=format.value,
            classes=classes, regions=regions, preset=preset.value if preset else None,
            include_background=include_background, ignore_label=ignore_label,
            mask_dir=str(mask_dir) if mask_dir else None, layout=layout, npz_key=npz_key,
            class_pattern=class_pattern, pattern=pattern, label_pattern=label_pattern,
            postfix=postfix, self_check=self_check, strict=strict, scale=scale,
        )
    except ValueError as error:
        _fail(str(error))
    if figure_format not in ("png", "pdf", "svg"):
        _fail(f"--figure-format must be png, pdf or svg, got {figure_format!r}")

    from .console import ProgressDisplay, print_summary

    display = ProgressDisplay(enabled=not quiet)
    try:
        with display:
            report = run_evaluation(
                pred_dir, label_dir, out, options, workers=workers, resume=resume,
                absent=absent.value, csv_style=csv_style.value, figures=figures,
                figure_format=figure_format, max_case_figures=max_case_figures,
                progress=display.update,
            )
    except UsageError as error:
        _fail(str(error))
    except KeyboardInterrupt:
        typer.echo(
            f"\ninterrupted: finished cases are saved in {out}; "
            "run the same command with --resume to continue", err=True,
        )
        raise typer.Exit(130) from None
    print_summary(report, quiet=quiet)
    if not report.results.stats:
        raise typer.Exit(1)
    if strict and report.n_skipped:
        raise typer.Exit(1)


@app.command()
def demo(
    folder: Annotated[Path, typer.Argument(help="Where to write the demo data and results.")]
    = Path("calibviz-demo"),
    cases: Annotated[int, typer.Option(min=2, help="Number of synthetic cases.")] = 10,
    workers: Annotated[int | None, typer.Option(min=1, help="Parallel worker processes.")]
    = None,
    figures: Annotated[bool, typer.Option(help="Draw the figures.")] = True,
    quiet: Annotated[bool, typer.Option(help="No progress bar or summary table.")] = False,
) -> None:
    """Write a synthetic dataset (an nnU-Net v2 and a MONAI folder from two simulated
    models) and evaluate the over-confident nnU-Net model on it."""
    from .console import ProgressDisplay, print_summary
    from .demo import OVERCONFIDENT_TEMPERATURE, write_demo_dataset
    from .io import EvalOptions
    from .pipeline import UsageError, run_evaluation

    try:
        data = write_demo_dataset(folder, n_cases=cases)
    except ValueError as error:
        _fail(str(error))
    typer.echo(f"demo data written to {folder}/:")
    typer.echo(f"  {data.labels}  ground-truth label maps")
    typer.echo(f"  {data.nnunet}  nnU-Net v2 folder, over-confident model "
               f"(temperature {OVERCONFIDENT_TEMPERATURE})")
    typer.echo(f"  {data.monai}  MONAI folder, calibrated model")
    out = folder / "results"
    display = ProgressDisplay(enabled=not quiet)
    try:
        with display:
            report = run_evaluation(
                data.nnunet, data.labels, out, EvalOptions(), workers=workers,
                figures=figures, progress=display.update,
            )
    except UsageError as error:
        _fail(str(error))
    print_summary(report, quiet=quiet)
    typer.echo(
        f"\nnext: calibviz evaluate {data.monai} {data.labels} --postfix prob "
        f"--classes background=0,liver=1,tumour=2,vessel=3 --out {folder / 'results_monai'}"
    )


@app.command()
def version() -> None:
    """Print the calibviz version."""
    from . import __version__

    typer.echo(__version__)


app.command("plot")(plot)


def main() -> None:  # pragma: no cover - console entry point
    app(prog_name="calibviz")
