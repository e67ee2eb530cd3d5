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
    MAX_BINS,
    MAX_RESAMPLES,
    REGION_PRESETS,
    check_label_value,
    check_n_bins,
    check_resamples,
    check_seed,
)
from ..viz.presets import FORMATS
from .common import checked, choices, fail

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


#: One line of help per option (``calibviz evaluate --help``).
HELP = {
    "pred_dir": "Folder of probability maps (nnU-Net, MONAI, NIfTI, .npy/.npz).",
    "label_dir": "Folder of ground-truth label NIfTIs.",
    "out": "Output folder.",
    "bins": f"Number of equal-width bins (at most {MAX_BINS}).",
    "fine_bins": "Also keep statistics at this finer resolution (a multiple of --bins, at most "
                 f"{MAX_BINS}) in stats_fine.npz, for calibviz sweep.",
    "closure": "Bin closure: right (e_k < p <= e_k+1, as the paper) or left.",
    "binning": "Hard bins or the paper's soft (linearly split) bins.",
    "input_format": "What PRED_DIR holds; auto detects it.",
    "classes": "Channel names and label values, e.g. 'liver=1,tumour=2'.",
    "regions": "Score regions, e.g. 'WT=1,2,4;TC=1,4;ET=4'.",
    "region_preset": "Named label regions: " + ", ".join(REGION_PRESETS) + ".",
    "include_background": "Score the background channel (default: excluded when the model "
                          "has one).",
    "absent": "Classes absent from an image's truth: include (scored), exclude (that "
              "image-class pair NaN for every metric, Dice too) or drop-case (the image "
              "left out).",
    "mask_dir": "Folder of 0/1 masks paired by case id; voxels with 0 are ignored.",
    "ignore_label": "Label value whose voxels are ignored.",
    "layout": "Axis order of .npy/.npz arrays, e.g. cijk or ckji.",
    "npz_key": "Array name inside .npz files.",
    "class_pattern": "One file per class: pattern with {case} and {class}.",
    "pattern": "Glob for prediction files (relative to PRED_DIR).",
    "label_pattern": "Glob for label files (relative to LABEL_DIR).",
    "postfix": "File-name postfix to strip, e.g. MONAI's seg or prob.",
    "scale": "Multiplier for integer-stored probabilities (NIfTI without scl_slope, or "
             ".npy/.npz arrays), e.g. 1/255.",
    "self_check": "nnU-Net: the npz argmax must equal the segmentation next to it.",
    "dice": "Dice's segmentation: auto (argmax for softmax maps, else threshold), argmax, or "
            "threshold (p >= 0.5 per channel, the paper).",
    "activation": "The maps hold logits: apply softmax or sigmoid while reading (never for "
                  "nnU-Net's npz, which hold probabilities).",
    "roi": "Also score each class on its region of interest only, written to "
           "OUT/roi-<spec>/: band:MM (voxels within MM mm of the boundary of the truth or "
           "of the prediction) or box:MM (their bounding box grown by MM mm).",
    "top_label": "Softmax maps: add a top-label row (confidence the largest probability, "
                 "outcome argmax == label), as classification papers report.",
    "bootstrap": "Bootstrap resamples of the images for the intervals in summary.csv "
                 f"(0: none; at most {MAX_RESAMPLES}).",
    "seed": "Seed of the bootstrap (an integer >= 0).",
    "workers": "Parallel worker processes (default: one per two cores, each evaluating "
               "two cases at a time, when the run is long enough to share).",
    "scheduler": "Evaluate on a Dask cluster: tcp://host:8786, or local:N (N worker "
                 "processes here); needs calibviz[dask].",
    "resume": "Continue an interrupted run in --out, skipping finished cases.",
    "overwrite": "Replace the results of an earlier run in --out (only calibviz's own files).",
    "name": "Model name for the terminal, figure titles and reports.",
    "strict": "Exit 1 when a case is skipped; unpaired files are errors.",
    "figures": "Draw reliability diagrams and dataset histograms.",
    "format": "Image format of the figures written.",
    "max_case_figures": "Draw at most this many per-image figures (the worst by ACE).",
    "csv_style": "tidy, or also the reference implementation's CSV layout.",
    "quiet": "No progress bar or summary table.",
    "html_report": "Also write a self-contained HTML report, OUT/report.html.",
}


def _opt(name: str, *flags: str, **options):
    return typer.Option(*flags, help=HELP[name], **options)


def evaluate(
    pred_dir: Annotated[Path, typer.Argument(help=HELP["pred_dir"])],
    label_dir: Annotated[Path, typer.Argument(help=HELP["label_dir"])],
    out: Annotated[Path, _opt("out")] = Path("calibviz-results"),
    bins: Annotated[int, _opt("bins", callback=checked(check_n_bins))] = 20,
    fine_bins: Annotated[int | None, _opt("fine_bins", callback=checked(check_n_bins))] = None,
    closure: Annotated[Closure, _opt("closure")] = "right",
    binning: Annotated[Binning, _opt("binning")] = "hard",
    input_format: Annotated[InputFormat, _opt("input_format")] = "auto",
    classes: Annotated[str | None, _opt("classes")] = None,
    regions: Annotated[str | None, _opt("regions")] = None,
    region_preset: Annotated[RegionPreset | None, _opt("region_preset")] = None,
    include_background: Annotated[bool | None, _opt(
        "include_background", "--include-background/--exclude-background",
        show_default=False)] = None,
    absent: Annotated[Absent, _opt("absent")] = "include",
    mask_dir: Annotated[Path | None, _opt("mask_dir")] = None,
    ignore_label: Annotated[int | None, _opt("ignore_label",
                                             callback=checked(check_label_value))] = None,
    layout: Annotated[str | None, _opt("layout")] = None,
    npz_key: Annotated[str | None, _opt("npz_key")] = None,
    class_pattern: Annotated[str | None, _opt("class_pattern")] = None,
    pattern: Annotated[str | None, _opt("pattern")] = None,
    label_pattern: Annotated[str | None, _opt("label_pattern")] = None,
    postfix: Annotated[str | None, _opt("postfix")] = None,
    scale: Annotated[str | None, _opt("scale")] = None,
    self_check: Annotated[bool, _opt("self_check")] = True,
    dice: Annotated[DiceRule, _opt("dice")] = "auto",
    activation: Annotated[Activation | None, _opt("activation")] = None,
    roi: Annotated[str | None, _opt("roi")] = None,
    top_label: Annotated[bool, _opt("top_label")] = False,
    bootstrap: Annotated[int, _opt("bootstrap", callback=checked(check_resamples))] = 10000,
    seed: Annotated[int, _opt("seed", callback=checked(check_seed))] = 0,
    workers: Annotated[int | None, _opt("workers", min=1)] = None,
    scheduler: Annotated[str | None, _opt("scheduler")] = None,
    resume: Annotated[bool, _opt("resume")] = False,
    overwrite: Annotated[bool, _opt("overwrite")] = False,
    name: Annotated[str | None, _opt("name")] = None,
    strict: Annotated[bool, _opt("strict")] = False,
    figures: Annotated[bool, _opt("figures")] = True,
    format: Annotated[FigureFormat, _opt("format", "--format")] = "png",
    max_case_figures: Annotated[int, _opt("max_case_figures", min=0)] = 12,
    csv_style: Annotated[CsvStyle, _opt("csv_style")] = "tidy",
    quiet: Annotated[bool, _opt("quiet")] = False,
    html_report: Annotated[bool, _opt("html_report", "--report")] = False,
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
    elif html_report:
        typer.echo("no report.html: no case was evaluated (see problems.csv)")
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
