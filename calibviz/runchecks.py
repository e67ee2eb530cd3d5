"""The checks of an ``evaluate`` run before any case runs: options, output folder, inputs.

Every failure is a :class:`UsageError` (exit status 2 in the command line), raised before a
file is written.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
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
    if holds_run(out_dir) and not (resume or overwrite):  # said early; checked again below
        raise UsageError(_HOLDS_RUN.format(out_dir=out_dir))
    return cases, problems


_HOLDS_RUN = ("{out_dir} holds the results of another run; pass --overwrite to replace them "
              "(only calibviz's own files are removed) or --resume to continue an interrupted "
              "run")


@contextmanager
def claim_out(out_dir: Path, *, resume: bool, overwrite: bool) -> Iterator[None]:
    """Hold the output folder for one run (created if need be): a second run into it while
    this one writes is a :class:`UsageError`, even with ``--overwrite`` or ``--resume``
    (an exclusive ``flock`` on the folder, released when the run ends or its process dies;
    where the file system cannot lock, e.g. some network mounts, the folder is not guarded).
    Then the folder must hold no other run unless ``resume``; ``overwrite`` clears
    calibviz's own files."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        handle = os.open(out_dir, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as error:
        raise UsageError(f"cannot create {out_dir}: {error.strerror or error}") from None
    try:
        _lock(handle, out_dir)
        if holds_run(out_dir) and not (resume or overwrite):
            raise UsageError(_HOLDS_RUN.format(out_dir=out_dir))
        if overwrite:
            try:
                clear_outputs(out_dir, keep_partial=resume)
            except OSError as error:
                raise UsageError(f"cannot clear {out_dir}: {error.strerror or error}") from None
        yield
    finally:
        os.close(handle)


def _lock(handle: int, out_dir: Path) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: unguarded
        return
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise UsageError(f"another calibviz run is writing to {out_dir}; wait for it to "
                         "finish, or give another --out") from None
    except OSError:  # the file system cannot lock: unguarded
        return


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
