"""Parameter checks and messages shared by the ``glee`` command areas (light: imports only typer)."""

from __future__ import annotations

import typer


def probability(value: float | None) -> float | None:
    """A Typer callback for a probability or threshold flag. A min/max range lets NaN through to a
    misleading "<= 1" message; NaN fails this comparison and gets the real reason."""
    if value is not None and not 0.0 <= value <= 1.0:
        raise typer.BadParameter(f"must be a probability in [0, 1], not {value}")
    return value


def one_line(exc: Exception) -> str:
    """An error's reason as a ``glee`` command prints it. An OSError's own text carries its errno and
    quotes the path (``[Errno 2] No such file or directory: '/x'``); its parts read better."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename:
        return f"{exc.strerror}: {exc.filename}"
    return str(exc)
