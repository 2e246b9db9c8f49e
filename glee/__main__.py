"""``python -m glee`` runs the CLI."""

from glee.cli import main

main()
