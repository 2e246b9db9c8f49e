"""Training cache: COCO / RefCOCO / YouTube-VIS datasets decoded once, resized and packed in memory.

Decoding PNGs and RLE masks costs more than a training step on 2 cores, so every frame is decoded
once, resized so that its long side is ``size`` (what the predictor does with
``min_size_test == max_size_test == size``), pasted top-left on a ``size`` x ``size`` canvas and kept
with bit-packed masks. The cache is saved next to the run so a resumed run skips the decoding.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from rich.progress import track

from glee.data.readers import CocoDataset, FileFormatError, YtvisDataset, read_json

ANNOTATION_FILE = "annotations.json"
CACHE_VERSION = 1
MIN_MASK_PIXELS = 4


@dataclass
class Cache:
    """Frames (images and video frames) and their objects, flattened into arrays.

    Object rows of frame ``i`` are ``obj_start[i]:obj_start[i + 1]``; ``video[i]`` is -1 for still images.
    ``category`` indexes ``categories``; ``colour`` indexes ``colours`` (-1 = unknown);
    ``track`` is the YTVIS annotation id of a video object (-1 for images).
    """

    size: int
    images: np.ndarray  # uint8 [N, S, S, 3]
    hw: np.ndarray  # int32 [N, 2] resized (h, w) inside the canvas
    video: np.ndarray  # int32 [N]
    obj_start: np.ndarray  # int64 [N + 1]
    category: np.ndarray  # int16 [M]
    colour: np.ndarray  # int16 [M]
    track: np.ndarray  # int64 [M]
    boxes: np.ndarray  # float32 [M, 4] xyxy in canvas pixels
    masks: np.ndarray  # uint8 [M, S * S / 8] packed bits
    sentences: list[list[str]]  # per object
    categories: list[str]
    colours: list[str]
    sources: list[str] = field(default_factory=list)  # dataset_sources() of the data it was built from

    @property
    def num_frames(self) -> int:
        return len(self.images)

    def objects(self, frame: int) -> range:
        return range(int(self.obj_start[frame]), int(self.obj_start[frame + 1]))

    def mask(self, obj: int) -> np.ndarray:
        """bool [S, S] mask of object row ``obj``."""
        bits = np.unpackbits(self.masks[obj], count=self.size * self.size)
        return bits.reshape(self.size, self.size).astype(bool)

    def save(self, path: Path) -> None:
        meta = {
            "version": CACHE_VERSION,
            "size": self.size,
            "sentences": self.sentences,
            "categories": self.categories,
            "colours": self.colours,
            "sources": self.sources,
        }
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(
            tmp,
            meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
            images=self.images,
            hw=self.hw,
            video=self.video,
            obj_start=self.obj_start,
            category=self.category,
            colour=self.colour,
            track=self.track,
            boxes=self.boxes,
            masks=self.masks,
        )
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Cache:
        with np.load(path) as z:
            meta = json.loads(z["meta"].tobytes().decode())
            if meta.get("version") != CACHE_VERSION:
                raise ValueError(f"{path}: cache version {meta.get('version')} != {CACHE_VERSION}")
            arrays = {k: z[k] for k in z.files if k != "meta"}
        return cls(
            size=meta["size"],
            sentences=meta["sentences"],
            categories=meta["categories"],
            colours=meta["colours"],
            sources=meta.get("sources", []),
            **arrays,
        )


class _Builder:
    """Accumulates frames and objects while datasets are read."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.images: list[np.ndarray] = []
        self.hw: list[tuple[int, int]] = []
        self.video: list[int] = []
        self.counts: list[int] = []
        self.category: list[int] = []
        self.colour: list[int] = []
        self.track: list[int] = []
        self.boxes: list[np.ndarray] = []
        self.masks: list[np.ndarray] = []
        self.sentences: list[list[str]] = []
        self.categories: list[str] = []
        self.colours: list[str] = []

    def _index(self, table: list[str], name: str | None) -> int:
        if name is None:
            return -1
        if name not in table:
            table.append(name)
        return table.index(name)

    def add_frame(self, image: np.ndarray, objects: list[tuple], video: int) -> None:
        """objects: (category name, colour or None, track id, xyxy box, bool mask, sentences)."""
        h, w = image.shape[:2]
        scale = self.size / max(h, w)
        rh, rw = max(int(h * scale + 0.5), 1), max(int(w * scale + 0.5), 1)
        canvas = np.zeros((self.size, self.size, 3), np.uint8)
        canvas[:rh, :rw] = np.asarray(Image.fromarray(image).resize((rw, rh), Image.BILINEAR))
        kept = 0
        for name, colour, track_id, box, mask, sentences in objects:
            small = (
                np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((rw, rh), Image.BILINEAR))
                >= 128
            )
            if small.sum() < MIN_MASK_PIXELS:
                continue
            full = np.zeros((self.size, self.size), bool)
            full[:rh, :rw] = small
            self.masks.append(np.packbits(full.reshape(-1)))
            self.boxes.append(np.asarray(box, np.float32) * np.float32(rw / w))
            self.category.append(self._index(self.categories, name))
            self.colour.append(self._index(self.colours, colour))
            self.track.append(track_id)
            self.sentences.append(list(sentences))
            kept += 1
        self.images.append(canvas)
        self.hw.append((rh, rw))
        self.video.append(video)
        self.counts.append(kept)

    def build(self) -> Cache:
        m = len(self.category)
        return Cache(
            size=self.size,
            images=np.stack(self.images),
            hw=np.asarray(self.hw, np.int32).reshape(-1, 2),
            video=np.asarray(self.video, np.int32),
            obj_start=np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64),
            category=np.asarray(self.category, np.int16),
            colour=np.asarray(self.colour, np.int16),
            track=np.asarray(self.track, np.int64),
            boxes=np.asarray(self.boxes, np.float32).reshape(m, 4),
            masks=np.asarray(self.masks, np.uint8).reshape(m, self.size * self.size // 8),
            sentences=self.sentences,
            categories=self.categories,
            colours=self.colours,
        )


def annotation_file(path: Path) -> Path:
    """A dataset is a JSON file or a directory holding ``annotations.json``."""
    return path / ANNOTATION_FILE if path.is_dir() else path


def _open_dataset(path: Path) -> CocoDataset | YtvisDataset:
    """The reader of a dataset (kind taken from the JSON: ``videos`` = YouTube-VIS, else COCO), which
    checks the file; one without images or videos is refused, as it has nothing to train on."""
    ann = annotation_file(path)
    is_video = "videos" in read_json(ann, "COCO or YouTube-VIS dataset")
    dataset = YtvisDataset(ann) if is_video else CocoDataset(ann)
    if not len(dataset):
        raise FileFormatError(f"{ann} has no {'videos' if is_video else 'images'}: nothing to train on")
    return dataset


def build_cache(paths: list[Path], size: int, progress: bool = True) -> Cache:
    """Read every dataset, each file checked before any is decoded."""
    builder = _Builder(size)
    next_video = 0
    datasets = [_open_dataset(path) for path in paths]
    for path, dataset in zip(paths, datasets, strict=True):
        steps = track(range(len(dataset)), description=f"caching {path.name}", disable=not progress)
        if isinstance(dataset, YtvisDataset):
            for i in steps:
                sample = dataset.get(i)
                for f, frame in enumerate(sample.frames or []):
                    objects = [
                        (
                            o.category_name,
                            o.colour,
                            o.ann_id,
                            o.boxes[f],
                            o.masks[f],
                            o.expressions if f == 0 else [],
                        )
                        for o in sample.objects
                        if o.masks is not None and o.masks[f] is not None
                    ]
                    builder.add_frame(frame, objects, next_video)
                next_video += 1
        else:
            for i in steps:
                s = dataset.get(i)
                objects = [
                    (s.category_names[k], s.colours[k], -1, s.boxes[k], s.masks[k], s.sentences[k])
                    for k in range(len(s.ann_ids))
                ]
                builder.add_frame(s.image, objects, -1)
    return builder.build()


def dataset_sources(paths: list[Path]) -> list[str]:
    """Each dataset's annotation file with its size and modification time: what a saved cache must have
    been built from to be reused."""
    sources = []
    for path in paths:
        ann = annotation_file(path).resolve()
        stat = ann.stat()
        sources.append(f"{ann} ({stat.st_size} bytes, mtime {stat.st_mtime_ns})")
    return sources


def load_or_build(
    paths: list[Path],
    size: int,
    cache_path: Path | None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> Cache:
    """The saved cache when it was built from the same datasets at the same size (a resumed run), else a
    fresh one (saved when a path is given): reusing a cache of other data or another size would
    silently train on the wrong frames."""
    sources = dataset_sources(paths)
    if cache_path is not None and cache_path.exists():
        try:
            cached: Cache | None = Cache.load(cache_path)
        except ValueError:  # another cache version
            cached = None
        if cached is not None and (cached.size, cached.sources) == (size, sources):
            return cached
        echo(f"rebuilding {cache_path}: it was built from other data, at another size or by another version")
    cache = build_cache(paths, size, progress)
    cache.sources = sources
    if cache_path is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        cache.save(cache_path)
    return cache
