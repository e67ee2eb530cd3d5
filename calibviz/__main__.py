"""``python -m calibviz`` runs the command-line tool."""

from .cli import main

main()
