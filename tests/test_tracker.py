"""The association core and TrackState serialization, on hand-made boxes and embeddings (no model)."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from glee.model.track_state import FORMAT_VERSION, TaskConfig, TrackState, TrackStateError
from glee.model.tracker import (
    associate,
    follow,
    miss,
    new_track,
    observe,
    predicted_box,
    searched,
    select_candidate,
    select_exclusive,
)
from glee.model.types import ImageResult

DIM = 128


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    e = rng.normal(size=(n, DIM)).astype(np.float32)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def _dets(boxes, embeds, scores=None, labels=None, queries=None, masks=None) -> ImageResult:
    n = len(boxes)
    return ImageResult(
        boxes=np.asarray(boxes, np.float32).reshape(n, 4),
        scores=np.asarray(scores if scores is not None else [0.9] * n, np.float32),
        labels=list(labels) if labels is not None else ["circle"] * n,
        masks=np.asarray(masks, bool) if masks is not None else np.zeros((n, 1, 1), bool),
        track_embeds=np.asarray(embeds, np.float32).reshape(n, DIM),
        query_index=np.asarray(queries if queries is not None else np.arange(n), np.int64),
    )


def _box(cx: float, cy: float, side: float = 30.0) -> list[float]:
    return [cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2]


def _state(**options) -> TrackState:
    return TrackState(TaskConfig(task="track", categories=("circle",), **options))


class Scene:
    """Objects with fixed identity embeddings moving at constant velocity; ``frame`` returns noisy,
    shuffled detections of the visible ones plus the object index of each row."""

    def __init__(self, starts, velocities, seed: int = 0, noise: float = 0.15) -> None:
        self.rng = np.random.default_rng(seed)
        self.starts = np.asarray(starts, float)
        self.velocities = np.asarray(velocities, float)
        self.embeds = _unit(self.rng, len(starts))
        self.noise = noise

    def frame(self, t: int, hidden: set[int] = frozenset()) -> tuple[ImageResult, list[int]]:
        objs = [i for i in range(len(self.starts)) if i not in hidden]
        self.rng.shuffle(objs)
        centres = self.starts + t * self.velocities + self.rng.normal(0, 1.0, self.starts.shape)
        embeds = self.embeds[objs] + self.noise * _unit(self.rng, len(objs))
        boxes = [_box(*centres[i]) for i in objs]
        return _dets(boxes, embeds, scores=self.rng.uniform(0.6, 0.95, len(objs))), objs


def _run(state: TrackState, scene: Scene, frames: int, hidden_at=lambda t: set()) -> list[dict[int, int]]:
    """Per frame, object index -> track id."""
    out = []
    for t in range(frames):
        det, objs = scene.frame(t, hidden_at(t))
        ids = associate(state, det)
        out.append({obj: int(ids[row]) for row, obj in enumerate(objs)})
    return out


def _ids_of(history: list[dict[int, int]], obj: int) -> set[int]:
    return {frame[obj] for frame in history if obj in frame}


def test_crossing_paths_keep_ids() -> None:
    # Two objects run into each other head-on and pass through; a third crosses them vertically.
    scene = Scene(starts=[(40, 100), (200, 100), (120, 20)], velocities=[(8, 0), (-8, 0), (0, 8)])
    history = _run(_state(), scene, 22)
    ids = [_ids_of(history, obj) for obj in range(3)]
    assert all(len(s) == 1 for s in ids), ids
    assert len(set.union(*ids)) == 3
    assert -1 not in set.union(*ids)


def test_look_alikes_crossing_are_told_apart_by_motion() -> None:
    # Identical appearance: only the constant-velocity prediction says who is who after they meet.
    rng = np.random.default_rng(15)
    same = np.repeat(_unit(rng, 1), 2, axis=0)
    state = _state()
    seen: dict[int, set[int]] = {0: set(), 1: set()}
    for t in range(14):
        xa, xb = 40 + 10 * t, 170 - 10 * t
        order = [1, 0] if t % 2 else [0, 1]
        boxes = [_box(xa, 100), _box(xb, 106)]
        ids = associate(state, _dets([boxes[i] for i in order], same))
        for row, obj in enumerate(order):
            seen[obj].add(int(ids[row]))
    assert seen == {0: {1}, 1: {2}}


def test_swapped_positions_follow_embeddings() -> None:
    # Teleport: the two objects exchange places between two frames; only appearance says who is who.
    rng = np.random.default_rng(1)
    emb = _unit(rng, 2)
    state = _state()
    first = associate(state, _dets([_box(50, 50), _box(150, 50)], emb))
    for _ in range(3):
        same = associate(state, _dets([_box(50, 50), _box(150, 50)], emb))
        np.testing.assert_array_equal(same, first)
    swapped = associate(state, _dets([_box(150, 50), _box(50, 50)], emb))
    np.testing.assert_array_equal(swapped, first)


def test_occlusion_gap_of_four_frames_keeps_id() -> None:
    scene = Scene(starts=[(40, 60), (40, 160)], velocities=[(6, 0), (6, 1)], seed=2)
    history = _run(_state(), scene, 16, hidden_at=lambda t: {0} if 5 <= t < 9 else set())
    assert all(0 not in history[t] for t in range(5, 9))
    assert len(_ids_of(history, 0)) == 1
    assert len(_ids_of(history, 1)) == 1


def test_motion_survives_a_box_shrinking_under_an_occluder() -> None:
    """The leading edge stops as the object slides under another: the prediction must keep moving the box
    at the object's speed and keep its size (per-edge velocities shrank it, and soon inverted it)."""
    emb = _unit(np.random.default_rng(13), 1)
    state = _state()
    for t in range(4):
        associate(state, _dets([_box(40 + 6 * t, 50)], emb))
    last = _box(40 + 6 * 3, 50)
    shrunk = [last[0] + 6, last[1], last[2], last[3]]  # the right edge is hidden, the left still moves
    associate(state, _dets([shrunk], emb))
    for _ in range(2):
        associate(state, _dets([], np.zeros((0, DIM))))
    track = state.tracks[0]
    np.testing.assert_allclose(track.velocity, [6, 0, 6, 0], atol=1e-5)
    np.testing.assert_allclose(predicted_box(track), np.add(shrunk, [18, 0, 18, 0]), atol=1e-4)


@pytest.mark.parametrize(("gap", "same_id"), [(3, True), (4, False)])
def test_gap_beyond_max_age_gives_new_id(gap: int, same_id: bool) -> None:
    scene = Scene(starts=[(40, 60)], velocities=[(3, 0)], seed=3)
    state = _state(max_age=3)
    history = _run(state, scene, 4 + gap + 3, hidden_at=lambda t: {0} if 4 <= t < 4 + gap else set())
    ids = _ids_of(history, 0)
    assert len(ids) == (1 if same_id else 2)
    assert len(state.tracks) == 1


def test_births_only_above_score_threshold() -> None:
    rng = np.random.default_rng(4)
    emb = _unit(rng, 2)
    state = _state(score_threshold=0.5)
    ids = associate(state, _dets([_box(50, 50), _box(150, 50)], emb, scores=[0.45, 0.6]))
    assert ids[0] == -1 and ids[1] > 0
    assert [t.track_id for t in state.tracks] == [int(ids[1])]
    # Once born, a track continues on a score between match_threshold (0.25) and score_threshold...
    assert associate(state, _dets([_box(150, 50)], emb[1:], scores=[0.3]))[0] == ids[1]
    # ...but not below match_threshold, and a low score never starts a track.
    assert associate(state, _dets([_box(150, 50)], emb[1:], scores=[0.2]))[0] == -1
    assert state.tracks[0].age == 1


def test_tracks_die_after_max_age_unmatched_frames() -> None:
    rng = np.random.default_rng(5)
    emb = _unit(rng, 2)
    state = _state(max_age=2)
    associate(state, _dets([_box(50, 50), _box(150, 50)], emb))
    for _ in range(2):
        associate(state, _dets([_box(50, 50)], emb[:1]))
        assert len(state.tracks) == 2
    associate(state, _dets([_box(50, 50)], emb[:1]))
    assert [t.track_id for t in state.tracks] == [1]
    assert state.next_id == 3 and state.frame_index == 4


def test_duplicate_queries_start_one_track() -> None:
    rng = np.random.default_rng(6)
    emb = _unit(rng, 1)
    near = _box(51, 50)
    # Rows 0/1: one query listed under two labels; row 2: another query on the same object.
    det = _dets(
        [_box(50, 50), _box(50, 50), near],
        np.repeat(emb, 3, axis=0),
        scores=[0.8, 0.5, 0.7],
        labels=["circle", "hexagon", "circle"],
        queries=[7, 7, 9],
    )
    state = _state()
    ids = associate(state, det)
    np.testing.assert_array_equal(ids, [1, -1, -1])
    assert len(state.tracks) == 1 and state.tracks[0].label == "circle"


def _box_mask(box: list[float], size: int = 128) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    x1, y1, x2, y2 = (round(v) for v in box)
    mask[y1:y2, x1:x2] = True
    return mask


@pytest.mark.parametrize(("mask_nms_overlap", "continued"), [(0.7, False), (1.0, True)])
def test_duplicate_mask_does_not_continue_an_occluded_track(mask_nms_overlap: float, continued: bool) -> None:
    """Object b goes under a; a second query on a's visible pixels, its embedding close to b's, must not
    keep b's track alive in a's place (with mask NMS off it does: the test can fail)."""
    rng = np.random.default_rng(11)
    emb = _unit(rng, 2)
    a, b = _box(40, 50), _box(85, 50)
    masks = [_box_mask(a), _box_mask(b)]
    state = _state(mask_nms_overlap=mask_nms_overlap)
    for _ in range(3):
        associate(state, _dets([a, b], emb, masks=masks))
    # A slightly shifted box, so box IoU to a's stays under nms_iou: only the masks say "duplicate".
    shifted = [a[0] + 14, a[1], a[2] + 14, a[3]]
    dup_mask = _box_mask(a) | _box_mask(shifted)
    det = _dets([a, shifted], [emb[0], emb[1]], scores=[0.9, 0.6], masks=[_box_mask(a), dup_mask],
                labels=["circle", "square"])  # fmt: skip
    ids = associate(state, det)
    assert ids[0] == 1
    assert bool(ids[1] == 2) is continued
    if not continued:
        assert ids[1] == -1 and state.track(2).age == 1


def test_dissimilar_detection_does_not_continue_a_track() -> None:
    rng = np.random.default_rng(7)
    emb = _unit(rng, 2)
    state = _state()
    associate(state, _dets([_box(50, 50)], emb[:1]))
    # Same place, unrelated appearance (cosine ~ 0 < embed_gate): a new object, not the old one.
    ids = associate(state, _dets([_box(50, 50)], emb[1:]))
    assert ids[0] == 2


def test_memory_is_the_last_k_embeddings_in_fp16() -> None:
    rng = np.random.default_rng(8)
    emb = _unit(rng, 5)
    state = _state(memory_size=3)
    for e in emb:
        associate(state, _dets([_box(50, 50)], e[None] * 0.2 + emb[0] * 0.8))
    track = state.tracks[0]
    assert track.embeds.dtype == np.float16 and track.embeds.shape == (3, DIM)
    assert track.scores.dtype == np.float32 and track.box.dtype == np.float32


def test_referred_object_survives_same_shape_distractor() -> None:
    rng = np.random.default_rng(9)
    base = _unit(rng, 2)
    # A look-alike (cosine 0.75 to the target) appears next to it and out-scores it on grounding alone.
    look_alike = 0.75 * base[0] + np.sqrt(1 - 0.75**2) * base[1]
    emb = np.stack([base[0], look_alike])
    target, distractor = _box(60, 60), _box(75, 60)

    def run(temporal_weight: float) -> list[int | None]:
        cfg = TaskConfig(task="rvos", expression="the red circle", temporal_weight=temporal_weight)
        state = TrackState(cfg)
        picks = [follow(state, _dets([target], emb[:1], scores=[0.8]))]
        for _ in range(5):
            picks.append(follow(state, _dets([distractor, target], emb[[1, 0]], scores=[0.75, 0.55])))
        return picks

    assert run(1.0) == [0, 1, 1, 1, 1, 1]
    # Without the temporal term the grounding score alone flips to the distractor.
    assert run(0.0) == [0, 0, 0, 0, 0, 0]


def test_rvos_waits_for_a_confident_first_match_and_tolerates_gaps() -> None:
    rng = np.random.default_rng(10)
    emb = _unit(rng, 2)
    state = TrackState(TaskConfig(task="rvos", expression="the star", score_threshold=0.5, max_age=2))
    assert follow(state, _dets([_box(50, 50)], emb[:1], scores=[0.4])) is None
    assert not state.tracks
    assert follow(state, _dets([_box(50, 50)], emb[:1], scores=[0.6])) == 0
    # Only an unrelated candidate: no output, but the referred track lives on.
    assert follow(state, _dets([_box(200, 200)], emb[1:], scores=[0.9])) is None
    assert state.tracks[0].age == 1
    assert follow(state, _dets([_box(52, 50)], emb[:1], scores=[0.3])) == 0
    assert state.tracks[0].track_id == 1


def test_select_candidate_gates_on_similarity() -> None:
    rng = np.random.default_rng(11)
    emb = _unit(rng, 2)
    state = _state()
    associate(state, _dets([_box(50, 50)], emb[:1]))
    cfg = state.config
    far_stranger = _dets([_box(300, 300)], emb[1:], scores=[0.99])
    assert select_candidate(state.tracks[0], far_stranger, cfg) is None
    assert select_candidate(state.tracks[0], _dets([], np.zeros((0, DIM))), cfg) is None


@pytest.mark.parametrize(
    ("task", "gate", "follows"), [("track", 0.3, True), ("vos", 0.4, False), ("rvos", 0.4, False)]
)
def test_look_alike_far_from_the_predicted_box(task: str, gate: float, follows: bool) -> None:
    """Tracking may re-identify by appearance alone; the default gate of VOS and RVOS, whose object is
    given, asks for some box overlap too."""
    rng = np.random.default_rng(12)
    emb = _unit(rng, 1)
    look_alike = 0.85 * emb[0] + np.sqrt(1 - 0.85**2) * _unit(rng, 1)[0]  # cosine ~0.85 to the memory
    text = {"track": {"categories": ("circle",)}, "rvos": {"expression": "the circle"}}.get(task, {})
    cfg = TaskConfig(task=task, **text)
    assert cfg.match_gate == gate
    state = TrackState(cfg)
    associate(state, _dets([_box(50, 50)], emb))
    far = _dets([_box(150, 50)], look_alike[None], scores=[0.9])
    assert (select_candidate(state.tracks[0], far, cfg) == 0) is follows
    assert TaskConfig(task="vos", match_gate=0.3).match_gate == 0.3


@pytest.mark.parametrize("task", ["vos", "rvos", "track"])
def test_lost_track_is_reacquired_on_appearance(task: str) -> None:
    """An object that went under another comes back whole beside its shrunken, extrapolated box (box IoU
    0): a track missed last frame takes it on appearance (``lost_gate`` 0.3); a live track would not
    (``match_gate`` 0.4), and a lost one still ignores the unlike occluder (cosine 0.4) whose larger box
    covers the predicted one."""
    rng = np.random.default_rng(13)
    emb = _unit(rng, 1)
    others = _unit(rng, 2)
    others -= (others @ emb[0])[:, None] * emb[0]
    others /= np.linalg.norm(others, axis=1, keepdims=True)
    look_alike = 0.85 * emb[0] + np.sqrt(1 - 0.85**2) * others[0]
    unlike = 0.4 * emb[0] + np.sqrt(1 - 0.4**2) * others[1]
    text = {"track": {"categories": ("circle",), "match_gate": 0.4}, "rvos": {"expression": "the circle"}}
    cfg = TaskConfig(task=task, **text.get(task, {}))
    assert (cfg.match_gate, cfg.lost_gate) == (0.4, 0.3)
    state = TrackState(cfg)
    associate(state, _dets([_box(50, 50)], emb))
    track = state.tracks[0]
    back = _dets([_box(90, 50)], look_alike[None], scores=[0.29])
    assert select_candidate(track, back, cfg) is None
    miss(state, track)
    assert select_candidate(track, _dets([_box(60, 50, side=90)], unlike[None]), cfg) is None
    if task == "track":
        assert associate(state, back).tolist() == [track.track_id]
    else:
        assert select_candidate(track, back, cfg) == 0


def test_vos_object_lost_beyond_max_age_is_kept_and_taken_back_on_appearance_alone() -> None:
    """A VOS object missed for more than ``max_age`` frames stays in the state; anywhere in the frame and
    whatever its score, a candidate at ``reacquire_gate`` cosine (0.7) takes it back, an unlike one (0.6)
    does not. Until then, the far look-alike is refused (no box overlap with the prediction, low score)."""
    rng = np.random.default_rng(15)
    emb = _unit(rng, 1)
    other = _unit(rng, 1)[0]
    other -= (other @ emb[0]) * emb[0]
    other /= np.linalg.norm(other)
    like, unlike = (c * emb[0] + np.sqrt(1 - c**2) * other for c in (0.75, 0.6))
    cfg = TaskConfig(task="vos")
    assert (cfg.max_age, cfg.reacquire_gate) == (2, 0.7)
    state = TrackState(cfg)
    track = new_track(state, _dets([_box(50, 50)], emb), 0, 1)
    far = _dets([_box(300, 200), _box(200, 300)], np.stack([unlike, like]), scores=[0.9, 0.05])
    for age in range(1, 6):
        miss(state, track)
        assert state.tracks == [track] and track.age == age
        assert select_candidate(track, far, cfg) == (1 if age > cfg.max_age else None)
    observe(track, far, 1, cfg)
    assert track.age == 0 and not searched(track, cfg)


def test_rvos_referent_is_never_replaced_and_comes_back_under_its_id() -> None:
    """The RVOS referent, out of view for longer than ``max_age``, is kept: no other object starts a track
    in its place (however well it scores), and the referent is taken back by appearance where it
    reappears, far from its motion prediction, under id 1."""
    rng = np.random.default_rng(16)
    emb, stranger = _unit(rng, 2)
    state = TrackState(TaskConfig(task="rvos", expression="the star"))
    assert state.config.max_age == 8 and state.config.score_threshold == 0.0
    assert follow(state, _dets([_box(50, 50)], emb[None])) == 0
    only_stranger = _dets([_box(200, 200)], stranger[None], scores=[0.9])
    for age in range(1, 13):
        assert follow(state, only_stranger) is None
        assert [t.track_id for t in state.tracks] == [1] and state.tracks[0].age == age
    back = _dets([_box(200, 200), _box(300, 100)], np.stack([stranger, emb]), scores=[0.9, 0.05])
    assert follow(state, back) == 1
    assert [t.track_id for t in state.tracks] == [1] and state.tracks[0].age == 0


def test_vos_objects_never_share_a_candidate() -> None:
    """Two followed objects whose prompts both rank the same object first: the one that wants it more
    takes it and the other its next candidate; pixels of a newly prompted object are taken by it."""
    emb = _unit(np.random.default_rng(14), 1)
    cfg = TaskConfig(task="vos")
    state = TrackState(cfg)
    seed = _dets([_box(50, 50)], emb)
    a, b = new_track(state, seed, 0, 1), new_track(state, seed, 0, 2)
    x, y = _box_mask(_box(50, 50)), _box_mask(_box(54, 50))
    y[:, :62] = False
    boxes, embeds, masks = [_box(50, 50), _box(54, 50)], np.repeat(emb, 2, axis=0), [x, y]
    for_a = _dets(boxes, embeds, scores=[0.9, 0.5], masks=masks)
    for_b = _dets(boxes, embeds, scores=[0.8, 0.5], masks=masks)
    assert select_candidate(b, for_b, cfg) == 0
    picks = select_exclusive([b, a], [for_b, for_a], [], cfg)
    assert [(track.track_id, row) for track, _, row in picks] == [(2, 1), (1, 0)]
    picks = select_exclusive([a, b], [for_a, for_b], [x], cfg)
    assert [row for _, _, row in picks] == [1, None]


def _frames(scene: Scene, count: int) -> list[ImageResult]:
    return [scene.frame(t, {1} if 6 <= t < 9 else set())[0] for t in range(count)]


def test_state_round_trip_is_lossless_and_small() -> None:
    scene = Scene(starts=[(30 + 40 * i, 40 + 30 * i) for i in range(6)], velocities=[(4, 2)] * 6, seed=12)
    state = _state(memory_size=3)
    for det in _frames(scene, 12):
        associate(state, det)
    state.tracks[0].mask_rle = b"PQ0`0a5"
    data = state.to_bytes()
    again = TrackState.from_bytes(data)
    assert again.to_bytes() == data
    assert again.config == state.config
    for a, b in zip(state.tracks, again.tracks, strict=True):
        assert (a.track_id, a.label, a.age, a.hits, a.mask_rle) == (
            b.track_id,
            b.label,
            b.age,
            b.hits,
            b.mask_rle,
        )
        for name in ("box", "velocity", "embeds", "scores"):
            x, y = getattr(a, name), getattr(b, name)
            assert x.dtype == y.dtype and np.array_equal(x, y)
    assert len(state.tracks) == 6
    assert len(data) < 8 * 1024, len(data)
    # Bounded: memory and score windows do not grow with the video length.
    for det in _frames(scene, 40)[12:]:
        associate(state, det)
    assert len(state.to_bytes()) <= len(data)


def test_continuing_from_bytes_is_bit_identical() -> None:
    scene = Scene(starts=[(40, 100), (200, 100), (120, 20)], velocities=[(8, 0), (-8, 0), (0, 8)], seed=13)
    frames = _frames(scene, 20)
    in_memory = _state()
    via_bytes = _state()
    for det in frames:
        ids_a = associate(in_memory, det)
        via_bytes = TrackState.from_bytes(via_bytes.to_bytes())
        ids_b = associate(via_bytes, det)
        np.testing.assert_array_equal(ids_a, ids_b)
    assert in_memory.to_bytes() == via_bytes.to_bytes()


def test_decode_errors_are_clear() -> None:
    state = _state()
    associate(state, _dets([_box(50, 50)], _unit(np.random.default_rng(14), 1)))
    data = bytearray(state.to_bytes())
    bumped = bytearray(data)
    struct.pack_into("<H", bumped, 4, FORMAT_VERSION + 1)
    with pytest.raises(TrackStateError, match="version 2 is not supported"):
        TrackState.from_bytes(bytes(bumped))
    with pytest.raises(TrackStateError, match="magic"):
        TrackState.from_bytes(b"XXXX" + bytes(data[4:]))
    with pytest.raises(TrackStateError, match="size mismatch"):
        TrackState.from_bytes(bytes(data[:-3]))
    with pytest.raises(TrackStateError, match="too short"):
        TrackState.from_bytes(b"GLTS")
    corrupted = bytearray(data)
    corrupted[-1] ^= 0xFF
    with pytest.raises(TrackStateError, match="checksum"):
        TrackState.from_bytes(bytes(corrupted))
    # Well-framed bytes whose content is wrong: a meta document without the frame counter.
    meta = b'{"config":{"task":"vos"},"next_id":1,"image_size":null,"embed_dim":0,"labels":[]}'
    framed = struct.pack("<4sHHIII", b"GLTS", FORMAT_VERSION, 0, len(meta), 0, zlib.crc32(meta)) + meta
    with pytest.raises(TrackStateError, match="malformed TrackState: 'frame_index'"):
        TrackState.from_bytes(framed)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"task": "track"}, "needs categories"),
        ({"task": "rvos"}, "needs an expression"),
        ({"task": "vis"}, "unknown video task"),
        ({"task": "vos", "score_threshold": 1.5}, "score_threshold"),
        ({"task": "vos", "memory_size": 0}, "memory_size"),
        ({"task": "vos", "reacquire_gate": 1.2}, "reacquire_gate"),
        ({"task": "vos", "max_age": -1}, "max_age"),
        ({"task": "vos", "score_threshold": 0.2, "match_threshold": 0.4}, "must not exceed"),
    ],
)
def test_task_config_validation(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TaskConfig(**options)


def test_match_threshold_defaults_to_half_the_birth_threshold_and_vos_has_its_own() -> None:
    track = TaskConfig(task="track", categories=("star",), score_threshold=0.4)
    assert track.match_threshold == pytest.approx(0.2)
    vos = TaskConfig(task="vos", score_threshold=0.4)
    assert (vos.match_threshold, vos.temporal_weight) == (0.05, 2.0)
    assert TaskConfig(task="vos", score_threshold=0.02).match_threshold == 0.02
    assert TaskConfig(task="rvos", expression="the star").temporal_weight == 1.0


def test_score_threshold_defaults_per_task() -> None:
    """RVOS answers the first frame's top-1 however low its score; track and VOS births need 0.3."""
    assert TaskConfig(task="rvos", expression="the star").score_threshold == 0.0
    assert TaskConfig(task="track", categories=("star",)).score_threshold == 0.3
    assert TaskConfig(task="vos").score_threshold == 0.3


def test_max_age_defaults_per_task() -> None:
    """Tracks die after 8 missed frames; a VOS object is searched for over the whole frame after 2."""
    assert TaskConfig(task="rvos", expression="the star").max_age == 8
    assert TaskConfig(task="track", categories=("star",)).max_age == 8
    assert TaskConfig(task="vos").max_age == 2


def test_rvos_starts_from_the_grounding_top1_not_the_best_final_score() -> None:
    """Ground rows come in the model's grounding order; a lower-ranked candidate with a higher final
    score (probability x mask score) must not become the referred object."""
    rng = np.random.default_rng(11)
    emb = _unit(rng, 2)
    state = TrackState(TaskConfig(task="rvos", expression="the leftmost star"))
    assert follow(state, _dets([_box(40, 50), _box(120, 50)], emb, scores=[0.12, 0.6])) == 0
    assert state.tracks[0].box.tolist() == _box(40, 50)
