"""``python -m glee`` runs the CLI."""

from glee.cli import app

app(prog_name="glee")
