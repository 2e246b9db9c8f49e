"""VideoPredictor end to end on hand-built shape clips.

Two groups:

* Oracle tests: the image model (the accelerator-bound part) is replaced by ``Oracle``, a backend that
  answers detect/ground/segment from the clip's ground truth, with one identity embedding per object
  plus noise. Everything else — VideoPredictor, tracker, TrackState bytes — is the real code, so these
  tests pin the video logic (occlusion gaps, births, RVOS distractors, VOS re-prompting, disjoint masks,
  bit-identical continuation) independently of how well a model is trained.
* Trained demo model tests (``demo_model`` fixture): the same clips through ``VideoPredictor.load()``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pytest

from glee.data.geometry import Shape, paste, rasterize
from glee.data.masks import box_iou, mask_box
from glee.data.render import Appearance, paint
from glee.data.spec import COLOURS, CROSS_ARM_RATIO, MIN_VISIBLE_FRACTION, STAR_INNER_RATIO
from glee.model.predictor import GleePredictor
from glee.model.prompts import PromptError
from glee.model.track_state import TrackState
from glee.model.types import ImageResult
from glee.model.video_predictor import FrameResult, VideoPredictor

# --------------------------------------------------------------------------------------------- clips


_RATIO = {"star": float(np.mean(STAR_INNER_RATIO)), "cross": float(np.mean(CROSS_ARM_RATIO))}


@dataclass(frozen=True)
class Mover:
    kind: str
    colour: str
    start: tuple[float, float]
    velocity: tuple[float, float]
    radius: float = 24.0


@dataclass
class Clip:
    frames: list[np.ndarray]
    masks: list[list[np.ndarray | None]]  # [object][frame]: visible mask, None where not annotated
    movers: list[Mover]


def make_clip(movers: list[Mover], frames: int, height: int = 240, width: int = 320) -> Clip:
    """Objects (z-order: later ones on top) at constant velocity over a flat grey background; an object
    is annotated where at least 40% of it is visible, as in the demo domain."""
    images: list[np.ndarray] = []
    masks: list[list[np.ndarray | None]] = [[] for _ in movers]
    for t in range(frames):
        canvas = np.full((height, width, 3), 120.0, np.float32)
        rasters = []
        for i, m in enumerate(movers):
            x, y = m.start[0] + t * m.velocity[0], m.start[1] + t * m.velocity[1]
            rasters.append(rasterize(Shape(m.kind, x, y, m.radius, 0.2 * i, _RATIO.get(m.kind, 0.0)), 2))
        covered = np.zeros((height, width), bool)
        visible: list[np.ndarray | None] = [None] * len(movers)
        for i in reversed(range(len(movers))):
            full = paste(rasters[i], height, width)
            mask = full & ~covered
            covered |= full
            area = int(mask.sum())
            if area > 0 and area >= MIN_VISIBLE_FRACTION * int(rasters[i].mask.sum()):
                visible[i] = mask
        for i, (m, raster) in enumerate(zip(movers, rasters, strict=True)):
            paint(canvas, raster, Appearance(m.colour, COLOURS[m.colour], None, 0))
            masks[i].append(visible[i])
        images.append(np.clip(np.rint(canvas), 0, 255).astype(np.uint8))
    return Clip(images, masks, movers)


def crossing_clip() -> Clip:
    """A blue circle passes over a red square (hiding it for a few frames); a green triangle enters."""
    return make_clip(
        [
            Mover("square", "red", (50, 110), (7, 0), 28),
            Mover("circle", "blue", (270, 110), (-7, 0), 26),
            Mover("triangle", "green", (160, -40), (1, 7), 26),
        ],
        frames=26,
    )


def distractor_clip() -> Clip:
    """The only circle (red) at first; from frame 4 a blue circle slides in from the right."""
    return make_clip(
        [
            Mover("circle", "red", (80, 120), (2, 1), 26),
            Mover("square", "yellow", (200, 60), (0, 2), 22),
            Mover("circle", "blue", (380, 150), (-8, 0), 30),
        ],
        frames=16,
    )


def vos_clip() -> Clip:
    """Two objects cross, the cross passing under the circle; a third, unprompted object is nearby."""
    return make_clip(
        [
            Mover("cross", "purple", (60, 100), (7, 1), 26),
            Mover("circle", "orange", (260, 120), (-7, 0), 34),
            Mover("hexagon", "white", (160, 200), (0, -2), 22),
        ],
        frames=24,
    )


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def best_match(result: FrameResult, truth: np.ndarray) -> tuple[int | None, float]:
    """(track id, mask IoU) of the output row that best covers a ground-truth mask."""
    ious = [mask_iou(m, truth) for m in result.masks]
    if not ious:
        return None, 0.0
    row = int(np.argmax(ious))
    return result.track_ids[row], ious[row]


# -------------------------------------------------------------------------------------------- oracle


class Oracle:
    """Image backend answering from ground truth: detection of every annotated object that matches a
    category, grounding that prefers ``prefer`` among objects matching the expression, and segmentation
    whose top candidate is the object the prompt points at (by mask IoU, box IoU or positive point)."""

    def __init__(self, clip: Clip, prefer: int | None = None, dim: int = 32, noise: float = 0.2) -> None:
        self.clip = clip
        self.prefer = prefer
        self.noise = noise
        rng = np.random.default_rng(0)
        self.identity = rng.normal(size=(len(clip.movers), dim)).astype(np.float32)
        self._index = {hashlib.sha1(f.tobytes()).digest(): t for t, f in enumerate(clip.frames)}
        self.calls: list[str] = []

    def check_texts(self, texts: list[str], name: str) -> None:
        assert texts and all(isinstance(t, str) for t in texts), name

    def _visible(self, image: np.ndarray) -> tuple[int, list[int]]:
        t = self._index[hashlib.sha1(np.ascontiguousarray(image).tobytes()).digest()]
        return t, [i for i, masks in enumerate(self.clip.masks) if masks[t] is not None]

    def _words(self, i: int) -> set[str]:
        return {self.clip.movers[i].kind, self.clip.movers[i].colour}

    def _result(self, t: int, rows: list[tuple[int, float, str]], top_k: int | None = None) -> ImageResult:
        rows = sorted(rows, key=lambda r: -r[1])[:top_k]
        embeds = []
        for i, _, _ in rows:
            noise = np.random.default_rng([t, i]).normal(size=self.identity.shape[1])
            embeds.append(self.identity[i] + self.noise * np.linalg.norm(self.identity[i]) * noise / 6)
        h, w = self.clip.frames[t].shape[:2]
        if not rows:
            return ImageResult.empty(h, w, self.identity.shape[1])
        masks = np.stack([self.clip.masks[i][t] for i, _, _ in rows])
        return ImageResult(
            boxes=np.asarray([mask_box(m) for m in masks], np.float32),
            scores=np.asarray([s for _, s, _ in rows], np.float32),
            labels=[label for _, _, label in rows],
            masks=masks,
            track_embeds=np.asarray(embeds, np.float32),
            query_index=np.asarray([i for i, _, _ in rows], np.int64),
        )

    def detect(self, image, categories, score_threshold=0.3, max_detections=100) -> ImageResult:
        self.calls.append("detect")
        t, visible = self._visible(image)
        rows = [(i, 0.9, c) for i in visible for c in categories if set(c.split()) <= self._words(i)]
        return self._result(t, [r for r in rows if r[1] >= score_threshold], max_detections)

    def ground(self, image, expressions, top_k=1) -> list[ImageResult]:
        self.calls.append("ground")
        t, visible = self._visible(image)
        out = []
        for expression in expressions:
            words = set(expression.split()) - {"the"}
            rows = []
            for i in visible:
                score = 0.1 if not words <= self._words(i) else 0.85 if i == self.prefer else 0.7
                rows.append((i, score, expression))
            out.append(self._result(t, rows, top_k))
        return out

    def segment(self, image, prompts, top_k=1) -> list[ImageResult]:
        self.calls.append("segment")
        t, visible = self._visible(image)
        out = []
        for prompt in prompts:
            masks = [self.clip.masks[i][t] for i in visible]
            if "mask" in prompt:
                fit = [mask_iou(np.asarray(prompt["mask"], bool), m) for m in masks]
            elif "box" in prompt:
                fit = list(box_iou(np.asarray([prompt["box"]]), np.asarray([mask_box(m) for m in masks]))[0])
            else:
                x, y = prompt["points"][0]
                fit = [float(m[int(y), int(x)]) for m in masks]
            target = visible[int(np.argmax(fit))] if fit and max(fit) > 0 else None
            rows = [(i, 0.9 if i == target else 0.2, "object") for i in visible]
            out.append(self._result(t, rows, top_k))
        return out


def _ids_per_object(clip: Clip, results: list[FrameResult]) -> list[dict[int, int | None]]:
    """Per object: frame -> id of the output matching it (IoU >= 0.5), over its annotated frames."""
    per_object = []
    for masks in clip.masks:
        seen = {}
        for t, truth in enumerate(masks):
            if truth is not None:
                track_id, iou = best_match(results[t], truth)
                seen[t] = track_id if iou >= 0.5 else None
        per_object.append(seen)
    return per_object


# ------------------------------------------------------------------------------------- oracle tests


def test_track_ids_survive_crossing_occlusion_and_births() -> None:
    clip = crossing_clip()
    hidden = [t for t, m in enumerate(clip.masks[0]) if m is None]
    assert 1 <= len(hidden) <= 4, hidden  # the clip really hides the square for a few frames
    results = VideoPredictor(Oracle(clip)).run(clip.frames, categories=["square", "circle", "triangle"])
    per_object = _ids_per_object(clip, results)
    ids = [set(seen.values()) for seen in per_object]
    assert all(len(s) == 1 and None not in s for s in ids), per_object
    assert len(set.union(*ids)) == 3
    # The triangle enters later and is born then; nothing is output for the hidden square.
    first_triangle = min(per_object[2])
    assert first_triangle > 0 and len(results[0]) == 2
    for t in hidden:
        assert len(results[t]) == sum(m[t] is not None for m in clip.masks)
    for r in results:
        assert isinstance(r, FrameResult) and len(r.track_ids) == len(r) == len(r.masks)
        assert all(type(i) is int for i in r.track_ids)
    assert [r.frame_index for r in results] == list(range(len(clip.frames)))


def test_rvos_keeps_the_referred_object_when_a_same_shape_distractor_appears() -> None:
    clip = distractor_clip()
    appears = min(t for t, m in enumerate(clip.masks[2]) if m is not None)
    assert appears > 0 and clip.masks[0][0] is not None
    # The backend ranks the newcomer above the referred circle from the moment it is visible.
    oracle = Oracle(clip, prefer=2)
    results = VideoPredictor(oracle).run(clip.frames, task="rvos", expression="the circle")
    for t, r in enumerate(results):
        assert len(r) == 1 and r.track_ids == [1]
        assert mask_iou(r.masks[0], clip.masks[0][t]) > 0.99, t
    # Per-frame top-1 grounding alone (no temporal rule) would switch to the newcomer: the test can fail.
    top1 = oracle.ground(clip.frames[-1], ["the circle"])[0]
    assert mask_iou(top1.masks[0], clip.masks[2][-1]) > 0.99


def test_vos_follows_two_prompted_objects_through_occlusion() -> None:
    clip = vos_clip()
    hidden = [t for t, m in enumerate(clip.masks[0]) if m is None]
    assert 1 <= len(hidden) <= 4, hidden
    oracle = Oracle(clip)
    prompts = [{"mask": clip.masks[0][0]}, {"box": list(mask_box(clip.masks[1][0]))}]
    results = VideoPredictor(oracle).run(clip.frames, task="vos", prompts=prompts)
    assert set(oracle.calls) == {"segment"}
    for t, r in enumerate(results):
        expected = {i + 1 for i in range(2) if clip.masks[i][t] is not None}
        assert set(r.track_ids) == expected, t
        for row, track_id in enumerate(r.track_ids):
            assert mask_iou(r.masks[row], clip.masks[track_id - 1][t]) > 0.99
        if len(r) == 2:
            assert not np.logical_and(r.masks[0], r.masks[1]).any()
    # The first frame answers a mask prompt with the given mask itself (and its tight box).
    first = results[0].track_ids.index(1)
    np.testing.assert_array_equal(results[0].masks[first], clip.masks[0][0])
    np.testing.assert_array_equal(results[0].boxes[first], mask_box(clip.masks[0][0]))


def test_a_frames_tracks_come_in_id_order() -> None:
    """Newly prompted objects are answered before the followed ones: the frame still lists them by id."""
    clip = vos_clip()
    predictor = VideoPredictor(Oracle(clip))
    state = predictor.start(task="vos")
    state, _ = predictor.step(state, clip.frames[0], {3: {"mask": clip.masks[0][0]}})
    state, result = predictor.step(state, clip.frames[1], {7: {"mask": clip.masks[1][1]}})
    assert result.track_ids == [3, 7]
    assert mask_iou(result.masks[1], clip.masks[1][1]) > 0.99


def reappearing_clip() -> Clip:
    """A red circle is seen for 4 frames, gone for 10 (longer than any ``max_age``) and comes back far from
    where its motion would put it; a blue square stays in view throughout."""
    square = Mover("square", "blue", (240, 70), (0, 0), 26)
    parts = [
        make_clip([Mover("circle", "red", (70, 120), (4, 0), 26), square], frames=4),
        make_clip([Mover("circle", "red", (-500, -500), (0, 0), 26), square], frames=10),
        make_clip([Mover("circle", "red", (230, 190), (-3, 0), 26), square], frames=5),
    ]
    return Clip(
        [f for c in parts for f in c.frames],
        [[m for c in parts for m in c.masks[i]] for i in range(2)],
        parts[0].movers,
    )


def test_vos_takes_back_an_object_that_returns_after_a_long_absence() -> None:
    """An object lost for more than ``max_age`` frames is kept and searched for over the whole frame; it is
    taken back by appearance alone (its box prediction is long stale), while the other object in view,
    unlike it, is never taken in its place."""
    clip = reappearing_clip()
    hidden = [t for t, m in enumerate(clip.masks[0]) if m is None]
    assert hidden == list(range(4, 14))
    oracle = Oracle(clip)
    predictor = VideoPredictor(oracle)
    state = predictor.start(task="vos")
    prompts = {1: {"mask": clip.masks[0][0]}, 2: {"mask": clip.masks[1][0]}}
    for t, frame in enumerate(clip.frames):
        state, result = predictor.step(state, frame, prompts if t == 0 else None)
        assert [track.track_id for track in state.tracks] == [1, 2]
        expected = [i + 1 for i in range(2) if clip.masks[i][t] is not None]
        assert result.track_ids == expected, t
        for row, track_id in enumerate(result.track_ids):
            assert mask_iou(result.masks[row], clip.masks[track_id - 1][t]) > 0.99, t
    # Far from its last box: a search near the motion prediction alone would not find the circle again.
    assert box_iou(state.tracks[0].box, mask_box(clip.masks[0][3]))[0, 0] == 0


def test_rvos_referent_out_of_view_is_not_replaced_and_comes_back_under_its_id() -> None:
    """While the referred circle is away (longer than ``max_age``) no frame has an output, although the
    backend's grounding still ranks the square first; when it comes back, far from its last box, it is
    the answer again, under the same id."""
    clip = reappearing_clip()
    results = VideoPredictor(Oracle(clip)).run(clip.frames, task="rvos", expression="the red circle")
    for t, r in enumerate(results):
        if clip.masks[0][t] is None:
            assert len(r) == 0, t
            continue
        assert r.track_ids == [1], t
        assert mask_iou(r.masks[0], clip.masks[0][t]) > 0.99, t


def test_vos_masks_of_different_objects_are_disjoint() -> None:
    clip = vos_clip()
    # Two mask prompts that overlap (mask IoU about 1/3): the less confident output loses the shared pixels.
    circle = clip.masks[1][0]
    overlapping = {1: {"mask": circle}, 2: {"mask": np.roll(circle, 28, axis=1)}}
    predictor = VideoPredictor(Oracle(clip))
    _, result = predictor.step(predictor.start(task="vos"), clip.frames[0], overlapping)
    assert result.track_ids == [1, 2]
    assert not np.logical_and(result.masks[0], result.masks[1]).any()


def test_a_vos_prompt_on_a_followed_object_corrects_it_under_its_id_and_a_second_id_is_refused() -> None:
    """A later frame's prompt without an id adds an object; on an object already followed it is refused
    (two ids on one object fight over its pixels), as are two prompts on one object. Under the object's
    id, the prompt re-initialises that object, and no id is used up."""
    clip = vos_clip()
    predictor = VideoPredictor(Oracle(clip))
    state, _ = predictor.step(predictor.start(task="vos"), clip.frames[0], [{"mask": clip.masks[0][0]}])
    cross = {"box": list(mask_box(clip.masks[0][1]))}
    circle = {t: {"points": [np.argwhere(clip.masks[1][t]).mean(0)[::-1].tolist()]} for t in (1, 2)}
    with pytest.raises(PromptError, match=r"object 2 selects the object followed as object 1 \(mask IoU"):
        predictor.step(state, clip.frames[1], [cross])
    with pytest.raises(PromptError, match="the prompts of objects 2 and 3 select one object"):
        predictor.step(state, clip.frames[1], [circle[1], circle[1]])
    state, result = predictor.step(state, clip.frames[1], {1: cross})
    assert result.track_ids == [1] and state.next_id == 2
    assert mask_iou(result.masks[0], clip.masks[0][1]) > 0.99
    state, result = predictor.step(state, clip.frames[2], [circle[2]])  # a new object, beside object 1
    assert sorted(result.track_ids) == [1, 2]


def test_continuing_from_state_bytes_is_bit_identical() -> None:
    clip = vos_clip()
    predictor = VideoPredictor(Oracle(clip))
    prompts = {3: {"mask": clip.masks[0][0]}, 7: {"mask": clip.masks[1][0]}}
    in_memory = predictor.start(task="vos", memory_size=2)
    via_bytes = predictor.start(task="vos", memory_size=2)
    sizes = []
    for t, frame in enumerate(clip.frames):
        in_memory, a = predictor.step(in_memory, frame, prompts if t == 0 else None)
        via_bytes, b = predictor.step(
            TrackState.from_bytes(via_bytes.to_bytes()), frame, prompts if t == 0 else None
        )
        assert a.track_ids == b.track_ids
        for name in ("boxes", "scores", "masks", "track_embeds", "query_index"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        sizes.append(len(in_memory.to_bytes()))
        assert in_memory.to_bytes() == via_bytes.to_bytes()
    assert a.track_ids == [3, 7]
    assert max(sizes) < 4 * 1024, sizes


def test_step_does_not_change_the_given_state() -> None:
    clip = crossing_clip()
    predictor = VideoPredictor(Oracle(clip))
    state, _ = predictor.step(predictor.start(categories=["square", "circle"]), clip.frames[0])
    snapshot = state.to_bytes()
    first, r1 = predictor.step(state, clip.frames[1])
    second, r2 = predictor.step(state, clip.frames[1])
    assert state.to_bytes() == snapshot
    assert first.to_bytes() == second.to_bytes() and r1.track_ids == r2.track_ids
    assert first.frame_index == 2 and state.frame_index == 1


def test_invalid_requests_fail_clearly() -> None:
    clip = crossing_clip()
    predictor = VideoPredictor(Oracle(clip))
    with pytest.raises(ValueError, match="needs the prompt"):
        predictor.step(predictor.start(task="vos"), clip.frames[0])
    with pytest.raises(ValueError, match="only accepted by task 'vos'"):
        predictor.step(predictor.start(categories=["circle"]), clip.frames[0], {"box": [0, 0, 5, 5]})
    with pytest.raises(ValueError, match="mask prompt of object 1"):
        predictor.step(predictor.start(task="vos"), clip.frames[0], {"mask": np.zeros((4, 4), bool)})
    with pytest.raises(ValueError, match="needs one of"):
        predictor.step(predictor.start(task="vos"), clip.frames[0], [{"polygon": []}])
    state, _ = predictor.step(predictor.start(categories=["circle"]), clip.frames[0])
    with pytest.raises(ValueError, match="frame size"):
        predictor.step(state, clip.frames[1][:100])
    with pytest.raises(ValueError, match="needs an expression"):
        predictor.start(task="rvos")


# ------------------------------------------------------------------- real model, random weights


@pytest.fixture(scope="module")
def random_model() -> VideoPredictor:
    """The real PyTorch demo-size GLEE with random weights: checks plumbing, not meaning."""
    from glee.model import GleePredictor

    return VideoPredictor(GleePredictor.random("demo"))


@pytest.mark.parametrize("task", ["track", "rvos", "vos"])
def test_random_demo_model_plumbing(random_model: VideoPredictor, task: str) -> None:
    """Two frames per task (the second exercises association / re-prompting on real model outputs)."""
    clip = vos_clip()
    options = {
        "track": {"categories": ["cross", "circle"], "score_threshold": 0.0, "max_detections": 5},
        "rvos": {"expression": "the orange circle", "score_threshold": 0.0, "top_k": 3},
        "vos": {"score_threshold": 0.0, "top_k": 3},
    }[task]
    prompts = None
    if task == "vos":
        prompts = [{"mask": clip.masks[0][0]}, {"box": list(mask_box(clip.masks[1][0]))}]
    first, r0 = random_model.step(random_model.start(task=task, **options), clip.frames[0], prompts)
    state, r1 = random_model.step(TrackState.from_bytes(first.to_bytes()), clip.frames[1])
    assert TrackState.from_bytes(state.to_bytes()).to_bytes() == state.to_bytes()
    height, width = clip.frames[0].shape[:2]
    for t, r in enumerate((r0, r1)):
        n = len(r.track_ids)
        assert r.frame_index == t and n >= 1
        assert r.boxes.shape == (n, 4) and r.boxes.dtype == np.float32
        assert r.scores.shape == (n,) and len(r.labels) == n
        assert r.masks.shape == (n, height, width) and r.masks.dtype == bool
        assert r.track_embeds.shape == (n, 128)
        assert len(set(r.track_ids)) == n and all(type(i) is int for i in r.track_ids)
    if task == "vos":
        assert r0.track_ids == [1, 2]
        np.testing.assert_array_equal(r0.masks[0], clip.masks[0][0])
    if task == "rvos":
        assert r1.track_ids == [1] and r1.labels == ["the orange circle"]


# ------------------------------------------------------------------- trained embedded demo model


@pytest.fixture(scope="module")
def demo_model() -> VideoPredictor:
    """The embedded demo model (``glee/weights/glee-demo``, committed with the package)."""
    return VideoPredictor.load()


def test_demo_model_keeps_ids_through_crossing(demo_model: VideoPredictor) -> None:
    clip = crossing_clip()
    results = demo_model.run(clip.frames, categories=["square", "circle", "triangle"])
    per_object = _ids_per_object(clip, results)
    for seen in per_object:
        found = [i for i in seen.values() if i is not None]
        assert len(found) >= 0.8 * len(seen), seen
        assert len(set(found)) == 1, seen
    assert len({next(iter(set(s.values()) - {None})) for s in per_object}) == 3


def test_demo_model_rvos_keeps_referent_despite_distractor(demo_model: VideoPredictor) -> None:
    clip = distractor_clip()
    results = demo_model.run(clip.frames, task="rvos", expression="the circle")
    ious = [mask_iou(r.masks[0], clip.masks[0][t]) if len(r) else 0.0 for t, r in enumerate(results)]
    assert np.mean(ious) >= 0.7, ious
    assert min(ious[-4:]) >= 0.5, ious


def test_video_keeps_bilinear_masks_and_one_grounding_view_and_leaves_the_image_predictor_alone() -> None:
    """The guided mask filter and the mirrored grounding view (image tasks) are off for video: the filter's
    tight masks of a nearly hidden object lost the crossing cross of the next test (TRAINING.md, "Guided
    masks"), and the mirrored view did not help RVOS ("A second, mirrored view for grounding")."""
    images = GleePredictor.load()
    video = VideoPredictor(images)
    assert images.cfg.mask_guided_radius is not None and video.predictor.cfg.mask_guided_radius is None
    assert images.cfg.ground_mirror_weight > 0 and video.predictor.cfg.ground_mirror_weight == 0
    assert video.predictor.model is images.model


def test_demo_model_vos_follows_two_objects(demo_model: VideoPredictor) -> None:
    clip = vos_clip()
    prompts = {1: {"mask": clip.masks[0][0]}, 2: {"mask": clip.masks[1][0]}}
    results = demo_model.run(clip.frames, task="vos", prompts=prompts)
    for obj, track_id in ((0, 1), (1, 2)):
        ious = []
        for t, truth in enumerate(clip.masks[obj]):
            rows = [i for i, tid in enumerate(results[t].track_ids) if tid == track_id]
            predicted = results[t].masks[rows[0]] if rows else np.zeros_like(clip.masks[1][0])
            ious.append(mask_iou(predicted, truth) if truth is not None else float(not rows))
        assert np.mean(ious) >= 0.7, (obj, ious)
