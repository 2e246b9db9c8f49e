"""``glee eval``: score a model on a COCO-format image set or a YouTube-VIS video set.

The dataset kind is read from the JSON itself (a ``videos`` list means video), so one command covers
both; heavy modules (the model, pycocotools, trackeval) are imported inside the command.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from glee.cli_params import probability

_out = Console()
_err = Console(stderr=True)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)


def metric_rows(results: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(metric path, formatted value) for every leaf of a nested results dict, in order."""
    for key, value in results.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from metric_rows(value, f"{path}.")
        elif isinstance(value, float):
            yield path, f"{value:.4f}"
        else:
            yield path, "n/a" if value is None else str(value)


def results_table(title: str, results: Mapping[str, Any]) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for path, value in metric_rows(results):
        table.add_row(path, value)
    return table


def eval_command(
    dataset_json: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, help="COCO image JSON (with refs) or YouTube-VIS video JSON."
        ),
    ],
    images: Annotated[
        Path,
        typer.Option(exists=True, file_okay=False, help="Directory the JSON's file names are relative to."),
    ],
    model: Annotated[
        str | None, typer.Option(help="Converted weights directory (default: the embedded demo model).")
    ] = None,
    tasks: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated, of: detect, colour, rec, point, box, scribble (images); track, rvos, vos "
            "(videos). Default: all of the dataset's kind."
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Evaluate only the first N images / videos.")
    ] = None,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the visual-prompt sampling.")] = 0,
    score_threshold: Annotated[
        float | None,
        typer.Option(
            callback=probability,
            help="Videos: the sessions' score threshold (births, RVOS acquisition; default 0.3, RVOS 0).",
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="Torch device of the model (cpu, cuda, cuda:1...).")] = "cpu",
    out: Annotated[Path | None, typer.Option(help="Write the results as JSON here.")] = None,
) -> None:
    """Score a model on an image or video dataset: COCO AP, REC, prompt mIoU, MOTA/IDF1/HOTA, J&F."""
    from rich.progress import track

    from glee.data.readers import read_json
    from glee.evaluation.images import IMAGE_TASKS, evaluate_images
    from glee.evaluation.videos import VIDEO_TASKS, evaluate_videos
    from glee.model.predictor import require_device

    is_video = "videos" in read_json(dataset_json, "COCO or YouTube-VIS dataset")
    chosen = tuple(t.strip() for t in tasks.split(",") if t.strip()) if tasks is not None else None
    allowed = VIDEO_TASKS if is_video else IMAGE_TASKS
    if tasks is not None and not chosen:  # not "all": a mistake, such as a variable left empty
        raise typer.BadParameter(f"names no task; choose from {','.join(allowed)}", param_hint="--tasks")
    unknown = [t for t in chosen or () if t not in allowed]
    if unknown:
        kind = "a video" if is_video else "an image"
        message = (
            f"{', '.join(map(repr, unknown))} not among {','.join(allowed)}, the tasks of {kind} dataset"
        )
        raise typer.BadParameter(message, param_hint="--tasks")
    if score_threshold is not None and not is_video:
        raise typer.BadParameter(
            "applies to video datasets (image AP ranks every detection)", param_hint="--score-threshold"
        )
    try:
        require_device(device)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--device") from exc
    if out is not None:  # before the evaluation, which a bad path would otherwise throw away
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.is_dir():
            raise typer.BadParameter(f"{out} is a directory", param_hint="--out")

    def progress(items: Iterable[Any]) -> Iterable[Any]:
        return track(items, description="evaluating", console=_err, transient=True)

    if is_video:
        from glee.model.video_predictor import VideoPredictor

        results = evaluate_videos(
            VideoPredictor.load(model, device=device),
            dataset_json,
            images,
            chosen or VIDEO_TASKS,
            limit,
            progress=progress,
            score_threshold=score_threshold,
        )
    else:
        from glee.model import GleePredictor

        results = evaluate_images(
            GleePredictor.load(model, device=device),
            dataset_json,
            images,
            chosen or IMAGE_TASKS,
            limit,
            seed,
            progress=progress,
        )
    record = {"dataset": str(dataset_json), "model": model, **results}
    if score_threshold is not None:
        record["score_threshold"] = score_threshold
    _out.print(results_table(f"{dataset_json.name} ({model or 'embedded demo model'})", results))
    if out is not None:
        out.write_text(json.dumps(record, indent=2) + "\n")
        _out.print(f"wrote {out}", markup=False, highlight=False)
