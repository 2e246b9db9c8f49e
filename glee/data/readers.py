"""Readers of COCO (+ RefCOCO ``refs``) image datasets and YouTube-VIS 2019 video datasets.

They accept any file in those formats, not only the project's own, because the demo model is judged
on scenes from an independent generator: segmentations may be RLE (compressed or not) or polygons,
the colour attribute may be spelt ``colour`` or ``color``, and refs may live in the same JSON or in a
separate file. Boxes come out as float32 xyxy in pixels; crowd annotations are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Callable
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


# A field's check and what it should be, for the message when the check fails.
_Field = tuple[Callable[[Any], bool], str]


@dataclass(frozen=True)
class DatasetFormat:
    """What :func:`read_dataset` checks in one kind of dataset file."""

    kind: str
    lists: tuple[str, ...]  # the top-level lists the file must have
    record: str  # what annotations belong to ("image"): listed under "images", named by "image_id"
    record_fields: dict[str, _Field]
    annotation_fields: dict[str, _Field]
    mask_key: str
    masks: Callable[[dict[str, Any]], _Field]  # an image / video record -> the form of its masks


def read_dataset(path: str | Path, fmt: DatasetFormat) -> dict[str, Any]:
    """A dataset file checked in one pass, before anything reads it: the lists, every record, category
    and annotation, the annotation's instance masks (which glee trains and scores) included. A wrong file
    is then one clear error that names it, the entry and the field, instead of a ``KeyError`` or a
    pycocotools ``TypeError`` after inference has run."""
    data = read_json(path, f"{fmt.kind} dataset")
    missing = [key for key in fmt.lists if not isinstance(data.get(key), list)]
    if missing:
        raise FileFormatError(
            f"{path} is not a {fmt.kind} dataset: it has no {' or '.join(map(repr, missing))} list"
        )
    try:
        records = _by_id(data[f"{fmt.record}s"], fmt.record, fmt.record_fields)
        categories = _by_id(data["categories"], "category", _CATEGORY_FIELDS)
        for index, ann in enumerate(data.get("annotations") or []):
            problem = _annotation_problem(ann, fmt, records, categories)
            if problem is not None:
                named = isinstance(ann, dict) and _is_int(ann.get("id"))
                raise FileFormatError(f"annotation {ann['id'] if named else f'at index {index}'} {problem}")
    except FileFormatError as exc:
        raise FileFormatError(f"{path}: {exc}") from None
    return data


def _by_id(entries: list[Any], what: str, fields: dict[str, _Field]) -> dict[int, dict[str, Any]]:
    """The entries (images, videos or categories) by id, each checked to have ``fields``."""
    for index, entry in enumerate(entries):
        problem = _fields_problem(entry, fields)
        if problem is not None:
            raise FileFormatError(f"{what} at index {index} {problem}")
    return {entry["id"]: entry for entry in entries}


def _annotation_problem(ann: Any, fmt: DatasetFormat, records: dict, categories: dict) -> str | None:
    problem = _fields_problem(ann, fmt.annotation_fields)
    if problem is not None:
        return problem
    parent = f"{fmt.record}_id"
    for key, table, listed in (
        (parent, records, f"{fmt.record}s"),
        ("category_id", categories, "categories"),
    ):
        if ann[key] not in table:
            return f"has {key!r} {ann[key]}, which is not in {listed!r}"
    if fmt.mask_key not in ann:
        return f"has no {fmt.mask_key!r}; glee needs instance masks"
    return _fields_problem(ann, {fmt.mask_key: fmt.masks(records[ann[parent]])})


def _fields_problem(entry: Any, fields: dict[str, _Field]) -> str | None:
    """What is wrong with a JSON object that should have ``fields``, or None."""
    if not isinstance(entry, dict):
        return f"is {_shown(entry)}, not an object"
    for key, (valid, expected) in fields.items():
        if key not in entry:
            return f"has no {key!r}"
        if not valid(entry[key]):
            return f"has {key!r} {_shown(entry[key])}, which is not {expected}"
    return None


def _shown(value: Any) -> str:
    """A JSON value as the file spells it, cut short."""
    text = json.dumps(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_polygon(value: Any) -> bool:
    return isinstance(value, list) and len(value) >= 6 and len(value) % 2 == 0 and all(map(_is_number, value))


def _is_segmentation(seg: Any, height: int, width: int) -> bool:
    """COCO polygons, or an RLE of a ``height`` x ``width`` mask with its counts compressed in a string or
    listed: the forms pycocotools decodes (anything else fails inside it with a bare ``TypeError``)."""
    if isinstance(seg, list):
        return bool(seg) and all(map(_is_polygon, seg))
    if not isinstance(seg, dict) or seg.get("size") != [height, width]:
        return False
    counts = seg.get("counts")
    return isinstance(counts, str) or (isinstance(counts, list) and all(map(_is_int, counts)))


def _image_masks(image: dict[str, Any]) -> _Field:
    height, width = image["height"], image["width"]
    return (
        lambda seg: _is_segmentation(seg, height, width),
        f"polygons or an RLE of size [{height}, {width}]",
    )


def _video_masks(video: dict[str, Any]) -> _Field:
    """One mask per frame, null where the object is not annotated."""
    frames = len(video["file_names"])
    is_mask, form = _image_masks(video)
    return (
        lambda segs: (
            isinstance(segs, list)
            and len(segs) == frames
            and all(seg is None or is_mask(seg) for seg in segs)
        ),
        f"a list of one mask ({form}) or null per frame ({frames})",
    )


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


_IDENTIFIER = (_is_int, "an integer")
_SIDE = (lambda value: _is_int(value) and value > 0, "a positive integer")
_CATEGORY_FIELDS = {"id": _IDENTIFIER, "name": (_is_str, "a string")}
COCO_FORMAT = DatasetFormat(
    kind="COCO image",
    lists=("images", "annotations", "categories"),
    record="image",
    record_fields={"id": _IDENTIFIER, "file_name": (_is_str, "a file name"), "height": _SIDE, "width": _SIDE},
    annotation_fields={
        "id": _IDENTIFIER,
        "image_id": _IDENTIFIER,
        "category_id": _IDENTIFIER,
        "bbox": (
            lambda box: isinstance(box, list) and len(box) == 4 and all(map(_is_number, box)),
            "[x, y, w, h]",
        ),
    },
    mask_key="segmentation",
    masks=_image_masks,
)
YTVIS_FORMAT = DatasetFormat(
    kind="YouTube-VIS video",
    lists=("videos", "categories"),
    record="video",
    record_fields={
        "id": _IDENTIFIER,
        "file_names": (
            lambda names: bool(names) and isinstance(names, list) and all(map(_is_str, names)),
            "a list of file names",
        ),
        "height": _SIDE,
        "width": _SIDE,
    },
    annotation_fields={"id": _IDENTIFIER, "video_id": _IDENTIFIER, "category_id": _IDENTIFIER},
    mask_key="segmentations",
    masks=_video_masks,
)


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
        data = read_dataset(path, COCO_FORMAT)
        self.image_root = Path(image_root) if image_root else _default_root(path, ("images",))
        self.categories: dict[int, str] = {int(c["id"]): c["name"] for c in data["categories"]}
        self.images: list[dict[str, Any]] = data["images"]
        self.info: dict[str, Any] = data.get("info", {})
        self._anns: dict[int, list[dict[str, Any]]] = {int(im["id"]): [] for im in self.images}
        for ann in data["annotations"]:
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
        data = read_dataset(path, YTVIS_FORMAT)
        self.frame_root = Path(frame_root) if frame_root else _default_root(path, ("frames", "JPEGImages"))
        self.categories: dict[int, str] = {int(c["id"]): c["name"] for c in data["categories"]}
        self.videos: list[dict[str, Any]] = data["videos"]
        self.info: dict[str, Any] = data.get("info", {})
        self._anns: dict[int, list[dict[str, Any]]] = {int(v["id"]): [] for v in self.videos}
        for ann in data.get("annotations") or []:
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
