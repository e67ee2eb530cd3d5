"""``calibviz demo FOLDER``: write a synthetic dataset and evaluate it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import describe, fail


def demo(
    folder: Annotated[Path, typer.Argument(help="Where to write the demo data and results.")]
    = Path("calibviz-demo"),
    cases: Annotated[int, typer.Option(
        min=2, help="Number of synthetic cases (at most 1000).")] = 10,
    workers: Annotated[int | None, typer.Option(min=1, help="Parallel worker processes.")]
    = None,
    figures: Annotated[bool, typer.Option(help="Draw the figures.")] = True,
    quiet: Annotated[bool, typer.Option(help="No progress bar or summary table.")] = False,
) -> None:
    """Write a synthetic dataset (an nnU-Net v2 and a MONAI folder from two simulated
    models) and evaluate the over-confident nnU-Net model on it."""
    from ..demo import OVERCONFIDENT_TEMPERATURE, check_demo_cases, write_demo_dataset
    from ..loop import warm_up
    from ..options import EvalOptions
    from .evaluate import run_with_progress

    try:
        check_demo_cases(cases)
    except ValueError as error:
        fail(str(error))
    warm_up()  # the first run after installing compiles the kernel meanwhile
    try:
        data = write_demo_dataset(folder, n_cases=cases)
    except (ValueError, OSError) as error:
        fail(f"cannot write the demo data: {describe(error)}")
    typer.echo(f"demo data written to {folder}/:")
    typer.echo(f"  {data.labels}  ground-truth label maps")
    typer.echo(f"  {data.nnunet}  nnU-Net v2 folder, over-confident model "
               f"(temperature {OVERCONFIDENT_TEMPERATURE})")
    typer.echo(f"  {data.monai}  MONAI folder, calibrated model")
    run_with_progress(data.nnunet, data.labels, folder / "results", EvalOptions(), quiet=quiet,
                      workers=workers, figures=figures)
    results, other = folder / "results", folder / "results_monai"
    typer.echo(
        f"\nnext:\n  calibviz evaluate {data.monai} {data.labels} --postfix prob "
        f"--classes background=0,liver=1,tumour=2,vessel=3 --name calibrated --out {other}\n"
        f"  calibviz compare {results} {other} --names overconfident,calibrated\n"
        f"  calibviz report {results} --compare {other}"
    )
