"""Forward shapes of GLEE-Lite per task, and the predictor's mapping back to original pixels."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from glee.data.masks import box_iou, mask_box
from glee.model import GleePredictor, InputError, PromptError, build_glee, get_config
from glee.model.config import GleeConfig
from glee.model.layers import mask_crops
from glee.model.mirror import flip_words, fuse_mirrored
from glee.model.predictor import RERANK_FIT_POWER, resized_size
from glee.model.prompts import prompt_agreement, rasterize, validate_prompt
from glee.model.relation import RANK_FEATURES, RANKED, mask_areas, ranked_quantities, soft_ranks


@pytest.fixture(scope="module")
def lite():
    torch.manual_seed(0)
    return build_glee("lite")


@pytest.mark.slow
@pytest.mark.parametrize("task", ["category", "grounding", "point", "box", "scribble"])
def test_lite_forward_shapes_at_384x512(lite, task: str) -> None:
    pixels = torch.rand(1, 3, 384, 512) * 255
    if task == "category":
        out = lite.forward_raw(pixels, categories=["person", "tree"])
        classes = 2
    elif task == "grounding":
        out = lite.forward_raw(pixels, expression="the red circle")
        classes = 1
    else:
        mask = torch.zeros(1, 384, 512, dtype=torch.bool)
        mask[0, 100:140, 200:260] = True
        out = lite.forward_raw(pixels, prompt_mask=mask, prompt_type=task)
        classes = 1
    assert out["pred_logits"].shape == (1, 300, classes)
    assert out["pred_boxes"].shape == (1, 300, 4)
    assert out["pred_masks"].shape == (1, 300, 96, 128)
    assert out["pred_scores"].shape == (1, 300, 1)
    assert out["pred_track_embed"].shape == (1, 300, 256)
    assert torch.isfinite(out["pred_logits"]).all() and torch.isfinite(out["pred_masks"]).all()
    assert ((out["pred_boxes"] >= 0) & (out["pred_boxes"] <= 1)).all()


def test_reserved_variants_fail_loudly() -> None:
    with pytest.raises(NotImplementedError, match="Swin-L"):
        get_config("plus")
    with pytest.raises(ValueError, match="unknown GLEE variant"):
        get_config("huge")


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"class_refine_shape": 16}, "class_refine_shape needs class_refine"),
        ({"prompt_rerank": -1}, "prompt_rerank must be >= 0"),
        ({"ground_mirror_weight": float("nan")}, "ground_mirror_weight must be >= 0"),
        ({"class_refine_shape": -1}, "class_refine_shape must be >= 0"),
        ({"mask_guided_eps": 0.0}, "mask_guided_eps must be > 0"),
        ({"mask_guided_radius": -2.0}, "mask_guided_radius must be > 0"),
        ({"detection_nms_iou": 1.5}, "detection_nms_iou must be in"),
    ],
)
def test_config_rejects_settings_the_model_would_misread(changes: dict, reason: str) -> None:
    """A hand-edited config.json fails at load with the field named, not later or silently."""
    with pytest.raises(ValueError, match=reason):
        dataclasses.replace(get_config("demo"), **changes)
    with pytest.raises(ValueError, match=reason):
        GleeConfig.from_dict({**get_config("demo").to_dict(), **changes})


def test_resize_follows_shortest_edge_rule() -> None:
    assert resized_size(480, 640, 800, 1333) == (800, 1067)
    assert resized_size(100, 1000, 800, 1333) == (133, 1333)
    assert resized_size(1, 4000, 256, 256) == (1, 256)  # extreme aspect ratios never reach 0 px


def test_extreme_aspect_ratio_image_is_served(predictor: GleePredictor) -> None:
    image = np.zeros((1, 4000, 3), np.uint8)
    res = predictor.detect(image, ["circle"], score_threshold=0.0, max_detections=3)
    assert res.masks.shape[1:] == (1, 4000)


@pytest.fixture(scope="module")
def predictor() -> GleePredictor:
    return GleePredictor.random("demo")


def test_detect_maps_boxes_and_masks_to_original_pixels(predictor: GleePredictor) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (300, 450, 3), dtype=np.uint8)
    demo = predictor.cfg
    try:
        predictor.cfg = dataclasses.replace(demo, box_from_mask=False)  # the model's own (regressed) boxes
        res = predictor.detect(image, ["circle", "red square"], score_threshold=0.0, max_detections=7)
    finally:
        predictor.cfg = demo
    assert len(res) == 7
    assert res.masks.shape == (7, 300, 450) and res.masks.dtype == bool
    assert res.boxes.shape == (7, 4) and res.track_embeds.shape == (7, predictor.embed_dim)
    assert (np.diff(res.scores) <= 0).all()
    assert set(res.labels) <= {"circle", "red square"}

    # The same forward by hand: boxes must be the raw normalized boxes of those queries scaled to pixels.
    rh, rw = resized_size(300, 450, predictor.cfg.min_size_test, predictor.cfg.max_size_test)
    pixels = torch.from_numpy(np.array(predictor._prepare(image).pixels.numpy()))[None]
    raw = predictor.model.forward_raw(pixels, categories=["circle", "red square"])
    hp, wp = raw["pred_masks"].shape[-2] * 4, raw["pred_masks"].shape[-1] * 4
    cx, cy, bw, bh = raw["pred_boxes"][0, res.query_index].unbind(-1)
    expected = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1).numpy()
    expected *= np.array([wp * 450 / rw, hp * 300 / rh] * 2)
    expected = np.clip(expected, 0, [450, 300, 450, 300])
    np.testing.assert_allclose(res.boxes, expected, atol=1e-3)


def test_ground_and_segment_return_one_result_per_item(predictor: GleePredictor) -> None:
    image = np.full((200, 260, 3), 90, np.uint8)
    grounded = predictor.ground(image, ["the red circle", "the leftmost star"])
    assert [len(r) for r in grounded] == [1, 1]
    assert grounded[1].labels == ["the leftmost star"]
    prompts = [
        {"points": [[50, 60]], "labels": [1]},
        {"points": [[50, 60], [120, 80]], "labels": [1, 0]},
        {"box": [10, 20, 90, 120]},
        {"scribble": [[30, 30], [60, 50], [70, 90]]},
        {"mask": np.pad(np.ones((30, 30), bool), ((10, 160), (20, 210)))},
    ]
    segs = predictor.segment(image, prompts)
    assert len(segs) == len(prompts)
    for r in segs:
        assert len(r) == 1 and r.masks.shape == (1, 200, 260)
        assert 0 <= r.boxes[0, 0] <= r.boxes[0, 2] <= 260 and 0 <= r.boxes[0, 1] <= r.boxes[0, 3] <= 200
    assert len(predictor.segment(image, prompts[:1], top_k=5)[0]) == 5


def test_ground_rows_keep_the_grounding_order(predictor: GleePredictor) -> None:
    """top_k grounding candidates come ranked by the grounding logit, not re-sorted by the final score
    (which multiplies in the mask score): row 0 is the REC answer, the one RVOS starts from."""
    image = np.random.default_rng(3).integers(0, 255, (200, 260, 3), dtype=np.uint8)
    # Bilinear masks: random weights' guided masks are empty (all final scores 0), which hides the order.
    [result] = predictor.with_config(mask_guided_radius=None).ground(image, ["the leftmost star"], top_k=8)
    pixels = torch.from_numpy(np.array(predictor._prepare(image).pixels.numpy()))[None]
    raw = predictor.model.forward_raw(pixels, expression="the leftmost star")
    expected = torch.topk(raw["pred_logits"][0, :, 0], 8).indices.numpy()
    np.testing.assert_array_equal(result.query_index, expected)
    assert (np.diff(result.scores) > 0).any()


def test_mirrored_grounding_fuses_the_flipped_views_order(predictor: GleePredictor) -> None:
    """With ``ground_mirror_weight`` the candidates come in the order that fuses the sentence on the image
    with the swapped sentence on the image flipped inside its padded frame, and that order is not the
    first view's alone. The image is taller than wide, so the frame pads its right side."""
    image = np.random.default_rng(3).integers(0, 255, (260, 200, 3), dtype=np.uint8)
    mirrored = predictor.with_config(ground_mirror_weight=0.5, mask_guided_radius=None)
    [result] = mirrored.ground(image, ["the leftmost star"], top_k=8)
    prepared = predictor._prepare(image)
    raw = predictor.model.forward_raw(prepared.pixels[None], expression="the leftmost star")
    flipped = predictor.model.forward_raw(prepared.pixels.flip(-1)[None], expression="the rightmost star")
    width = prepared.size[1] / (raw["pred_masks"].shape[-1] * 4)
    order = fuse_mirrored(
        raw["pred_logits"][0, :, 0], raw["pred_boxes"][0], flipped["pred_logits"][0, :, 0],
        flipped["pred_boxes"][0], width, 0.5,
    )  # fmt: skip
    expected = torch.topk(order, 8).indices.numpy()
    np.testing.assert_array_equal(result.query_index, expected)
    assert not np.array_equal(expected, torch.topk(raw["pred_logits"][0, :, 0], 8).indices.numpy())


def test_fuse_mirrored_adds_the_same_objects_mirrored_probability() -> None:
    """Query 1 is second in the first view, but the mirrored view's best query covers the same object (its
    box mirrored inside an image that fills 0.8 of the padded width), so it comes first; a mirrored query
    that covers no first-view box adds nothing."""
    boxes = torch.tensor([[0.2, 0.5, 0.1, 0.1], [0.6, 0.5, 0.1, 0.1], [0.4, 0.2, 0.1, 0.1]])
    logits = torch.tensor([1.0, 0.8, -3.0])
    # The mirrored view: query 0 on object 1 (x 0.6 -> 0.8 - 0.6 = 0.2), query 2 on nothing.
    mirrored = torch.tensor([[0.2, 0.5, 0.1, 0.1], [0.6, 0.5, 0.1, 0.1], [0.7, 0.9, 0.1, 0.1]])
    mirrored_logits = torch.tensor([2.0, -1.0, 1.0])
    fused = fuse_mirrored(logits, boxes, mirrored_logits, mirrored, 0.8, 1.0)
    p, q = logits.softmax(0), mirrored_logits.softmax(0)
    torch.testing.assert_close(fused, torch.stack([p[0] + q[1], p[1] + q[0], p[2]]))
    assert fused.argmax() == 1
    torch.testing.assert_close(fuse_mirrored(logits, boxes, mirrored_logits, mirrored, 0.8, 0.0), p)


def test_flip_words_swaps_direction_words_and_keeps_the_rest() -> None:
    assert flip_words("The LEFTMOST star, on the Left.", (True, False)) == "The RIGHTMOST star, on the Right."
    assert flip_words("the topmost object", (True, True)) == "the bottommost object"
    assert flip_words("the leftover star on the right", (True, False)) == "the leftover star on the left"


def test_batched_detection_equals_single_requests(predictor: GleePredictor) -> None:
    """Padding vocabularies of different lengths in one batch must not change any result."""
    from glee.model.types import ImageTask

    rng = np.random.default_rng(1)
    a = rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)
    b = rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)
    tasks = [
        ImageTask("detect", a, categories=["circle"], score_threshold=0.0, max_detections=5),
        ImageTask(
            "detect",
            b,
            categories=["red square", "blue star", "object"],
            score_threshold=0.0,
            max_detections=5,
        ),
    ]
    batched = predictor.run_batch(tasks)
    for task, res in zip(tasks, batched, strict=True):
        single = predictor.run_batch([task])[0][0]
        np.testing.assert_allclose(res[0].boxes, single.boxes, atol=1e-4)
        np.testing.assert_allclose(res[0].scores, single.scores, atol=1e-5)


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        ({"points": [[10, 10]], "labels": [0]}, "positive"),
        ({"box": [50, 50, 40, 60]}, "x2 > x1"),
        ({"scribble": [[1, 2, 3]]}, "pairs"),
        ({"points": [[1000, 10]]}, "inside"),
        ({"box": [0, 0, 10, 10], "points": [[1, 1]]}, "exactly one"),
        ("box", "object"),
    ],
)
def test_bad_prompts_are_rejected_with_a_reason(predictor: GleePredictor, prompt, message: str) -> None:
    with pytest.raises(PromptError, match=message):
        predictor.segment(np.zeros((64, 64, 3), np.uint8), [prompt])


def test_bad_images_and_texts_are_rejected(predictor: GleePredictor) -> None:
    with pytest.raises(InputError):
        predictor.detect(np.zeros((10, 10), np.uint8), ["circle"])
    with pytest.raises(InputError):
        predictor.detect(np.zeros((10, 10, 3), np.uint8), [])
    with pytest.raises(InputError):
        predictor.ground(np.zeros((10, 10, 3), np.uint8), ["  "])
    # GLEE's tokenizer would cut these at 77 tokens and answer the sentence's beginning instead.
    long = " ".join(["red"] * 76)
    assert predictor.model.tokenizer.length(long[4:]) == 77
    predictor.ground(np.zeros((10, 10, 3), np.uint8), [long[4:]])
    with pytest.raises(InputError, match=r"expressions\[1\] is 78 tokens long .* at most 77"):
        predictor.ground(np.zeros((10, 10, 3), np.uint8), ["circle", long])
    with pytest.raises(InputError, match=r"categories\[0\] is 79 tokens long"):
        predictor.detect(np.zeros((10, 10, 3), np.uint8), [long + " red"])


def test_text_cache_gives_identical_results(predictor: GleePredictor) -> None:
    image = np.full((128, 128, 3), 40, np.uint8)
    first = predictor.detect(image, ["circle", "square"], score_threshold=0.0)
    assert "circle" in predictor._name_cache
    predictor.text_cache_enabled = False
    try:
        uncached = predictor.detect(image, ["circle", "square"], score_threshold=0.0)
    finally:
        predictor.text_cache_enabled = True
    np.testing.assert_allclose(first.scores, uncached.scores, atol=1e-6)


def test_class_logit_modes_keep_lite_official_and_make_demo_a_scaled_cosine() -> None:
    """Lite keeps the official raw dot product (no extra keys); ``cosine`` ignores embedding norms."""
    from glee.model.object_decoder import QueryPrompt

    assert not any("logit_" in k for k in build_glee("lite_stage1").state_dict())
    torch.manual_seed(0)
    demo = build_glee("demo").predictor
    assert {"logit_scale", "logit_bias"} <= {k for k, _ in demo.named_parameters()}
    # From scratch the confidence head starts at probability 0.01 (official weights overwrite it).
    torch.testing.assert_close(demo.confidence_score.layers[-1].bias.sigmoid(), torch.tensor([0.01]))
    proj, embeds = torch.randn(2, 5, 128), torch.randn(2, 3, 128)
    logits = demo.class_logits(proj, QueryPrompt(class_embeddings=embeds))
    cos = torch.nn.functional.cosine_similarity(proj[:, :, None], embeds[:, None], dim=-1)
    torch.testing.assert_close(logits, cos / 0.07 - np.log(99.0), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(demo.class_logits(proj, QueryPrompt(class_embeddings=embeds * 7.0)), logits)
    sentence = demo.class_logits(proj, QueryPrompt(sentence=embeds[:, 0]))
    torch.testing.assert_close(sentence, logits[..., :1])


def test_grounding_box_term_starts_as_plain_glee_and_can_pick_the_leftmost_match() -> None:
    """Lite has no box term; the demo's starts at zero, and a learned one ranks equal matches by position."""
    from glee.model.object_decoder import BOX_FEATURES, QueryPrompt

    assert not any("ground_box" in k for k in build_glee("lite").state_dict())
    torch.manual_seed(0)
    demo = build_glee("demo").predictor
    sentence = torch.randn(1, 128)
    proj = sentence[:, None].repeat(1, 4, 1)  # four queries that match the sentence equally
    proj[:, 3] = -sentence  # and one that does not
    boxes = torch.tensor([[[x, 0.5, 0.1, 0.1] for x in (0.6, 0.3, 0.8, 0.05)]])
    # Two sentence slots, the second padding: only real tokens add to the term.
    tokens, token_mask = torch.randn(1, 2, 128), torch.tensor([[True, False]])
    prompt = QueryPrompt(sentence=sentence, sentence_tokens=tokens, sentence_mask=token_mask)
    plain = demo.class_logits(proj, prompt)
    torch.testing.assert_close(demo.class_logits(proj, prompt, boxes), plain)
    with torch.no_grad():
        # Each token says "further left is better".
        demo.ground_box.layers[-1].bias[BOX_FEATURES.index("cx")] = -0.05
    logits = demo.class_logits(proj, prompt, boxes)[0, :, 0]
    assert logits.argmax().item() == 1  # the leftmost of the matching queries, not the leftmost query
    # The term is scaled like the cosine logits: 0.3 of the image width at weight 0.05 is 0.015 / 0.07.
    torch.testing.assert_close(logits[1] - logits[0], torch.tensor(0.015 / 0.07), rtol=1e-4, atol=1e-4)
    # Category prompts never get it.
    categories = QueryPrompt(
        class_embeddings=sentence[:, None], sentence_tokens=tokens, sentence_mask=token_mask
    )
    torch.testing.assert_close(demo.class_logits(proj, categories, boxes), plain)


def test_grounding_relation_starts_as_plain_grounding_and_compares_candidates() -> None:
    """Lite has no relation head; a zero-initialised one leaves grounding unchanged; a trained one changes a
    query's grounding logit when *another* query's box moves (it sees the set), never category logits."""
    assert not any("ground_relation" in k for k in build_glee("lite").state_dict())
    cfg = get_config("demo")
    torch.manual_seed(0)
    plain = build_glee(cfg)
    related = build_glee(dataclasses.replace(cfg, ground_relation_layers=1))
    missing = related.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("predictor.ground_relation.") for k in missing)
    pixels = torch.rand(1, 3, 64, 96) * 255
    sentence = "the leftmost circle"
    before = plain.forward_raw(pixels, expression=sentence)["pred_logits"]
    torch.testing.assert_close(related.forward_raw(pixels, expression=sentence)["pred_logits"], before)

    head = related.predictor.ground_relation
    with torch.no_grad():
        head.out.weight.normal_(0.0, 0.5)
    after = related.forward_raw(pixels, expression=sentence)["pred_logits"]
    assert (after - before).abs().max() > 1e-3
    categories = ["circle", "red square"]
    torch.testing.assert_close(
        related.forward_raw(pixels, categories=categories)["pred_logits"],
        plain.forward_raw(pixels, categories=categories)["pred_logits"],
    )
    # The change of query 0 depends on query 1's box: attention over the candidates, not a per-query score.
    queries, logits = torch.randn(1, 3, 128), torch.zeros(1, 3)
    boxes = torch.tensor([[[0.3, 0.5, 0.1, 0.1], [0.6, 0.5, 0.1, 0.1], [0.8, 0.2, 0.2, 0.1]]])
    tokens, mask = torch.randn(1, 2, 128), torch.tensor([[True, False]])
    areas = torch.tensor([[0.005, 0.005, 0.01]])
    first = head(queries, boxes, areas, logits, 1.0, tokens, mask)
    moved = boxes.clone()
    moved[0, 1, 0] = 0.1
    assert (head(queries, moved, areas, logits, 1.0, tokens, mask)[0, 0] - first[0, 0]).abs() > 1e-4
    # ... and on query 1's mask area (boxes unchanged).
    grown = torch.tensor([[0.005, 0.02, 0.01]])
    assert (head(queries, boxes, grown, logits, 1.0, tokens, mask)[0, 0] - first[0, 0]).abs() > 1e-4
    # Padding tokens are not read.
    tokens[0, 1] = 100.0
    torch.testing.assert_close(head(queries, boxes, areas, logits, 1.0, tokens, mask), first)


def test_soft_ranks_count_the_likely_candidates_beyond_each_query() -> None:
    """Three equally likely boxes in a row and an unlikely one further left: the share of likely candidates
    left of each query is 1/6, 1/2, 5/6 (its own weight counts half), the unlikely box counts for nothing,
    and the two directions of one quantity add up to the total weight, 1."""
    boxes = torch.tensor([[[x, 0.5, 0.1, 0.1] for x in (0.2, 0.5, 0.8, 0.05)]])
    g = ranked_quantities(boxes, torch.tensor([[0.01, 0.25, 0.09, 0.0]]))
    ranks = soft_ranks(g, torch.tensor([[0.0, 0.0, 0.0, -10.0]]))[0]
    assert ranks.shape == (4, RANK_FEATURES)
    per_pair = 2 * len(RANKED)
    left = RANKED.index("cx") + len(RANKED)
    torch.testing.assert_close(ranks[:3, left], torch.tensor([1 / 6, 1 / 2, 5 / 6]), atol=2e-3, rtol=0)
    # Equal boxes, unequal masks: the middle query's mask is the largest, so no likely candidate's is larger.
    larger = RANKED.index("sqrt_mask_area")
    torch.testing.assert_close(ranks[:3, larger], torch.tensor([5 / 6, 1 / 6, 1 / 2]), atol=2e-3, rtol=0)
    increasing, decreasing = ranks.unflatten(-1, (-1, per_pair)).split(len(RANKED), -1)
    torch.testing.assert_close(increasing + decreasing, torch.ones_like(increasing))


def test_mask_areas_count_the_mask_inside_the_grown_box() -> None:
    """The share of the frame where a query's mask logit is positive, cut to its box grown by the margin:
    a mask filling the frame counts only its box region, and without a margin all of it."""
    features = torch.zeros(1, 2, 8, 10)
    features[0, 0] = 1.0  # channel 0 is positive everywhere
    features[0, 1, :4] = 1.0  # channel 1 only in the top half
    embed = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]])
    boxes = torch.tensor([[[0.5, 0.5, 0.4, 0.5], [0.5, 0.5, 1.0, 1.0], [0.5, 0.5, 1.0, 1.0]]])
    areas = mask_areas(embed, features, boxes, 0.0)[0]
    torch.testing.assert_close(areas, torch.tensor([4 * 4 / 80, 0.5, 0.0]))
    # Grown by 25 % of its size per side, the first box covers 6 x 6 cells.
    torch.testing.assert_close(mask_areas(embed, features, boxes, 0.25)[0, 0], torch.tensor(36 / 80))
    torch.testing.assert_close(mask_areas(embed, features, boxes, None)[0], torch.tensor([1.0, 0.5, 0.0]))


def test_mask_crops_sample_each_mask_over_its_own_box() -> None:
    """A query's crop is its mask probability on a grid over its box: the same mask seen through a box
    around its left half and through one around all of it, and a box past the frame's edge (the border
    value repeats)."""
    features = torch.zeros(1, 1, 8, 8)
    features[0, 0, 2:6, 2:6] = 10.0  # a 4 x 4 square mask in cells 2..5
    features[0, 0][features[0, 0] == 0] = -10.0
    embed = torch.ones(1, 3, 1)
    boxes = torch.tensor([[[0.5, 0.5, 0.5, 0.5], [0.375, 0.5, 0.25, 0.5], [0.5, 0.5, 1.0, 1.0]]])
    crops = mask_crops(embed, features, boxes, 4)[0].view(3, 4, 4)
    assert torch.all(crops[0] > 0.9)  # the box is the square: all inside
    assert torch.all(crops[1] > 0.9)  # its left half: still all inside
    ring = [[0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0.0]]
    torch.testing.assert_close((crops[2] > 0.5).float(), torch.tensor(ring))
    wide = mask_crops(embed[:, :1], features, torch.tensor([[[0.5, 0.5, 1.5, 0.5]]]), 4)[0, 0].view(4, 4)
    torch.testing.assert_close((wide > 0.5).float(), torch.tensor([[0, 1, 1, 0.0]] * 4))


@pytest.mark.parametrize("shape", [0, 4])
def test_class_refinement_starts_as_plain_glee_and_changes_category_logits_only(shape: int) -> None:
    """Lite has no class refinement; a zero-initialised one (reading the query alone or also its mask
    crop) leaves category logits unchanged; a trained one changes them, never grounding logits or a
    visual prompt's (ranked by confidence)."""
    assert not any("class_refine" in k for k in build_glee("lite").state_dict())
    cfg = get_config("demo")
    torch.manual_seed(0)
    plain = build_glee(cfg)
    refined = build_glee(dataclasses.replace(cfg, class_refine=True, class_refine_shape=shape))
    assert refined.predictor.class_refine.layers[0].in_features == cfg.hidden_dim + shape * shape
    missing = refined.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("predictor.class_refine.") for k in missing)
    pixels = torch.rand(1, 3, 64, 96) * 255
    categories = ["circle", "red square", "object"]
    before = plain.forward_raw(pixels, categories=categories)["pred_logits"]
    torch.testing.assert_close(refined.forward_raw(pixels, categories=categories)["pred_logits"], before)

    with torch.no_grad():
        refined.predictor.class_refine.layers[-1].weight.normal_(0.0, 0.5)
    after = refined.forward_raw(pixels, categories=categories)["pred_logits"]
    assert (after - before).abs().max() > 1e-3
    _same_logits(refined, plain, pixels, expression="the leftmost circle")
    _same_logits(refined, plain, pixels, prompt_mask=_box_prompt(64, 96), prompt_type="box")


def _box_prompt(h: int, w: int) -> torch.Tensor:
    """[1, h, w] one rectangle prompt (h, w > 30, 50)."""
    mask = torch.zeros(1, h, w, dtype=torch.bool)
    mask[0, 20:30, 40:50] = True
    return mask


def _same_logits(a: torch.nn.Module, b: torch.nn.Module, pixels: torch.Tensor, **prompt: object) -> None:
    """Two models' last-layer logits for one prompt (``forward_raw``'s keywords) are the same."""
    torch.testing.assert_close(
        a.forward_raw(pixels, **prompt)["pred_logits"], b.forward_raw(pixels, **prompt)["pred_logits"]
    )


def test_grounding_reads_a_share_of_the_class_refinement() -> None:
    """With ground_refine_weight w, a sentence's logits move by w x scale x (cosine of the refined projection
    to the sentence - cosine of the plain one) after the relation head, which reads the logits without it;
    category logits and a visual prompt's do not move; a weight without a refinement, or below 0, is
    refused."""
    cfg = dataclasses.replace(
        get_config("demo"), ground_relation_layers=1, class_refine=True, class_refine_shape=4
    )
    torch.manual_seed(0)
    base = build_glee(cfg).eval()
    with torch.no_grad():
        base.predictor.class_refine.layers[-1].weight.normal_(0.0, 0.5)
        base.predictor.ground_relation.out.weight.normal_(0.0, 0.5)
    weighted = build_glee(dataclasses.replace(cfg, ground_refine_weight=0.5)).eval()
    weighted.load_state_dict(base.state_dict())
    images = base.normalize_and_pad(torch.rand(1, 3, 64, 96) * 255)
    prompt = base.expression_prompt("the leftmost circle")
    with torch.no_grad():
        before = base.run(images, [prompt]).decoder
        after = weighted.run(images, [prompt]).decoder
        head = base.predictor
        d = head.decoder_norm(after.track_embed)
        refined = d @ head.category_embed + head.class_refine(torch.cat([d, after.mask_shape], -1))
        cos = [F.cosine_similarity(p, prompt.sentence, dim=-1) for p in (refined, after.last.class_proj)]
        related = head.relate(
            after.track_embed,
            after.last.boxes,
            after.mask_area,
            after.ground_logits,
            prompt.grounding_tokens[None],
            prompt.grounding_mask[None],
        )
    assert after.mask_shape is not None and before.mask_shape is None
    change = 0.5 * head.logit_scale.exp() * (cos[0] - cos[1])
    assert change.abs().max() > 1e-2
    torch.testing.assert_close(after.ground_logits, before.ground_logits)
    torch.testing.assert_close(after.last.logits[..., 0], related + change)
    # The answer's probability reads the match to the sentence, with the refinement but not the head.
    torch.testing.assert_close(after.match_logits, after.ground_logits + change)
    torch.testing.assert_close(before.match_logits, before.ground_logits)

    pixels = torch.rand(1, 3, 64, 96) * 255
    _same_logits(weighted, base, pixels, categories=["circle", "object"])
    _same_logits(weighted, base, pixels, prompt_mask=_box_prompt(64, 96), prompt_type="box")
    with pytest.raises(ValueError, match="ground_refine_weight needs class_refine"):
        dataclasses.replace(get_config("demo"), ground_refine_weight=0.5)
    with pytest.raises(ValueError, match="ground_refine_weight must be >= 0"):
        dataclasses.replace(cfg, ground_refine_weight=float("nan"))


def test_prompt_agreement_scores_each_mask_by_how_it_fits_the_prompt() -> None:
    h, w = 40, 50
    masks = np.zeros((3, h, w), bool)
    masks[0, 5:16, 5:16] = True  # A
    masks[1, 20:36, 25:46] = True  # B; C stays empty

    def agree(prompt: dict) -> list[float]:
        kind, norm = validate_prompt(prompt, w, h)
        return prompt_agreement(kind, norm, masks).round(3).tolist()

    assert agree({"points": [[10, 10]], "labels": [1]}) == [1.0, 0.0, 0.0]
    assert agree({"points": [[10, 10], [30, 28]], "labels": [1, 1]}) == [0.5, 0.5, 0.0]
    assert agree({"points": [[10, 10], [30, 28]], "labels": [1, 0]}) == [1.0, 0.0, 0.0]
    assert agree({"box": [5, 5, 16, 16]}) == [1.0, 0.0, 0.0]
    assert agree({"box": [25, 20, 46, 36]}) == [0.0, 1.0, 0.0]
    assert agree({"scribble": [[30, 25], [40, 30]]}) == [0.0, 1.0, 0.0]
    assert agree({"mask": masks[0]}) == [1.0, 0.0, 0.0]


def test_rerank_lets_a_clearly_better_fit_beat_a_higher_score() -> None:
    """A clearly better fit to the prompt wins over a higher score, a near-equal fit does not, ties go to
    the score, and scores are not changed."""
    from glee.model.predictor import _rerank
    from glee.model.types import ImageResult

    masks = np.zeros((5, 40, 50), bool)
    masks[0, 5:20, 5:23] = True  # a confident neighbour: box IoU 0.61 with the prompt
    masks[1, 5:20, 5:16] = True  # the prompted object's exact box, less confident
    masks[2:4, 25:35, 30:40] = True  # two equal fits elsewhere (box IoU 0)
    masks[4, 5:19, 5:16] = True  # a confident near-duplicate of the exact fit (box IoU 0.93)
    scores = np.array([0.9, 0.5, 0.3, 0.4, 0.95], np.float32)
    result = ImageResult(np.zeros((5, 4), np.float32), scores, list("abcde"), masks,
                         np.zeros((5, 8), np.float32), np.arange(5))  # fmt: skip
    ranked = _rerank(result, {"box": [5, 5, 16, 20]}, 5)
    assert ranked.labels == ["e", "b", "a", "d", "c"]
    np.testing.assert_array_equal(ranked.scores, scores[[4, 1, 0, 3, 2]])  # re-ordered, not re-scored


def test_demo_reranks_visual_prompt_candidates_and_lite_keeps_official_ranking(
    predictor: GleePredictor,
) -> None:
    assert get_config("lite").prompt_rerank == 0 and get_config("lite_stage1").prompt_rerank == 0
    assert predictor.cfg.prompt_rerank == get_config("demo").prompt_rerank > 1
    rng = np.random.default_rng(2)
    image = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    prompt = {"box": [10, 10, 150, 110]}
    rerank = predictor.cfg
    try:
        predictor.cfg = dataclasses.replace(rerank, prompt_rerank=0)
        candidates = predictor.segment(image, [prompt], top_k=rerank.prompt_rerank)[0]
    finally:
        predictor.cfg = rerank
    kind, norm = validate_prompt(prompt, 160, 120)
    ranked = candidates.scores * prompt_agreement(kind, norm, candidates.masks) ** RERANK_FIT_POWER
    best = int(np.argmax(ranked))
    assert best != 0  # this image and box make the re-ranking change the official top-1
    top = predictor.segment(image, [prompt])[0]
    assert np.array_equal(top.masks[0], candidates.masks[best])
    assert top.scores[0] == candidates.scores[best]  # re-ordered, not re-scored


def test_demo_crops_masks_to_their_boxes_and_lite_keeps_official_masks(predictor: GleePredictor) -> None:
    assert get_config("lite").mask_box_margin is None and get_config("lite_stage1").mask_box_margin is None
    margin = get_config("demo").mask_box_margin
    assert predictor.cfg.mask_box_margin == margin and margin > 0
    image = np.random.default_rng(2).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    demo = predictor.cfg
    # Without NMS: the crop changes mask scores, so NMS could keep other queries in the two runs.
    try:
        # The guided filter is off in both runs: cropping first, it need not filter what the crop removes.
        bilinear = dataclasses.replace(demo, detection_nms_iou=None, mask_guided_radius=None)
        predictor.cfg = dataclasses.replace(bilinear, mask_box_margin=None, box_from_mask=False)
        official = predictor.detect(image, ["object"], score_threshold=0.0, max_detections=20)
        predictor.cfg = bilinear
        cropped = predictor.detect(image, ["object"], score_threshold=0.0, max_detections=20)
    finally:
        predictor.cfg = demo
    assert np.array_equal(np.sort(official.query_index), np.sort(cropped.query_index))
    masks = dict(zip(cropped.query_index, cropped.masks, strict=True))
    ys, xs = np.mgrid[0:120, 0:160] + 0.5
    spilled = 0
    for q, box, mask in zip(official.query_index, official.boxes, official.masks, strict=True):
        lo, hi = box[:2] - (box[2:] - box[:2]) * margin, box[2:] + (box[2:] - box[:2]) * margin
        inside = (xs >= lo[0]) & (xs <= hi[0]) & (ys >= lo[1]) & (ys <= hi[1])
        assert np.array_equal(masks[q], mask & inside)
        spilled += int((mask & ~inside).sum())
    assert spilled > 0  # random weights leak masks out of their boxes, so the crop is exercised


def test_demo_reports_mask_boxes_and_lite_keeps_regressed_boxes(predictor: GleePredictor) -> None:
    assert not get_config("lite").box_from_mask and not get_config("lite_stage1").box_from_mask
    assert predictor.cfg.box_from_mask and get_config("demo").box_from_mask
    image = np.random.default_rng(4).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    demo = predictor.cfg
    try:
        predictor.cfg = dataclasses.replace(demo, detection_nms_iou=None)
        from_masks = predictor.detect(image, ["object"], score_threshold=0.0, max_detections=20)
        predictor.cfg = dataclasses.replace(demo, detection_nms_iou=None, box_from_mask=False)
        regressed = predictor.detect(image, ["object"], score_threshold=0.0, max_detections=20)
    finally:
        predictor.cfg = demo
    np.testing.assert_array_equal(from_masks.query_index, regressed.query_index)
    np.testing.assert_array_equal(from_masks.masks, regressed.masks)
    filled = from_masks.masks.any((1, 2))
    assert filled.any()
    for box, mask in zip(from_masks.boxes[filled], from_masks.masks[filled], strict=True):
        np.testing.assert_array_equal(box, mask_box(mask))
    np.testing.assert_array_equal(from_masks.boxes[~filled], regressed.boxes[~filled])
    assert not np.allclose(from_masks.boxes[filled], regressed.boxes[filled])


def test_demo_drops_duplicate_detections_and_lite_keeps_them(predictor: GleePredictor) -> None:
    assert all(get_config(name).detection_nms_iou is None for name in ("lite", "lite_stage1"))
    iou = get_config("demo").detection_nms_iou
    assert predictor.cfg.detection_nms_iou == iou and 0 < iou < 1
    image = np.random.default_rng(3).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    names = ["object", "thing"]
    demo = predictor.cfg
    try:
        predictor.cfg = dataclasses.replace(demo, detection_nms_iou=None)
        everything = predictor.detect(image, names, score_threshold=0.0, max_detections=60)
    finally:
        predictor.cfg = demo
    kept = predictor.detect(image, names, score_threshold=0.0, max_detections=60)
    pairs = zip(everything.query_index, everything.labels, strict=True)
    rows = {(int(q), label): i for i, (q, label) in enumerate(pairs)}
    kept_rows = [rows[(int(q), label)] for q, label in zip(kept.query_index, kept.labels, strict=True)]
    assert kept_rows == sorted(kept_rows)  # a subset, still best score first
    for i, label in enumerate(everything.labels):
        better = [j for j in kept_rows if j < i and everything.labels[j] == label]
        overlap = box_iou(everything.boxes[i], everything.boxes[better]).max() if better else 0.0
        assert (i in kept_rows) == (overlap < iou), (i, label, overlap)
    assert len(kept) < len(everything)  # random weights put several queries on one box: NMS is exercised
    assert set(kept.labels) == set(names)  # per label: one name's detections never suppress another's


def test_a_mask_prompt_too_small_for_nearest_resizing_keeps_the_cells_it_touches() -> None:
    tiny = np.zeros((512, 512), bool)
    tiny[2, 2:4] = True  # nearest-neighbour downscaling by 2 samples odd rows only
    raster = rasterize("mask", {"mask": tiny}, (0.5, 0.5), (256, 256))
    assert list(zip(*np.nonzero(raster.positive), strict=True)) == [(1, 1)]
