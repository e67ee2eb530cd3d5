"""``calibviz evaluate PRED_DIR LABEL_DIR``: score every case and write reports and figures."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..options import (
    ABSENT_POLICIES,
    ACTIVATIONS,
    BINNINGS,
    CLOSURES,
    CSV_STYLES,
    DICE_RULES,
    INPUT_FORMATS,
    REGION_PRESETS,
)
from ..viz.presets import FORMATS
from .common import choices, fail

Closure = choices("Closure", CLOSURES)
Binning = choices("Binning", BINNINGS)
InputFormat = choices("InputFormat", INPUT_FORMATS)
Absent = choices("Absent", ABSENT_POLICIES)
DiceRule = choices("DiceRule", DICE_RULES)
Activation = choices("Activation", ACTIVATIONS)
CsvStyle = choices("CsvStyle", CSV_STYLES)
RegionPreset = choices("RegionPreset", tuple(REGION_PRESETS))
FigureFormat = choices("FigureFormat", tuple(FORMATS))

EVALUATE_EXAMPLE = """
Example: calibviz evaluate preds/ labels/ --bins 20 --out results/

Writes per_image.csv, summary.csv, stats.npz, run.json, problems.csv and figures/ to --out.
"""


def evaluate(
    pred_dir: Annotated[Path, typer.Argument(help="Folder of probability maps (nnU-Net, "
                                             "MONAI, NIfTI, .npy/.npz).")],
    label_dir: Annotated[Path, typer.Argument(help="Folder of ground-truth label NIfTIs.")],
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("calibviz-results"),
    bins: Annotated[int, typer.Option(min=1, help="Number of equal-width bins.")] = 20,
    fine_bins: Annotated[int | None, typer.Option(
        min=1, help="Also keep statistics at this finer resolution (a multiple of --bins) "
        "in stats_fine.npz, for calibviz sweep.")] = None,
    closure: Annotated[Closure, typer.Option(help="Bin closure: right (e_k < p <= e_k+1, "
                                             "as the paper) or left.")] = "right",
    binning: Annotated[Binning, typer.Option(help="Hard bins or the paper's soft "
                                             "(linearly split) bins.")] = "hard",
    input_format: Annotated[InputFormat, typer.Option(help="What PRED_DIR holds; auto "
                                                      "detects it.")] = "auto",
    classes: Annotated[str | None, typer.Option(help="Channel names and label values, "
                                                "e.g. 'liver=1,tumour=2'.")] = None,
    regions: Annotated[str | None, typer.Option(help="Score regions, e.g. "
                                                "'WT=1,2,4;TC=1,4;ET=4'.")] = None,
    region_preset: Annotated[RegionPreset | None, typer.Option(
        help="Named label regions: " + ", ".join(REGION_PRESETS) + ".")] = None,
    include_background: Annotated[bool | None, typer.Option(
        "--include-background/--exclude-background",
        help="Score the background channel (default: excluded when the model has one).",
        show_default=False)] = None,
    absent: Annotated[Absent, typer.Option(help="Classes absent from an image's truth: "
                                           "include (scored), exclude (NaN) or drop-case (the "
                                           "image left out).")] = "include",
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
    scale: Annotated[str | None, typer.Option(help="Multiplier for integer-stored "
                                              "probabilities without scl_slope, e.g. "
                                              "1/255.")] = None,
    self_check: Annotated[bool, typer.Option(help="nnU-Net: the npz argmax must equal the "
                                             "segmentation next to it.")] = True,
    dice: Annotated[DiceRule, typer.Option(help="Dice's segmentation: auto (argmax for softmax "
                                           "maps, else threshold), argmax, or threshold "
                                           "(p >= 0.5 per channel, the paper).")] = "auto",
    activation: Annotated[Activation | None, typer.Option(
        help="The maps hold logits: apply softmax or sigmoid while reading.")] = None,
    bootstrap: Annotated[int, typer.Option(min=0, help="Bootstrap resamples of the images for "
                                           "the intervals in summary.csv (0: none).")] = 10000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    workers: Annotated[int | None, typer.Option(min=1, help="Parallel worker processes "
                                                "(default: one per core when it pays).")]
    = None,
    scheduler: Annotated[str | None, typer.Option(help="Evaluate on a Dask cluster: "
                                                  "tcp://host:8786, or local:N (N worker "
                                                  "processes here); needs calibviz[dask].")]
    = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run in --out, "
                                         "skipping finished cases.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace the results of an earlier run in "
                                            "--out (only calibviz's own files).")] = False,
    name: Annotated[str | None, typer.Option(help="Model name for the terminal, figure "
                                             "titles and reports.")] = None,
    strict: Annotated[bool, typer.Option(help="Exit 1 when a case is skipped; unpaired files "
                                         "are errors.")] = False,
    figures: Annotated[bool, typer.Option(help="Draw reliability diagrams and dataset "
                                          "histograms.")] = True,
    format: Annotated[FigureFormat, typer.Option("--format", help="Image format of the "
                                                 "figures written.")] = "png",
    max_case_figures: Annotated[int, typer.Option(min=0, help="Draw at most this many "
                                                  "per-image figures (the worst by ACE).")] = 12,
    csv_style: Annotated[CsvStyle, typer.Option(help="tidy, or also the reference "
                                                "implementation's CSV layout.")] = "tidy",
    quiet: Annotated[bool, typer.Option(help="No progress bar or summary table.")] = False,
    html_report: Annotated[bool, typer.Option("--report", help="Also write a self-contained "
                                              "HTML report, OUT/report.html.")] = False,
) -> None:
    """Score every case of PRED_DIR against LABEL_DIR and write reports and figures."""
    options = _eval_options(locals())
    report = run_with_progress(
        pred_dir, label_dir, out, options, quiet=quiet, workers=workers, resume=resume,
        overwrite=overwrite, name=name, absent=str(absent), csv_style=str(csv_style),
        n_bootstrap=bootstrap, seed=seed, fine_bins=fine_bins,
        figures=figures, scheduler=scheduler,
        figure_format=str(format), max_case_figures=max_case_figures,
    )
    if html_report and report.results.stats:
        from .report import make_report

        typer.echo(f"wrote {make_report(out, None)}")
    if not report.results.stats or strict and (report.n_skipped or report.results.errors):
        raise typer.Exit(1)


def _eval_options(given: dict):
    """:class:`EvalOptions` from the command's parameters (one line and exit 2 if bad)."""
    from ..options import EvalOptions

    renamed = {"bins": "n_bins", "input_format": "format", "region_preset": "preset"}
    fields = {renamed.get(k, k): v for k, v in given.items() if k != "format"}  # images
    fields = {k: (str(v) if hasattr(v, "value") else v) for k, v in fields.items()
              if k in EvalOptions.__dataclass_fields__}
    if fields.get("mask_dir") is not None:
        fields["mask_dir"] = str(fields["mask_dir"])
    try:
        return EvalOptions(**fields)
    except ValueError as error:
        fail(str(error))


def run_with_progress(pred_dir, label_dir, out, options, *, quiet: bool, **run_options):
    """:func:`calibviz.run.run_evaluation` with a progress bar and the closing summary;
    usage errors and Ctrl-C become one line and an exit status."""
    from ..run import UsageError, run_evaluation
    from .console import ProgressDisplay, print_summary

    display = ProgressDisplay(enabled=not quiet)
    try:
        with display:
            report = run_evaluation(pred_dir, label_dir, out, options,
                                    progress=display.update, **run_options)
    except UsageError as error:
        fail(str(error))
    except KeyboardInterrupt:
        typer.echo(
            f"\ninterrupted: finished cases are saved in {out}; "
            "run the same command with --resume to continue", err=True,
        )
        raise typer.Exit(130) from None
    print_summary(report, quiet=quiet)
    return report
