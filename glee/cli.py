"""The ``glee`` command line: one Typer app; each area registers its own commands.

Registration imports only light modules (each area's ``cli`` module imports its heavy dependencies
inside the command functions), so ``glee --help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys

import typer

from glee.cli_params import one_line

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


def _user_error(exc: Exception) -> str | None:
    """The one-line reason of an error the user can fix (a missing or unwritable path, a file that is not
    what the command reads, an invalid config), else None. The error classes are imported here, once a
    command has failed, to keep ``glee --help`` free of torch."""
    from pydantic import ValidationError

    from glee.data.readers import FileFormatError
    from glee.model.checkpoint import CheckpointError
    from glee.service.schemas import error_message, located

    if isinstance(exc, ValidationError):
        fields = "; ".join(located(e["loc"], error_message(e)) for e in exc.errors())
        return f"invalid {exc.title}: {fields}"
    if isinstance(exc, OSError | FileFormatError | CheckpointError):
        return one_line(exc)
    return None


def main() -> None:
    """The ``glee`` entry point: a user's mistake ends with one ``error:`` line and exit status 1 instead
    of a traceback; anything else is a bug and keeps its traceback."""
    try:
        app(prog_name="glee")
    except Exception as exc:
        reason = _user_error(exc)
        if reason is None:
            raise
        typer.echo(f"error: {reason}", err=True)
        sys.exit(1)
