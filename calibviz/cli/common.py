"""What every command shares: one-line failures and choice types built from the library's
own tuples (so a new value in :mod:`calibviz.options` appears in the CLI by itself)."""

from __future__ import annotations

from enum import StrEnum

import typer


def choices(name: str, values: tuple[str, ...]) -> type[StrEnum]:
    """A ``StrEnum`` for Typer whose members are ``values`` (``per-class-files`` becomes the
    member ``per_class_files`` with that value)."""
    return StrEnum(name, [(value.replace("-", "_"), value) for value in values])


def printable(text: str) -> str:
    """``text`` with control characters (ANSI escapes, newlines, …) made visible, so a file
    name can neither restyle the terminal nor split a one-line message."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in str(text))


def describe(error: Exception) -> str:
    """One line for ``error``: an ``OSError`` as ``PATH: what the system said`` (no errno),
    anything else as its message."""
    if isinstance(error, OSError) and error.strerror:
        return f"{error.filename}: {error.strerror}" if error.filename else error.strerror
    return str(error)


def fail(message: str, code: int = 2) -> None:
    """Print ``error: message`` on stderr (one line) and exit with ``code``."""
    typer.echo(f"error: {printable(message)}", err=True)
    raise typer.Exit(code)


def checked(check):
    """A Typer option callback running ``check(value, name)`` from :mod:`calibviz.options`
    (None passes): its ``ValueError`` becomes a usage error naming the option (exit 2,
    before the command runs), e.g. ``Invalid value for '--seed': must be from 0 to …``."""

    def callback(ctx: typer.Context, param: typer.CallbackParam, value):
        if value is None or ctx.resilient_parsing:
            return value
        name = param.opts[0]
        try:
            return check(value, name)
        except ValueError as error:
            message = str(error)
            message = message[len(name):].lstrip(" :") if message.startswith(name) else message
            raise typer.BadParameter(message, ctx=ctx, param=param) from None

    return callback
