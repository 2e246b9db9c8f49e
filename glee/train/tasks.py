"""Training batches: which task a step trains and what each image of the batch is asked and must answer.

One forward takes one prompt mode, so a step is one task for the whole batch:

* ``detect``: every image gets its own category list (shape names, "<colour> <shape>" phrases, "object",
  any subset and order) — early fusion sees the list, so the model must work for any list. An object's
  targets are the list entries that describe it; objects no entry describes are background.
* ``ground``: one referring sentence per image; the referred object is the only target.
* ``visual``: a point / box / scribble / mask prompt drawn from one object's mask with the inference
  rasterizer; that object is the only target and the confidence head must pick it.
* ``pairs``: detection on two frames of one video (images 2i, 2i+1), for the track-embedding loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from glee.data.masks import mask_box
from glee.data.prompts import jitter_box, sample_negative_points, sample_positive_point, sample_scribble
from glee.model.mirror import flip_words
from glee.model.prompts import rasterize
from glee.train.cache import Cache
from glee.train.config import TaskMix

OBJECT = "object"


@dataclass
class ImageTargets:
    """What one image of a batch must answer; boxes are cxcywh normalized to the canvas."""

    names: list[str] = field(default_factory=list)  # detect / visual: the category list
    expression: str | None = None  # ground
    prompt: np.ndarray | None = None  # visual: bool [S, S]
    negative: np.ndarray | None = None  # visual: negative clicks, bool [S, S]
    prompt_type: str = ""
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    masks: np.ndarray = field(default_factory=lambda: np.zeros((0, 1, 1), bool))
    classes: np.ndarray = field(default_factory=lambda: np.zeros((0, 1), np.float32))  # multi-hot [n, C]
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # category index (denoising)
    vocabulary: np.ndarray = field(default_factory=lambda: np.zeros((0, 1), np.float32))  # multi-hot [n, V]
    tracks: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


@dataclass
class Batch:
    task: str  # detect | ground | visual | pairs
    images: np.ndarray  # uint8 [B, S, S, 3]
    hw: np.ndarray  # [B, 2] valid size inside the canvas
    targets: list[ImageTargets]


class TaskSampler:
    """Draws batches from a :class:`Cache` with one numpy generator (reproducible from the seed)."""

    def __init__(self, cache: Cache, mix: TaskMix, batch_size: int, rng: np.random.Generator) -> None:
        self.cache = cache
        self.mix = mix
        self.batch_size = batch_size
        self.rng = rng
        counts = np.diff(cache.obj_start)
        self.still = np.flatnonzero((cache.video < 0) & (counts > 0))
        self.frames = np.flatnonzero(counts > 0)
        has_ref = np.array(
            [any(cache.sentences[o] for o in cache.objects(i)) for i in range(cache.num_frames)]
        )
        self.referred = np.flatnonzero(has_ref)
        self.videos = [np.flatnonzero(cache.video == v) for v in range(int(cache.video.max(initial=-1)) + 1)]
        self.videos = [v for v in self.videos if len(v) >= 2]
        self.shapes = list(cache.categories)
        self.phrases = [f"{c} {s}" for c in cache.colours for s in self.shapes]

    def vocabulary(self) -> list[str]:
        """Every name a detection list can hold: the fixed vocabulary of the optional vocabulary loss."""
        return [*self.shapes, *self.phrases, OBJECT]

    def sample(self) -> Batch:
        weights = np.array([self.mix.detect, self.mix.ground, self.mix.visual, self.mix.pairs], np.float64)
        if not len(self.referred):
            weights[1] = 0.0
        if not self.videos:
            weights[3] = 0.0
        task = ("detect", "ground", "visual", "pairs")[int(self.rng.choice(4, p=weights / weights.sum()))]
        if task == "pairs":
            frames = self._pairs()
        else:
            pool = self.referred if task == "ground" else self.still if len(self.still) else self.frames
            frames = self.rng.choice(pool, self.batch_size, replace=len(pool) < self.batch_size)
        flips = self._flips(len(frames), task == "pairs")
        images = np.stack(
            [
                self._flip(self.cache.images[f], self.cache.hw[f], fl)
                for f, fl in zip(frames, flips, strict=True)
            ]
        )
        targets = [self._targets(task, int(f), fl) for f, fl in zip(frames, flips, strict=True)]
        return Batch(task, images, self.cache.hw[frames], targets)

    # ------------------------------------------------------------ frames
    def _pairs(self) -> np.ndarray:
        out = []
        for _ in range(self.batch_size // 2):
            frames = self.videos[int(self.rng.integers(len(self.videos)))]
            gap = int(self.rng.integers(1, self.mix.max_frame_gap + 1))
            gap = min(gap, len(frames) - 1)
            t = int(self.rng.integers(len(frames) - gap))
            out += [frames[t], frames[t + gap]]
        return np.asarray(out)

    def _flips(self, n: int, pairs: bool) -> list[tuple[bool, bool]]:
        flips = [(bool(self.rng.random() < 0.5), bool(self.rng.random() < 0.5)) for _ in range(n)]
        if pairs:  # both frames of a pair flip alike, or the motion would jump
            flips = [flips[i - i % 2] for i in range(n)]
        return flips

    def _flip(self, array: np.ndarray, hw: np.ndarray, flip: tuple[bool, bool]) -> np.ndarray:
        """Flip inside the valid region only, so padding stays bottom-right as at inference."""
        h, w = int(hw[0]), int(hw[1])
        out = array.copy()
        region = out[:h, :w]
        if flip[0]:
            region = region[:, ::-1]
        if flip[1]:
            region = region[::-1]
        out[:h, :w] = region
        return out

    # ------------------------------------------------------------ targets
    def _objects(self, frame: int, flip: tuple[bool, bool]) -> tuple[list[int], np.ndarray, np.ndarray]:
        rows = list(self.cache.objects(frame))
        h, w = (int(v) for v in self.cache.hw[frame])
        masks = np.stack([self._flip(self.cache.mask(o), self.cache.hw[frame], flip) for o in rows])
        boxes = self.cache.boxes[rows].copy()
        if flip[0]:
            boxes[:, [0, 2]] = w - boxes[:, [2, 0]]
        if flip[1]:
            boxes[:, [1, 3]] = h - boxes[:, [3, 1]]
        return rows, boxes, masks

    def _targets(self, task: str, frame: int, flip: tuple[bool, bool]) -> ImageTargets:
        rows, boxes, masks = self._objects(frame, flip)
        c = self.cache
        descriptions = [
            (self.shapes[c.category[o]], c.colours[c.colour[o]] if c.colour[o] >= 0 else None) for o in rows
        ]
        if task == "ground":
            choices = [(k, s) for k, o in enumerate(rows) for s in c.sentences[o]]
            k, sentence = choices[int(self.rng.integers(len(choices)))]
            t = ImageTargets(expression=flip_words(sentence, flip))
            keep = [k]
            t.classes = np.ones((1, 1), np.float32)
        elif task == "visual":
            k = int(self.rng.integers(len(rows)))
            t = self._visual(masks, boxes, k, c.hw[frame])
            keep = [k]
            t.names = [OBJECT]
            t.classes = np.ones((1, 1), np.float32)
        else:
            names = self._names(descriptions)
            hot = _multi_hot(names, descriptions)
            keep = [k for k in range(len(rows)) if hot[k].any()]
            t = ImageTargets(names=names)
            t.classes = hot[keep]
        size = float(c.size)
        xyxy = boxes[keep] / size
        t.boxes = np.concatenate([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], 1).astype(
            np.float32
        )
        t.masks = masks[keep]
        t.labels = c.category[[rows[k] for k in keep]].astype(np.int64)
        t.tracks = c.track[[rows[k] for k in keep]]
        t.vocabulary = _multi_hot(self.vocabulary(), [descriptions[k] for k in keep])
        return t

    def _names(self, objects: list[tuple[str, str | None]]) -> list[str]:
        """A random category list: shapes, colour phrases, "object", or a mix, in random order."""
        m = self.mix
        kinds = ["all_shapes", "some_shapes", "phrases", "all_phrases", "object", "mixed"]
        p = np.array([m.all_shapes, m.some_shapes, m.phrases, m.all_phrases, m.object, m.mixed], np.float64)
        if not self.phrases:
            p[[2, 3]] = 0.0
        kind = kinds[int(self.rng.choice(len(kinds), p=p / p.sum()))]
        rng = self.rng
        shapes = list(self.shapes)
        if kind == "all_shapes":
            names = shapes
        elif kind == "some_shapes":
            names = list(rng.choice(shapes, int(rng.integers(1, len(shapes) + 1)), replace=False))
        elif kind == "all_phrases":
            present = sorted({f"{col} {s}" for s, col in objects if col})
            extra = int(rng.integers(0, len(self.phrases) + 1))
            names = sorted(set(present) | set(rng.choice(self.phrases, extra, replace=False)))
            if rng.random() < 0.5:  # the evaluation lists phrases sorted; users may not
                return names
        elif kind == "phrases":
            names = self._phrases(objects)
        elif kind == "object":
            names = [OBJECT, *rng.choice(shapes, int(rng.integers(0, 3)), replace=False)]
        else:
            some = list(rng.choice(shapes, int(rng.integers(1, 4)), replace=False))
            names = some + self._phrases(objects) + ([OBJECT] if rng.random() < 0.3 else [])
        names = list(dict.fromkeys(names))
        rng.shuffle(names)
        return names

    def _phrases(self, objects: list[tuple[str, str | None]]) -> list[str]:
        """Phrases of 1-3 present objects plus look-alikes (same shape other colour, same colour other
        shape), so that colour and shape both have to be read."""
        rng = self.rng
        coloured = [(s, col) for s, col in objects if col]
        if not coloured:
            return list(rng.choice(self.phrases, 2, replace=False))
        picks = [
            coloured[int(i)]
            for i in rng.choice(len(coloured), min(len(coloured), int(rng.integers(1, 4))), replace=False)
        ]
        names = [f"{col} {s}" for s, col in picks]
        for s, col in picks:
            if rng.random() < 0.7:
                names.append(f"{rng.choice([c for c in self.cache.colours if c != col])} {s}")
            if rng.random() < 0.5:
                names.append(f"{col} {rng.choice([x for x in self.shapes if x != s])}")
        names += list(rng.choice(self.phrases, int(rng.integers(0, 3)), replace=False))
        return names

    def _visual(self, masks: np.ndarray, boxes: np.ndarray, k: int, hw: np.ndarray) -> ImageTargets:
        """A prompt for object k, rasterized exactly as the predictor rasterizes user prompts."""
        rng = self.rng
        h, w = int(hw[0]), int(hw[1])
        mask = masks[k][:h, :w]
        m = self.mix
        p = np.array([m.point, m.box, m.scribble, m.mask], np.float64)
        kind = ("point", "box", "scribble", "mask")[int(rng.choice(4, p=p / p.sum()))]
        if kind == "point":
            points = [sample_positive_point(mask, rng)]
            labels = [1]
            if rng.random() < m.negative_points:
                others = (
                    masks[[j for j in range(len(masks)) if j != k]][:, :h, :w].any(0)
                    if len(masks) > 1
                    else None
                )
                try:
                    negs = sample_negative_points(mask, rng, int(rng.integers(1, 3)), others)
                except ValueError:
                    negs = []
                points += negs
                labels += [0] * len(negs)
            prompt = {"points": np.asarray(points), "labels": np.asarray(labels)}
        elif kind == "box":
            prompt = {"box": np.asarray(jitter_box(mask_box(mask), rng, image_hw=(h, w)))}
        elif kind == "scribble":
            prompt = {"scribble": np.asarray(sample_scribble(mask, rng).points)}
        else:
            prompt = {"mask": mask}
        raster = rasterize(kind, prompt, (1.0, 1.0), (h, w))
        size = masks.shape[-1]
        pos = np.zeros((size, size), bool)
        pos[:h, :w] = raster.positive
        neg = None
        if raster.negative is not None:
            neg = np.zeros((size, size), bool)
            neg[:h, :w] = raster.negative
        return ImageTargets(prompt=pos, negative=neg, prompt_type=raster.prompt_type)


def _multi_hot(names: list[str], objects: list[tuple[str, str | None]]) -> np.ndarray:
    """[objects, names] 1.0 where the name describes the object."""
    return np.array([[_describes(n, o) for n in names] for o in objects], np.float32).reshape(
        len(objects), len(names)
    )


def _describes(name: str, obj: tuple[str, str | None]) -> bool:
    """Whether a list entry names this object: "object", its shape, or exactly its colour and shape."""
    shape, colour = obj
    if name in (OBJECT, shape):
        return True
    return colour is not None and name == f"{colour} {shape}"
