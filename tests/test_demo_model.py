"""The committed demo model (``glee/weights/glee-demo``) on held-out data it never saw.

Fresh scenes and videos are generated here with seeds the training data does not use, and scored with
the same harness as ``glee eval``. The thresholds sit a little below what the committed model measured on
these same sets, so a worse model, a broken post-processing step or a broken tracker fails; the larger
held-out evaluation and the product targets are in TRAINING.md.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from glee.data.videos import VideoConfig
from glee.data.writers import write_images, write_videos
from glee.evaluation.images import evaluate_images
from glee.evaluation.iou import mask_pair_iou
from glee.evaluation.videos import evaluate_videos
from glee.model import GleePredictor, get_config
from glee.model.video_predictor import VideoPredictor

pytestmark = pytest.mark.slow

HELDOUT_IMAGE_SEED = 424242
HELDOUT_VIDEO_SEED = 434343
NUM_IMAGES = 40
NUM_VIDEOS = 6

# metric path -> lowest acceptable value on the small held-out sets above (the value this model measured
# on them, torch 2.13 CPU, in the comment). They guard against regressions of the model and of the
# inference path; the product targets (TRAINING.md) are higher and mostly not met yet.
IMAGE_THRESHOLDS = {
    ("detect", "bbox", "AP50"): 0.88,  # measured 0.918 (v22; v20: 0.922; v19, mask crops: 0.919)
    ("detect", "bbox", "AP"): 0.79,  # 0.848 (v22; v20: 0.842; v17: 0.823, boxes of the guided masks)
    ("detect", "segm", "AP"): 0.83,  # 0.889 (v22; v20: 0.884; without the guided filter (v16): 0.807)
    ("colour", "bbox", "AP50"): 0.84,  # 0.892 (v22; v20: 0.860; held-out 200 images: 0.868 -> 0.905)
    ("rec", "accuracy"): 0.86,  # 0.913 (v22, mirrored view; one view: 0.909; held-out 5146: 0.908 -> 0.918)
    ("point", "mIoU"): 0.87,  # 0.929 (v22; v20: 0.923; v19, guided masks: 0.909; bilinear: 0.873)
    ("box", "mIoU"): 0.87,  # 0.922 (v22; v20: 0.918; bilinear: 0.862; score x fit, not ^4: 0.845)
    ("scribble", "mIoU"): 0.88,  # 0.936 (v22; v20: 0.931; bilinear: 0.879; score x fit: 0.875)
}
VIDEO_THRESHOLDS = {
    ("track", "IDF1"): 0.93,  # 0.987 (v22; v20: 0.990, v17: 0.985; video tasks keep bilinear masks)
    ("track", "MOTA"): 0.92,  # 0.975 (v22; v20: 0.980, v17: 0.970, v8: 0.970)
    ("rvos", "J&F"): 0.86,  # 0.939 (v22; v21: 0.926; first pick grounding top-1, was 0.758)
    ("vos", "J&F"): 0.89,  # 0.941 (v22; v20: 0.952, with or without select_exclusive and the search)
}

# A predicted mask is "the right object" when it overlaps the drawn one at least this much.
MIN_IOU = 0.8


@pytest.fixture(scope="module")
def predictor() -> GleePredictor:
    return GleePredictor.load()


def _best(masks: np.ndarray, target: np.ndarray) -> float:
    return max((mask_pair_iou(m, target) for m in masks), default=0.0)


def test_predictor_finds_segments_and_grounds_the_right_objects(
    predictor: GleePredictor, shapes_scene: Callable
) -> None:
    scene = shapes_scene(0)
    everything = predictor.detect(scene.image, ["object"])
    assert all(_best(everything.masks, m) >= MIN_IOU for m in scene.masks.values())
    red = predictor.detect(scene.image, ["red circle"])
    assert red.labels == ["red circle"] and mask_pair_iou(red.masks[0], scene.masks["red circle"]) >= MIN_IOU
    expressions = {"the blue square": "blue square", "the red object": "red circle",
                   "the yellow triangle": "yellow triangle"}  # fmt: skip
    for expression, answer in zip(expressions, predictor.ground(scene.image, list(expressions)), strict=True):
        assert mask_pair_iou(answer.masks[0], scene.masks[expressions[expression]]) >= MIN_IOU, expression
        # A right answer's score says so: its match to the sentence, not the relation head's rank (~1e-5).
        assert answer.scores[0] >= 0.1, (expression, answer.scores[0])
    prompts = {
        "red circle": {"points": [[70, 75], [180, 160]], "labels": [1, 0]},
        "blue square": {"box": scene.box("blue square")},
        "yellow triangle": {"scribble": [[80, 222], [95, 200], [110, 222]]},
    }
    for (name, _), answer in zip(prompts.items(), predictor.segment(scene.image, list(prompts.values())),
                                 strict=True):  # fmt: skip
        assert mask_pair_iou(answer.masks[0], scene.masks[name]) >= MIN_IOU, name


def test_predictor_names_shapes_and_reads_relations(predictor: GleePredictor, shapes_scene: Callable) -> None:
    scene = shapes_scene(0)
    # One detection per object: the official post-processing has no NMS, so duplicates must be learnt away.
    assert len(predictor.detect(scene.image, ["object"])) == 3
    dets = predictor.detect(scene.image, ["circle", "square", "triangle"])
    for name, mask in scene.masks.items():
        assert any(mask_pair_iou(m, mask) >= MIN_IOU and label == name.split()[1]
                   for m, label in zip(dets.masks, dets.labels, strict=True)), name  # fmt: skip
    [answer] = predictor.ground(scene.image, ["the bottommost object"])
    assert mask_pair_iou(answer.masks[0], scene.masks["yellow triangle"]) >= MIN_IOU
    [answer] = predictor.segment(scene.image, [{"box": scene.box("yellow triangle")}])
    assert mask_pair_iou(answer.masks[0], scene.masks["yellow triangle"]) >= MIN_IOU


def test_masks_follow_object_edges_on_a_large_image(predictor: GleePredictor, shapes_scene: Callable) -> None:
    """At 512 px one mask cell covers 8 x 8 image pixels and bilinear masks cut the objects' corners (IoU
    0.97-0.99 here); the guided filter snaps them to the flat-coloured objects' outlines. Lite keeps the
    official bilinear masks."""
    assert all(get_config(official).mask_guided_radius is None for official in ("lite", "lite_stage1"))
    assert predictor.cfg.mask_guided_radius == get_config("demo").mask_guided_radius
    scene = shapes_scene(0)
    twice = scene.image.repeat(2, 0).repeat(2, 1)
    found = predictor.detect(twice, ["object"])
    for name, mask in scene.masks.items():
        assert _best(found.masks, mask.repeat(2, 0).repeat(2, 1)) >= 0.995, name


def test_predictor_reads_size_relations(predictor: GleePredictor, shapes_scene: Callable) -> None:
    """Size is visible area: the yellow triangle (2191 px) is the smallest object, while the blue square
    (3600 px) has the smallest box (3600 against the triangle's 4331). v12-v16 ranked box areas and
    answered the square; v17's relation head reads the queries' mask areas (``relation.mask_areas``)."""
    scene = shapes_scene(0)
    [answer] = predictor.ground(scene.image, ["the smallest object"])
    assert mask_pair_iou(answer.masks[0], scene.masks["yellow triangle"]) >= MIN_IOU


def _get(results: dict[str, Any], path: tuple[str, ...]) -> float:
    value: Any = results
    for key in path:
        value = value[key]
    return float(value)


def _shortfalls(results: dict[str, Any], thresholds: dict[tuple[str, ...], float]) -> list[str]:
    return [
        f"{'.'.join(path)} = {_get(results, path):.3f} < {bound}"
        for path, bound in thresholds.items()
        if _get(results, path) < bound
    ]


def test_demo_model_on_heldout_images(predictor: GleePredictor, tmp_path: Path) -> None:
    write_images(tmp_path, NUM_IMAGES, seed=HELDOUT_IMAGE_SEED, workers=1, progress=False)
    results = evaluate_images(predictor, tmp_path / "annotations.json", tmp_path / "images")
    assert results["images"] == NUM_IMAGES
    assert not _shortfalls(results, IMAGE_THRESHOLDS), results


def test_demo_model_on_heldout_videos(predictor: GleePredictor, tmp_path: Path) -> None:
    config = VideoConfig(frames_min=8, frames_max=16)
    write_videos(tmp_path, NUM_VIDEOS, seed=HELDOUT_VIDEO_SEED, workers=1, config=config, progress=False)
    results = evaluate_videos(VideoPredictor(predictor), tmp_path / "annotations.json", tmp_path / "frames")
    assert results["videos"] == NUM_VIDEOS
    assert not _shortfalls(results, VIDEO_THRESHOLDS), results
