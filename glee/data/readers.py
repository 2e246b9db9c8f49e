"""Readers of COCO (+ RefCOCO ``refs``) image datasets and YouTube-VIS 2019 video datasets.

They accept any file in those formats, not only the project's own, because the demo model is judged
on scenes from an independent generator: segmentations may be RLE (compressed or not) or polygons,
the colour attribute may be spelt ``colour`` or ``color``, and refs may live in the same JSON or in a
separate file. Boxes come out as float32 xyxy in pixels; crowd annotations are skipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from glee.data.masks import coco_bbox, decode_segmentation


class FileFormatError(ValueError):
    """An input file that is not what a command expects (the ``glee`` CLI prints it as one line)."""


def read_json(path: str | Path, what: str) -> dict[str, Any]:
    """The JSON object in ``path`` (``what`` it should be names it in the error when it is not one)."""
    try:
        data = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FileFormatError(f"{path} is not a {what}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise FileFormatError(f"{path} is not a {what}: its JSON is a {type(data).__name__}, not an object")
    return data


def read_dataset(path: str | Path, kind: str, keys: tuple[str, ...], mask_key: str) -> dict[str, Any]:
    """A dataset file checked for the lists ``kind`` needs and a ``mask_key`` on every annotation (glee
    trains and scores instance masks), so a wrong file is one clear error instead of a ``KeyError``."""
    data = read_json(path, f"{kind} dataset")
    missing = [key for key in keys if not isinstance(data.get(key), list)]
    if missing:
        raise FileFormatError(
            f"{path} is not a {kind} dataset: it has no {' or '.join(map(repr, missing))} list"
        )
    for ann in data.get("annotations") or []:
        if mask_key not in ann:
            raise FileFormatError(
                f"{path}: annotation {ann.get('id')} has no {mask_key!r}; glee needs instance masks"
            )
    return data


def _default_root(annotation_file: Path, folders: tuple[str, ...]) -> Path:
    """The first of `folders` next to the JSON that exists, else the JSON's own folder."""
    for name in folders:
        if (annotation_file.parent / name).is_dir():
            return annotation_file.parent / name
    return annotation_file.parent


def load_rgb(path: Path) -> np.ndarray:
    """uint8 [H,W,3] RGB pixels of an image file."""
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def _colour(ann: dict[str, Any]) -> str | None:
    attrs = ann.get("attributes") or {}
    return attrs.get("colour", attrs.get("color"))


def _xyxy(bbox: list[float]) -> list[float]:
    x, y, w, h = bbox
    return [x, y, x + w, y + h]


@dataclass
class ImageSample:
    """One image and its (non-crowd) annotations, row-aligned."""

    image_id: int
    file_name: str
    height: int
    width: int
    image: np.ndarray | None  # uint8 [H,W,3]; None when not loaded
    ann_ids: np.ndarray  # int64 [N]
    boxes: np.ndarray  # float32 [N,4] xyxy
    category_ids: np.ndarray  # int64 [N]
    category_names: list[str]
    masks: np.ndarray | None  # bool [N,H,W]; None when not loaded
    colours: list[str | None]
    sentences: list[list[str]]  # referring sentences of each annotation (empty if none)


class CocoDataset:
    """Random access to a COCO-format image dataset with optional RefCOCO-style refs."""

    def __init__(
        self,
        annotation_file: str | Path,
        image_root: str | Path | None = None,
        refs_file: str | Path | None = None,
    ) -> None:
        path = Path(annotation_file)
        data = read_dataset(path, "COCO image", ("images", "annotations", "categories"), "segmentation")
        self.image_root = Path(image_root) if image_root else _default_root(path, ("images",))
        self.categories: dict[int, str] = {int(c["id"]): c["name"] for c in data["categories"]}
        self.images: list[dict[str, Any]] = data["images"]
        self.info: dict[str, Any] = data.get("info", {})
        self._anns: dict[int, list[dict[str, Any]]] = {int(im["id"]): [] for im in self.images}
        for ann in data["annotations"]:
            if ann.get("image_id") not in self._anns:
                raise FileFormatError(f"{path}: annotation {ann.get('id')} is of an image not in 'images'")
            if not ann.get("iscrowd", 0):
                self._anns[int(ann["image_id"])].append(ann)
        refs = data.get("refs", [])
        if refs_file is not None:
            loaded = json.loads(Path(refs_file).read_text())
            refs = loaded["refs"] if isinstance(loaded, dict) else loaded
        self._sentences: dict[int, list[str]] = {}
        for ref in refs:
            sents = [s.get("sent", s.get("raw", "")) for s in ref["sentences"]]
            self._sentences.setdefault(int(ref["ann_id"]), []).extend(sents)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> ImageSample:
        return self.get(index)

    @property
    def num_annotations(self) -> int:
        return sum(len(v) for v in self._anns.values())

    def get(self, index: int, image: bool = True, masks: bool = True) -> ImageSample:
        """Sample `index`; skip decoding pixels or masks when the caller needs only boxes and labels."""
        rec = self.images[index]
        height, width = int(rec["height"]), int(rec["width"])
        anns = self._anns[int(rec["id"])]
        decoded = None
        if masks:
            decoded = np.zeros((len(anns), height, width), bool)
            for k, a in enumerate(anns):
                decoded[k] = decode_segmentation(a["segmentation"], height, width)
        return ImageSample(
            image_id=int(rec["id"]),
            file_name=rec["file_name"],
            height=height,
            width=width,
            image=load_rgb(self.image_root / rec["file_name"]) if image else None,
            ann_ids=np.array([a["id"] for a in anns], np.int64),
            boxes=np.array([_xyxy(a["bbox"]) for a in anns], np.float32).reshape(-1, 4),
            category_ids=np.array([a["category_id"] for a in anns], np.int64),
            category_names=[self.categories[int(a["category_id"])] for a in anns],
            masks=decoded,
            colours=[_colour(a) for a in anns],
            sentences=[list(self._sentences.get(int(a["id"]), [])) for a in anns],
        )


@dataclass
class VideoObject:
    """One object (YTVIS annotation) of a video; per-frame entries are None where it is not annotated."""

    ann_id: int
    category_id: int
    category_name: str
    colour: str | None
    boxes: list[np.ndarray | None]  # float32 [4] xyxy per frame
    masks: list[np.ndarray | None] | None  # bool [H,W] per frame; None when not loaded
    areas: list[float | None]
    expressions: list[str]


@dataclass
class VideoSample:
    video_id: int
    file_names: list[str]
    height: int
    width: int
    frames: list[np.ndarray] | None  # uint8 [H,W,3] each; None when not loaded
    objects: list[VideoObject]


class YtvisDataset:
    """Random access to a YouTube-VIS 2019 format video dataset (+ per-object ``expressions``)."""

    def __init__(self, annotation_file: str | Path, frame_root: str | Path | None = None) -> None:
        path = Path(annotation_file)
        data = read_dataset(path, "YouTube-VIS video", ("videos", "categories"), "segmentations")
        self.frame_root = Path(frame_root) if frame_root else _default_root(path, ("frames", "JPEGImages"))
        self.categories: dict[int, str] = {int(c["id"]): c["name"] for c in data["categories"]}
        self.videos: list[dict[str, Any]] = data["videos"]
        self.info: dict[str, Any] = data.get("info", {})
        self._anns: dict[int, list[dict[str, Any]]] = {int(v["id"]): [] for v in self.videos}
        for ann in data.get("annotations") or []:
            if ann.get("video_id") not in self._anns:
                raise FileFormatError(f"{path}: annotation {ann.get('id')} is of a video not in 'videos'")
            self._anns[int(ann["video_id"])].append(ann)

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> VideoSample:
        return self.get(index)

    def get(self, index: int, frames: bool = True, masks: bool = True) -> VideoSample:
        """Video `index`; `frames`/`masks` False leaves those out (masks are still decoded if no bboxes)."""
        rec = self.videos[index]
        height, width = int(rec["height"]), int(rec["width"])
        objects = []
        for a in self._anns[int(rec["id"])]:
            segs = a["segmentations"]
            bboxes, areas = a.get("bboxes"), a.get("areas")
            decoded: list[np.ndarray | None] = []
            if masks or not bboxes or not areas:
                decoded = [None if s is None else decode_segmentation(s, height, width) for s in segs]
                bboxes = bboxes or [None if m is None else coco_bbox(m) for m in decoded]
                areas = areas or [None if m is None else float(m.sum()) for m in decoded]
            objects.append(
                VideoObject(
                    ann_id=int(a["id"]),
                    category_id=int(a["category_id"]),
                    category_name=self.categories[int(a["category_id"])],
                    colour=_colour(a),
                    boxes=[None if b is None else np.array(_xyxy(b), np.float32) for b in bboxes],
                    masks=decoded if masks else None,
                    areas=list(areas),
                    expressions=list(a.get("expressions", [])),
                )
            )
        pixels = [load_rgb(self.frame_root / name) for name in rec["file_names"]] if frames else None
        return VideoSample(int(rec["id"]), list(rec["file_names"]), height, width, pixels, objects)
