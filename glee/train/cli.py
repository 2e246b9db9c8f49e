"""``glee train`` (train, fine-tune or resume a GLEE) and ``glee train-export`` (checkpoint -> weights)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
    app.command("train-export")(export_command)


def train_command(
    config: Annotated[Path, typer.Argument(help="Training config JSON (e.g. configs/demo.json).")],
    data: Annotated[
        list[Path],
        typer.Option(
            help="COCO (+refs) or YouTube-VIS dataset: a JSON file or a directory with annotations.json. "
            "Images are read from images/ next to the JSON (video frames from frames/ or JPEGImages/), "
            "else from the JSON's own directory."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Run directory: cache, checkpoint, log, exported model.")],
    resume: Annotated[bool, typer.Option(help="Continue from OUT/checkpoint.pt if it exists.")] = False,
    init: Annotated[
        Path | None, typer.Option(help="Start from these weights (official .pth or converted directory).")
    ] = None,
    max_minutes: Annotated[
        float | None,
        typer.Option(min=0, help="Override the config's budget of minutes of training steps (0: no limit)."),
    ] = None,
    max_steps: Annotated[
        int | None, typer.Option(min=0, help="Override the config's step budget (0: no limit).")
    ] = None,
    export: Annotated[
        Path | None,
        typer.Option(help="Also write the final inference weights here (e.g. glee/weights/glee-demo)."),
    ] = None,
) -> None:
    """Train a GLEE from scratch or fine-tune it: Hungarian-matched focal / box / mask losses on every
    decoder layer, denoising queries, grounding, visual prompts and the track-embedding loss."""
    from glee.train.config import TrainConfig
    from glee.train.trainer import CHECKPOINT, EXPORT, Trainer

    if not resume and (out / CHECKPOINT).exists():
        raise typer.BadParameter(
            f"{out} already holds a run ({CHECKPOINT}): pass --resume to continue it, or another --out",
            param_hint="--out",
        )
    if export is not None and export.exists() and not export.is_dir():
        raise typer.BadParameter(f"{export} is a file; the export is a directory", param_hint="--export")
    cfg = TrainConfig.load(config)
    updates = {k: v for k, v in (("max_minutes", max_minutes), ("max_steps", max_steps)) if v is not None}
    cfg = TrainConfig.model_validate({**cfg.model_dump(), **updates})
    trainer = Trainer(cfg, data, out, init=init, resume=resume, echo=lambda s: typer.echo(s, err=True))
    start = trainer.step
    final = trainer.fit()
    if trainer.step == start:
        typer.echo(f"nothing to train: {out} is at step {trainer.step}, where its budget ends")
    else:
        minutes, loss = trainer.elapsed / 60, final.get("total", 0)
        typer.echo(f"trained {trainer.step} steps in {minutes:.1f} min, final loss {loss:.3f}")
    typer.echo(f"wrote {out / EXPORT}")
    if export is not None:
        trainer.export(export)
        typer.echo(f"wrote {export}")


def export_command(
    checkpoint: Annotated[Path, typer.Argument(help="A training checkpoint (RUN/checkpoint.pt).")],
    dst: Annotated[Path, typer.Argument(help="Output weights directory (config.json + model.safetensors).")],
) -> None:
    """Write the inference weights of a training checkpoint (in the config's export dtype)."""
    from glee.train.trainer import export_checkpoint

    typer.echo(f"wrote {export_checkpoint(checkpoint, dst)}")
