"""Parameter checks shared by the ``glee`` command areas (light: imports only typer)."""

from __future__ import annotations

import typer


def probability(value: float | None) -> float | None:
    """A Typer callback for a probability or threshold flag. A min/max range lets NaN through to a
    misleading "<= 1" message; NaN fails this comparison and gets the real reason."""
    if value is not None and not 0.0 <= value <= 1.0:
        raise typer.BadParameter(f"must be a probability in [0, 1], not {value}")
    return value
