"""Dataset writers: image files plus COCO/RefCOCO or YouTube-VIS JSON, generated in parallel.

Layout of an image dataset: ``OUT/annotations.json`` and ``OUT/images/000000.png``...; of a video
dataset: ``OUT/annotations.json`` and ``OUT/frames/000000/00000.png``... File names in the JSON are
relative to ``images/`` (``frames/``). The same seed gives byte-identical files for any worker count:
each item is a pure function of (seed, index), results come back in index order, and ids are numbered
here, after the parallel part.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from glee.data.formats import scene_records, video_records
from glee.data.parallel import run_ordered
from glee.data.scenes import SceneConfig, generate_scene
from glee.data.spec import CATEGORIES
from glee.data.videos import VideoConfig, generate_video

ANNOTATION_FILE = "annotations.json"
IMAGE_DIR = "images"
FRAME_DIR = "frames"
GENERATOR_VERSION = 1
FRAME_FORMATS = ("png", "jpg")


@dataclass(frozen=True)
class SynthSummary:
    """What a writer produced; `instances` counts per-frame masks for videos (= objects for images)."""

    annotation_file: Path
    items: int
    objects: int
    instances: int
    referred: int
    sentences: int
    seconds: float

    @property
    def items_per_second(self) -> float:
        return self.items / max(self.seconds, 1e-9)


def _save(array: Any, path: Path) -> None:
    if path.suffix == ".png":
        Image.fromarray(array).save(path, compress_level=3)
    else:
        Image.fromarray(array).save(path, quality=95)


def _image_job(job: tuple[int, int, SceneConfig, str]) -> dict[str, Any]:
    seed, index, config, out_dir = job
    scene = generate_scene(seed, index, config)
    name = f"{index:06d}.png"
    _save(scene.image, Path(out_dir) / IMAGE_DIR / name)
    return scene_records(scene, name)


def _video_job(job: tuple[int, int, VideoConfig, str, str]) -> dict[str, Any]:
    seed, index, config, out_dir, ext = job
    video = generate_video(seed, index, config)
    folder = Path(out_dir) / FRAME_DIR / f"{index:06d}"
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for t, frame in enumerate(video.frames):
        _save(frame, folder / f"{t:05d}.{ext}")
        names.append(f"{index:06d}/{t:05d}.{ext}")
    return video_records(video, names)


def _dump(dataset: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(dataset, separators=(",", ":")))


def _prepare(out: Path, subdir: str, overwrite: bool) -> None:
    """Make OUT ready for a new dataset, never mixing it with an old one.

    Writing into an earlier dataset would leave its extra files behind (a smaller `num` keeps the old
    higher-numbered images beside the new annotations), so an existing dataset of either kind is refused
    unless `overwrite` says to delete it first.
    """
    old = [p for p in (out / ANNOTATION_FILE, out / IMAGE_DIR, out / FRAME_DIR) if p.exists()]
    if old and not overwrite:
        names = ", ".join(p.name for p in old)
        raise FileExistsError(
            f"{out} already holds a dataset ({names}); choose another directory or pass --overwrite"
        )
    for path in old:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    (out / subdir).mkdir(parents=True)


def _info(kind: str, seed: int, num: int, config: Any, **extra: Any) -> dict[str, Any]:
    return {
        "description": f"glee synthetic shapes {kind}",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "num": num,
        "config": dataclasses.asdict(config),
        **extra,
    }


def write_images(
    out_dir: str | Path,
    num: int,
    seed: int,
    workers: int = 2,
    config: SceneConfig = SceneConfig(),
    progress: bool = True,
    overwrite: bool = False,
) -> SynthSummary:
    """Generate `num` scenes into OUT/images and OUT/annotations.json (COCO + `refs`).

    An existing dataset in OUT is an error, or deleted first with `overwrite`.
    """
    start = time.perf_counter()
    out = Path(out_dir)
    _prepare(out, IMAGE_DIR, overwrite)
    jobs = [(seed, i, config, str(out)) for i in range(num)]
    records = run_ordered(_image_job, jobs, workers, "images", progress)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    refs: list[dict[str, Any]] = []
    sent_id = 0
    for image_id, record in enumerate(records, start=1):
        images.append({"id": image_id, **record["image"]})
        for ann, sentences in zip(record["annotations"], record["sentences"], strict=True):
            ann_id = len(annotations) + 1
            annotations.append({"id": ann_id, "image_id": image_id, **ann})
            if not sentences:
                continue
            sents = [{"sent_id": sent_id + k, "sent": s} for k, s in enumerate(sentences)]
            sent_id += len(sents)
            refs.append(
                {
                    "ref_id": len(refs) + 1,
                    "ann_id": ann_id,
                    "image_id": image_id,
                    "category_id": ann["category_id"],
                    "sentences": sents,
                }
            )
    dataset = {
        "info": _info("images", seed, num, config),
        "images": images,
        "annotations": annotations,
        "categories": CATEGORIES,
        "refs": refs,
    }
    path = out / ANNOTATION_FILE
    _dump(dataset, path)
    n = len(annotations)
    return SynthSummary(path, num, n, n, len(refs), sent_id, time.perf_counter() - start)


def write_videos(
    out_dir: str | Path,
    num: int,
    seed: int,
    workers: int = 2,
    config: VideoConfig = VideoConfig(),
    frame_format: str = "png",
    progress: bool = True,
    overwrite: bool = False,
) -> SynthSummary:
    """Generate `num` videos into OUT/frames and OUT/annotations.json (YouTube-VIS 2019 + `expressions`).

    An existing dataset in OUT is an error, or deleted first with `overwrite`.
    """
    if frame_format not in FRAME_FORMATS:
        raise ValueError(f"frame_format must be one of {FRAME_FORMATS}, not {frame_format!r}")
    start = time.perf_counter()
    out = Path(out_dir)
    _prepare(out, FRAME_DIR, overwrite)
    jobs = [(seed, i, config, str(out), frame_format) for i in range(num)]
    records = run_ordered(_video_job, jobs, workers, "videos", progress)
    videos: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for video_id, record in enumerate(records, start=1):
        videos.append({"id": video_id, **record["video"]})
        for ann in record["annotations"]:
            annotations.append({"id": len(annotations) + 1, "video_id": video_id, **ann})
    dataset = {
        "info": _info("videos", seed, num, config, frame_format=frame_format),
        "videos": videos,
        "annotations": annotations,
        "categories": CATEGORIES,
    }
    path = out / ANNOTATION_FILE
    _dump(dataset, path)
    instances = sum(sum(s is not None for s in a["segmentations"]) for a in annotations)
    referred = sum(bool(a["expressions"]) for a in annotations)
    sentences = sum(len(a["expressions"]) for a in annotations)
    return SynthSummary(
        path, num, len(annotations), instances, referred, sentences, time.perf_counter() - start
    )
