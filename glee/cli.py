"""The ``glee`` command line: one Typer app; each area registers its own commands.

Registration imports only light modules (each area's ``cli`` module imports its heavy dependencies
inside the command functions), so ``glee --help`` stays fast.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help="glee-serve: GLEE behind an API.")

# Each module defines ``register(app: typer.Typer) -> None``.
_AREAS = (
    "glee.model.cli",
    "glee.data.cli",
    "glee.train.cli",
    "glee.evaluation.cli",
    "glee.service.cli",
)

for _name in _AREAS:
    try:
        _module = importlib.import_module(_name)
    except ModuleNotFoundError as exc:
        if exc.name != _name:
            raise
        continue
    _module.register(app)
