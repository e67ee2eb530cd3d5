"""The ``calibviz`` command line: a Typer app with one module per command. Each command
parses options and calls a plain library function; every input problem prints one clear
line. Exit status 0 (done), 1 (cases skipped with ``--strict``, or nothing evaluated),
2 (usage error)."""

from __future__ import annotations

import typer

from ..cli_plot import plot
from .demo import demo
from .evaluate import EVALUATE_EXAMPLE, evaluate

app = typer.Typer(
    name="calibviz",
    help="Pixel-wise calibration of segmentation models: ECE, ACE, MCE, Brier, Dice and "
    "dataset reliability histograms.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.command()
def version() -> None:
    """Print the calibviz version."""
    from .. import __version__

    typer.echo(__version__)


app.command(epilog=EVALUATE_EXAMPLE)(evaluate)
app.command()(plot)
app.command()(demo)

__all__ = ["app"]
