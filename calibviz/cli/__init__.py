"""The ``calibviz`` command line: a Typer app with one module per command. Each command
parses options and calls a plain library function; every input problem prints one clear
line. Exit status 0 (done), 1 (cases skipped with ``--strict``, or nothing evaluated),
2 (usage error)."""

from __future__ import annotations

import sys
from importlib.machinery import ModuleSpec
from pathlib import Path
from typing import Annotated

import typer

from ..gctune import tune_this_process
from .compare import compare
from .demo import demo
from .evaluate import EVALUATE_EXAMPLE, evaluate
from .plot import plot
from .report import REPORT_EXAMPLE, report
from .sweep import sweep

app = typer.Typer(
    name="calibviz",
    help="Pixel-wise calibration of segmentation models: ECE, ACE, MCE, Brier, Dice and "
    "dataset reliability histograms.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"calibviz {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_print_version,
                                          is_eager=True, help="Print the version and exit.")]
    = False,
) -> None:
    """Pixel-wise calibration of segmentation models."""


@app.command("version")
def version_command() -> None:
    """Print the calibviz version."""
    _print_version(True)


app.command(epilog=EVALUATE_EXAMPLE)(evaluate)
app.command()(plot)
app.command()(compare)
app.command()(demo)
app.command()(sweep)
app.command(epilog=REPORT_EXAMPLE)(report)


def main() -> None:
    """The ``calibviz`` command (console script and ``python -m calibviz``): the Typer app in
    a process with the collector settings of :mod:`calibviz.gctune` (about 1 s less per run)
    whose spawned processes do not run the console script again."""
    tune_this_process()
    _spawn_without_script()
    app(prog_name="calibviz")


def _spawn_without_script() -> None:
    """Name the console script's main module ``calibviz.__main__`` for ``multiprocessing``:
    a spawned process (figures, pool workers) then skips running it, as it does under
    ``python -m calibviz``; it would otherwise import this whole command line (Typer and
    every command) to call nothing. A main module that has a name already (``python -m``)
    is left as it is."""
    script = sys.modules.get("__main__")
    if (script is not None and getattr(script, "__spec__", None) is None
            and Path(getattr(script, "__file__", None) or "-").stem in CONSOLE_SCRIPTS):
        script.__spec__ = ModuleSpec("calibviz.__main__", None)


#: The console script's file names (``pip`` writes ``calibviz``; on Windows
#: ``calibviz-script.py`` beside ``calibviz.exe``): another program's main module, which may
#: hold the targets of its own processes, is never renamed.
CONSOLE_SCRIPTS = ("calibviz", "calibviz-script")


__all__ = ["app", "main"]
