"""The checks of an ``evaluate`` run before any case runs: options, output folder, inputs.

Every failure is a :class:`UsageError` (exit status 2 in the command line), raised before a
file is written.
"""

from __future__ import annotations

import os
from pathlib import Path

from .io import Case, Problem, discover_cases
from .io.activation import activation_refusal
from .loop import check_processes
from .options import (
    ABSENT_POLICIES,
    CSV_STYLES,
    check_choice,
    check_figure_bins,
    check_resamples,
    check_seed,
)
from .store import clear_outputs, holds_run


class UsageError(ValueError):
    """A problem with the command's arguments or output folder (exit status 2)."""


def check_run(pred_dir, label_dir, out_dir, options, *, workers, resume, overwrite, absent,
              csv_style, figures, n_bootstrap, seed) -> tuple[list[Case], list[Problem]]:
    """Every usage check of a run, before any case runs; returns the paired cases."""
    try:
        check_choice("--absent", absent, ABSENT_POLICIES)
        check_choice("--csv-style", csv_style, CSV_STYLES)
        if workers is not None and workers < 1:
            raise ValueError(f"--workers must be at least 1, got {workers}")
        if workers is not None:
            check_processes(workers, f"--workers {workers}")
        check_resamples(n_bootstrap, "--bootstrap")
        check_seed(seed, "--seed")
        if figures:
            check_figure_bins(options.n_bins, hint="use fewer bins or pass --no-figures")
        check_out_outside(out_dir, pred_dir, label_dir, options.mask_dir)
        cases, problems = discover_cases(pred_dir, label_dir, options)
        for case in cases:
            if why := activation_refusal(options.activation, case.format):
                raise ValueError(why)
    except ValueError as error:
        raise UsageError(str(error)) from None
    for parent in (out_dir, *out_dir.parents):
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"output path {out_dir}: {parent} exists and is not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise UsageError(f"cannot write to {out_dir}: {parent} is not writable")
            break
    if holds_run(out_dir) and not (resume or overwrite):
        raise UsageError(f"{out_dir} holds the results of another run; pass --overwrite to "
                         "replace them (only calibviz's own files are removed) or --resume "
                         "to continue an interrupted run")
    if overwrite:
        try:
            clear_outputs(out_dir, keep_partial=resume)
        except OSError as error:
            raise UsageError(f"cannot clear {out_dir}: {error.strerror or error}") from None
    return cases, problems


def check_out_outside(out_dir: Path, pred_dir, label_dir, mask_dir) -> None:
    """The output folder must not be, or lie inside, an input folder (symbolic links
    resolved; ``None``: no such folder): the next run would list calibviz's own files as
    cases. ``ValueError`` naming both."""
    out = Path(os.path.realpath(out_dir))  # a looping link: as far as it resolves
    for what, folder in (("prediction", pred_dir), ("label", label_dir), ("mask", mask_dir)):
        if folder is None:
            continue
        inside = Path(os.path.realpath(folder))
        if out == inside or inside in out.parents:
            where = "is" if out == inside else "lies inside"
            raise ValueError(
                f"--out {out_dir} {where} the {what} folder {folder}: calibviz "
                "would read its own outputs as input files; choose an output folder outside "
                "the prediction, label and mask folders")
