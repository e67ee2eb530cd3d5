"""``python -m calibviz`` runs the command-line tool."""

from .cli import app

app(prog_name="calibviz")
