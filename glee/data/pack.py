"""Packed training cache: pre-resized images and bit-packed masks in npz shards.

Decoding a PNG and every RLE on each training step costs more than a small model's step on 2 cores, so
a dataset is converted once. Each image is resized so that its long side is `size` (aspect kept) and
zero-padded at the bottom/right to size x size; its masks are resized the same way (bilinear, >= 0.5)
and stored with np.packbits along the last axis; boxes are the source boxes scaled per axis.

``OUT/pack.json``: {"format", "size", "source", "categories": [{id, name}], "colours": [names],
"num_images", "num_objects", "shards": [{"file", "num_images", "num_objects"}]}.
``OUT/shard_00000.npz`` arrays (n images, m objects; objects of image i are rows offsets[i]:offsets[i+1]):
images uint8 [n,S,S,3]; hw int32 [n,2] (resized height, width: the unpadded area); orig_hw int32 [n,2];
image_ids int64 [n]; offsets int64 [n+1]; ann_ids int64 [m]; category_ids int64 [m]; colours int16 [m]
(index into pack.json "colours", -1 if none); boxes float32 [m,4] xyxy in packed pixels;
masks uint8 [m,S,ceil(S/8)]; sentences uint8 [k] (UTF-8 JSON: list of m lists of strings).
"""

from __future__ import annotations

import bisect
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from glee.data.parallel import run_ordered
from glee.data.readers import CocoDataset, ImageSample
from glee.data.spec import COLOUR_NAMES

PACK_FORMAT = "glee-shapes-pack/1"
META_FILE = "pack.json"


@dataclass(frozen=True)
class PackSummary:
    meta_file: Path
    num_images: int
    num_objects: int
    num_shards: int
    seconds: float


@dataclass
class PackedSample:
    """One packed image: pixels and masks at size x size, valid region (0:h, 0:w), source ids."""

    image_id: int
    image: np.ndarray  # uint8 [S,S,3]
    hw: tuple[int, int]
    orig_hw: tuple[int, int]
    ann_ids: np.ndarray  # int64 [N]
    boxes: np.ndarray  # float32 [N,4] xyxy
    category_ids: np.ndarray  # int64 [N]
    colours: list[str | None]
    masks: np.ndarray  # bool [N,S,S]
    sentences: list[list[str]]


def resized_hw(height: int, width: int, size: int) -> tuple[int, int]:
    """Height and width after scaling the long side to `size` (at least 1 px each)."""
    scale = size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def _pack_sample(sample: ImageSample, size: int, colour_index: dict[str, int]) -> dict[str, Any]:
    assert sample.image is not None and sample.masks is not None
    h, w = resized_hw(sample.height, sample.width, size)
    image = np.zeros((size, size, 3), np.uint8)
    image[:h, :w] = np.asarray(Image.fromarray(sample.image).resize((w, h), Image.BILINEAR))
    masks = np.zeros((len(sample.masks), size, size), bool)
    for k, m in enumerate(sample.masks):
        small = Image.fromarray(m.astype(np.uint8) * 255).resize((w, h), Image.BILINEAR)
        masks[k, :h, :w] = np.asarray(small) >= 128
    scale = np.array([w / sample.width, h / sample.height] * 2, np.float32)
    return {
        "image": image,
        "hw": (h, w),
        "orig_hw": (sample.height, sample.width),
        "image_id": sample.image_id,
        "ann_ids": sample.ann_ids,
        "category_ids": sample.category_ids,
        "colours": [colour_index.get(c, -1) if c else -1 for c in sample.colours],
        "boxes": sample.boxes * scale,
        "masks": np.packbits(masks, axis=-1),
        "sentences": sample.sentences,
    }


def _shard_job(job: tuple[str, str | None, list[int], int, list[str], str]) -> tuple[int, int]:
    annotation_file, image_root, indices, size, colours, path = job
    dataset = CocoDataset(annotation_file, image_root)
    index = {c: i for i, c in enumerate(colours)}
    items = [_pack_sample(dataset[i], size, index) for i in indices]
    counts = [len(it["ann_ids"]) for it in items]
    sentences = [s for it in items for s in it["sentences"]]
    np.savez_compressed(
        path,
        images=np.stack([it["image"] for it in items]),
        hw=np.array([it["hw"] for it in items], np.int32),
        orig_hw=np.array([it["orig_hw"] for it in items], np.int32),
        image_ids=np.array([it["image_id"] for it in items], np.int64),
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        ann_ids=np.concatenate([it["ann_ids"] for it in items]).astype(np.int64),
        category_ids=np.concatenate([it["category_ids"] for it in items]).astype(np.int64),
        colours=np.array([c for it in items for c in it["colours"]], np.int16),
        boxes=np.concatenate([it["boxes"] for it in items]).astype(np.float32).reshape(-1, 4),
        masks=np.concatenate([it["masks"] for it in items]).reshape(-1, size, (size + 7) // 8),
        sentences=np.frombuffer(json.dumps(sentences).encode(), np.uint8),
    )
    return len(items), int(sum(counts))


def pack_coco(
    annotation_file: str | Path,
    out_dir: str | Path,
    size: int = 256,
    shard_size: int = 500,
    workers: int = 2,
    image_root: str | Path | None = None,
    progress: bool = True,
) -> PackSummary:
    """Convert a COCO dataset (with optional refs) into the packed cache in `out_dir`."""
    start = time.perf_counter()
    source = CocoDataset(annotation_file, image_root)
    extra = sorted({c for i in range(len(source)) for c in source.get(i, False, False).colours if c})
    colours = list(COLOUR_NAMES) + [c for c in extra if c not in COLOUR_NAMES]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    root = str(source.image_root)
    chunks = [list(range(i, min(i + shard_size, len(source)))) for i in range(0, len(source), shard_size)]
    names = [f"shard_{k:05d}.npz" for k in range(len(chunks))]
    jobs = [
        (str(annotation_file), root, c, size, colours, str(out / n))
        for c, n in zip(chunks, names, strict=True)
    ]
    counts = run_ordered(_shard_job, jobs, workers, "shards", progress)
    meta = {
        "format": PACK_FORMAT,
        "size": size,
        "source": str(annotation_file),
        "categories": [{"id": k, "name": v} for k, v in sorted(source.categories.items())],
        "colours": colours,
        "num_images": sum(n for n, _ in counts),
        "num_objects": sum(m for _, m in counts),
        "shards": [
            {"file": name, "num_images": n, "num_objects": m}
            for name, (n, m) in zip(names, counts, strict=True)
        ],
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=1))
    return PackSummary(
        out / META_FILE, meta["num_images"], meta["num_objects"], len(names), time.perf_counter() - start
    )


class PackedDataset:
    """Random access to a packed cache; a shard is loaded into memory on first use and kept."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.meta: dict[str, Any] = json.loads((self.directory / META_FILE).read_text())
        if self.meta.get("format") != PACK_FORMAT:
            raise ValueError(f"{self.directory} is not a {PACK_FORMAT} cache")
        self.size: int = int(self.meta["size"])
        self.colours: list[str] = list(self.meta["colours"])
        self.categories: dict[int, str] = {int(c["id"]): c["name"] for c in self.meta["categories"]}
        self._starts = list(np.cumsum([0] + [s["num_images"] for s in self.meta["shards"]]))
        self._shards: dict[int, dict[str, Any]] = {}

    def __len__(self) -> int:
        return int(self._starts[-1])

    def _shard(self, k: int) -> dict[str, Any]:
        if k not in self._shards:
            with np.load(self.directory / self.meta["shards"][k]["file"]) as npz:
                arrays: dict[str, Any] = {name: npz[name] for name in npz.files}
            arrays["sentences"] = json.loads(arrays["sentences"].tobytes().decode())
            self._shards[k] = arrays
        return self._shards[k]

    def __getitem__(self, index: int) -> PackedSample:
        if not 0 <= index < len(self):
            raise IndexError(index)
        k = bisect.bisect_right(self._starts, index) - 1
        shard, i = self._shard(k), index - int(self._starts[k])
        a, b = int(shard["offsets"][i]), int(shard["offsets"][i + 1])
        h, w = (int(v) for v in shard["hw"][i])
        oh, ow = (int(v) for v in shard["orig_hw"][i])
        return PackedSample(
            image_id=int(shard["image_ids"][i]),
            image=shard["images"][i].copy(),  # copies: in-place augmentation must not alter the cache
            hw=(h, w),
            orig_hw=(oh, ow),
            ann_ids=shard["ann_ids"][a:b],
            boxes=shard["boxes"][a:b].copy(),
            category_ids=shard["category_ids"][a:b],
            colours=[self.colours[c] if c >= 0 else None for c in shard["colours"][a:b]],
            masks=np.unpackbits(shard["masks"][a:b], axis=-1, count=self.size).astype(bool),
            sentences=shard["sentences"][a:b],
        )
