"""``glee data``: generate synthetic shapes datasets.

Heavy modules (numpy, scipy, PIL, pycocotools) are imported inside the commands so ``glee --help``
stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from glee.cli_params import probability
from glee.data.spec import BOX_SIDE

OutDir = Annotated[Path, typer.Argument(help="Output directory (created if missing).")]
Num = Annotated[int, typer.Option("--num", "-n", min=1, help="How many items to generate.")]
Seed = Annotated[
    int, typer.Option("--seed", "-s", min=0, help="Dataset seed; the same seed gives identical files.")
]
Workers = Annotated[int, typer.Option("--workers", "-w", min=1, help="Worker processes.")]
# An image must hold the largest object the spec allows (a box side of BOX_SIDE[1]).
MinSize = Annotated[
    int,
    typer.Option(
        "--min-size", min=BOX_SIDE[1], help=f"Smallest image side (px; objects are up to {BOX_SIDE[1]})."
    ),
]
MaxSize = Annotated[int, typer.Option("--max-size", min=BOX_SIDE[1], help="Largest image side (px).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
Overwrite = Annotated[
    bool,
    typer.Option("--overwrite", help="Delete a dataset already in the output directory (else an error)."),
]
RefMargins = Annotated[
    bool,
    typer.Option(
        "--ref-margins/--no-ref-margins",
        help="Comparatives (largest, leftmost, on the left) only with a clear margin, or wherever their "
        "literal reading (visible area, box centre) is strict, close calls included.",
    ),
]
LogSizes = Annotated[
    bool,
    typer.Option(
        "--log-sizes/--uniform-sizes",
        help="Object sizes (box side 20-160 px) drawn log-uniformly, so more small objects, or uniformly.",
    ),
]


def _check_sizes(min_size: int, max_size: int) -> None:
    if min_size > max_size:
        raise typer.BadParameter(f"--min-size {min_size} is larger than --max-size {max_size}")


def synth_images(
    out_dir: OutDir,
    num: Num = 100,
    seed: Seed = 0,
    workers: Workers = 2,
    min_size: MinSize = 256,
    max_size: MaxSize = 512,
    ref_margins: RefMargins = True,
    log_sizes: LogSizes = False,
    quiet: Quiet = False,
    overwrite: Overwrite = False,
) -> None:
    """Still images: OUT/images/*.png and OUT/annotations.json (COCO + RefCOCO-style refs)."""
    from glee.data.scenes import SceneConfig
    from glee.data.writers import write_images

    _check_sizes(min_size, max_size)
    config = SceneConfig(min_size=min_size, max_size=max_size, ref_margins=ref_margins, log_sizes=log_sizes)
    s = write_images(
        out_dir, num, seed, workers=workers, config=config, progress=not quiet, overwrite=overwrite
    )
    typer.echo(
        f"wrote {s.items} images, {s.objects} objects, {s.referred} referred objects, "
        f"{s.sentences} sentences to {s.annotation_file} "
        f"in {s.seconds:.1f} s ({s.items_per_second:.1f} images/s)"
    )


def synth_videos(
    out_dir: OutDir,
    num: Num = 20,
    seed: Seed = 0,
    workers: Workers = 2,
    frames_min: Annotated[int, typer.Option("--frames-min", min=1, help="Fewest frames per video.")] = 8,
    frames_max: Annotated[int, typer.Option("--frames-max", min=1, help="Most frames per video.")] = 32,
    min_size: MinSize = 256,
    max_size: MaxSize = 512,
    frame_format: Annotated[str, typer.Option("--frame-format", help="png (lossless) or jpg.")] = "png",
    ref_margins: RefMargins = True,
    log_sizes: LogSizes = False,
    crossing: Annotated[
        float,
        typer.Option(
            "--crossing",
            callback=probability,
            help="Probability that an object is aimed to cross an earlier object's path (more occlusion).",
        ),
    ] = 0.0,
    quiet: Quiet = False,
    overwrite: Overwrite = False,
) -> None:
    """Videos: OUT/frames/<video>/*.png and OUT/annotations.json (YouTube-VIS 2019 + expressions)."""
    from glee.data.videos import VideoConfig
    from glee.data.writers import FRAME_FORMATS, write_videos

    _check_sizes(min_size, max_size)
    if frames_min > frames_max:
        raise typer.BadParameter(f"--frames-min {frames_min} is larger than --frames-max {frames_max}")
    if frame_format not in FRAME_FORMATS:
        raise typer.BadParameter(f"--frame-format must be one of {', '.join(FRAME_FORMATS)}")
    config = VideoConfig(
        min_size=min_size,
        max_size=max_size,
        frames_min=frames_min,
        frames_max=frames_max,
        ref_margins=ref_margins,
        log_sizes=log_sizes,
        crossing=crossing,
    )
    s = write_videos(
        out_dir,
        num,
        seed,
        workers=workers,
        config=config,
        frame_format=frame_format,
        progress=not quiet,
        overwrite=overwrite,
    )
    typer.echo(
        f"wrote {s.items} videos, {s.objects} objects, {s.instances} per-frame masks, "
        f"{s.referred} referred objects, {s.sentences} expressions to {s.annotation_file} "
        f"in {s.seconds:.1f} s ({s.items_per_second:.2f} videos/s)"
    )


def register(app: typer.Typer) -> None:
    """Add the ``data`` command group (``synth images``, ``synth videos``) to the root app."""
    data_app = typer.Typer(no_args_is_help=True, help="Synthetic shapes datasets.")
    synth_app = typer.Typer(no_args_is_help=True, help="Generate synthetic shapes datasets.")
    synth_app.command("images")(synth_images)
    synth_app.command("videos")(synth_videos)
    data_app.add_typer(synth_app, name="synth")
    app.add_typer(data_app, name="data")
