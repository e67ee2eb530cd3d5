"""What every command shares: one-line failures and choice types built from the library's
own tuples (so a new value in :mod:`calibviz.options` appears in the CLI by itself)."""

from __future__ import annotations

from enum import StrEnum

import typer


def choices(name: str, values: tuple[str, ...]) -> type[StrEnum]:
    """A ``StrEnum`` for Typer whose members are ``values`` (``per-class-files`` becomes the
    member ``per_class_files`` with that value)."""
    return StrEnum(name, [(value.replace("-", "_"), value) for value in values])


def fail(message: str, code: int = 2) -> None:
    """Print ``error: message`` on stderr and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)
