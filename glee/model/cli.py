"""``glee convert`` and ``glee weights {list,fetch}``: getting official checkpoints into the served format.

Heavy modules (torch, httpx) are imported inside the commands so that ``glee --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from glee.cli_params import one_line

_out = Console(soft_wrap=True)
_err = Console(stderr=True, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("convert")(convert_command)
    weights = typer.Typer(no_args_is_help=True, help="Official GLEE checkpoints: list and download.")
    weights.command("list")(list_command)
    weights.command("fetch")(fetch_command)
    app.add_typer(weights, name="weights")


def _fail(what: str, exc: Exception) -> NoReturn:
    """End the command with one red ``what:`` line and status 1. The reason is escaped: it may hold
    brackets (``tuple[int, int]``, a list) that rich would read as markup and drop."""
    _err.print(f"[red]{what}:[/red] {escape(one_line(exc))}", markup=True, highlight=False)
    raise typer.Exit(1) from exc


def convert_command(
    src: Annotated[Path, typer.Argument(help="Official .pth, a .safetensors file or a converted directory.")],
    dst: Annotated[Path, typer.Argument(help="Output directory (model.safetensors + config.json).")],
    variant: Annotated[
        str | None,
        typer.Option(
            help="Model variant the checkpoint must fit: lite (default), lite_stage1, demo. A converted "
            "directory is rebuilt from its own config.json; a variant given with it must be that config's."
        ),
    ] = None,
    dtype: Annotated[str, typer.Option(help="Stored dtype: float32, float16 or bfloat16.")] = "float32",
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Convert an official GLEE checkpoint after checking that every tensor fits the variant."""
    from glee.model.checkpoint import CheckpointError, convert

    try:
        report = convert(src, dst, variant=variant, dtype=dtype, progress=progress)
    except (CheckpointError, OSError, ValueError, NotImplementedError) as exc:
        _fail("conversion failed", exc)
    _out.print(report.summary(), markup=False, highlight=False)
    _out.print(f"wrote {dst}", markup=False, highlight=False)


def list_command() -> None:
    """List the known checkpoints, the variant each needs (only lite and lite_stage1 convert yet) and
    whether its sha256 is pinned."""
    from glee.model.weights import ZOO

    # Plain aligned lines rather than a rich table: stays greppable and never wraps in pipes.
    for entry in ZOO.values():
        sha = entry.sha256 or "not-pinned"
        typer.echo(f"{entry.name:<17} {entry.variant:<12} {entry.filename:<27} {sha:<10}  {entry.note}")


def fetch_command(
    name: Annotated[
        str, typer.Argument(help="Checkpoint name from `glee weights list` (or a file name with --url).")
    ],
    dest: Annotated[
        Path | None,
        typer.Option(
            help="Directory to store it in (default: $GLEE_WEIGHTS_DIR, else ~/.cache/glee/weights)."
        ),
    ] = None,
    url: Annotated[str | None, typer.Option(help="Download from this URL instead (a mirror).")] = None,
    sha256: Annotated[str | None, typer.Option(help="Expected sha256 (hex) of the file.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Download a checkpoint, resuming a partial download and verifying its sha256."""
    from glee.model.weights import FetchError, default_weights_dir, fetch

    try:
        path = fetch(name, dest or default_weights_dir(), url=url, expected_sha256=sha256, progress=progress)
    except (FetchError, OSError) as exc:  # OSError: a destination that cannot be created or written
        _fail("fetch failed", exc)
    sidecar = path.with_name(path.name + ".sha256")
    digest = sidecar.read_text().split()[0] if sidecar.is_file() else "unknown"
    _out.print(f"{path}\nsha256 {digest}", markup=False, highlight=False)
