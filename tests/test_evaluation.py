"""Evaluation metrics on hand-built cases with known answers, and the runners end to end.

Expected values in the "imperfect" cases were worked out by hand; the derivation is in each docstring.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from glee.data.masks import (
    box_iou,
    decode_segmentation,
    encode_rle,
    mask_box,
    mask_boxes,
    mask_cover,
    mask_iou,
)
from glee.data.readers import load_rgb
from glee.evaluation.coco import coco_ap, colour_phrase_gt, has_colours, result_to_detections
from glee.evaluation.iou import mask_pair_iou, xyxy_to_xywh
from glee.evaluation.referring import expression_kind, mean_iou, prompt_ious, rec_accuracy
from glee.evaluation.tracking import TrackFrame, tracking_metrics
from glee.evaluation.vos import boundary_f, boundary_map, j_and_f, mean_j_and_f
from glee.model.types import ImageResult


def rect(y0: int, y1: int, x0: int, x1: int, size: tuple[int, int] = (64, 64)) -> np.ndarray:
    """Bool mask with rows y0..y1-1 and columns x0..x1-1 set."""
    mask = np.zeros(size, bool)
    mask[y0:y1, x0:x1] = True
    return mask


def result(
    boxes: list[list[float]], scores: list[float], labels: list[str], masks: list[np.ndarray]
) -> ImageResult:
    n = len(labels)
    return ImageResult(
        boxes=np.asarray(boxes, np.float32).reshape(n, 4),
        scores=np.asarray(scores, np.float32),
        labels=labels,
        masks=np.asarray(masks, bool).reshape(n, 64, 64),
        track_embeds=np.zeros((n, 8), np.float32),
    )


# ---------------------------------------------------------------- IoU helpers


def test_box_iou_known_values():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[5, 0, 15, 10], [0, 0, 10, 5], [20, 20, 30, 30], [0, 0, 10, 10]])
    np.testing.assert_allclose(box_iou(a, b), [[1 / 3, 0.5, 0.0, 1.0]])
    assert box_iou(np.array([[3, 3, 3, 3]]), np.array([[3, 3, 3, 3]]))[0, 0] == 0.0  # empty boxes: 0, not NaN


def test_mask_iou_matrix():
    a = np.stack([rect(0, 10, 0, 10), rect(0, 10, 5, 15)])
    b = np.stack([rect(0, 10, 0, 10), rect(0, 10, 10, 20), rect(0, 5, 0, 10)])
    np.testing.assert_allclose(mask_iou(a, b), [[1.0, 0.0, 0.5], [1 / 3, 1 / 3, 25 / 125]])
    assert mask_iou(a, np.zeros((0, 64, 64), bool)).shape == (2, 0)
    np.testing.assert_allclose(mask_cover(a, b), [[1.0, 0.0, 0.5], [0.5, 0.5, 0.25]])
    np.testing.assert_allclose(mask_cover(b, a)[2], [1.0, 0.5])
    assert mask_cover(np.zeros((1, 64, 64), bool), a[:, :64, :64])[0].tolist() == [0.0, 0.0]


def test_mask_boxes_are_tight_boxes_with_exclusive_ends_and_zero_for_empty_masks():
    masks = np.stack([rect(2, 5, 3, 9), np.zeros((64, 64), bool), rect(63, 64, 63, 64)])
    np.testing.assert_array_equal(mask_boxes(masks), [[3, 2, 9, 5], [0, 0, 0, 0], [63, 63, 64, 64]])
    assert mask_box(masks[0]) == (3, 2, 9, 5)
    with pytest.raises(ValueError, match="empty mask"):
        mask_box(masks[1])


def test_mask_pair_iou_empty_conventions():
    empty = np.zeros((8, 8), bool)
    assert mask_pair_iou(empty, empty) == 1.0
    assert mask_pair_iou(empty, rect(0, 2, 0, 2, (8, 8))) == 0.0


# ---------------------------------------------------------------- COCO AP


def coco_gt(anns: list[tuple[int, np.ndarray, str, str]], image_ids=(1,)) -> dict:
    """COCO dict: anns are (image_id, mask, shape, colour); categories circle=1, square=2."""
    cats = [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}]
    cat_ids = {c["name"]: c["id"] for c in cats}
    annotations = []
    for i, (image_id, mask, shape, colour) in enumerate(anns, start=1):
        annotations.append(
            {
                "id": i,
                "image_id": image_id,
                "category_id": cat_ids[shape],
                "bbox": xyxy_to_xywh(box_of(mask)),
                "area": float(mask.sum()),
                "segmentation": encode_rle(mask),
                "iscrowd": 0,
                "attributes": {"colour": colour},
            }
        )
    images = [{"id": i, "width": 64, "height": 64, "file_name": f"{i}.png"} for i in image_ids]
    return {"images": images, "annotations": annotations, "categories": cats}


def box_of(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def test_coco_ap_perfect_detections_score_one():
    m1, m2 = rect(5, 15, 5, 15), rect(30, 50, 30, 50)
    gt = coco_gt([(1, m1, "circle", "red"), (1, m2, "square", "blue")])
    dets = result_to_detections(
        result([box_of(m1), box_of(m2)], [0.9, 0.8], ["circle", "square"], [m1, m2]),
        1,
        {"circle": 1, "square": 2},
    )
    out = coco_ap(gt, dets)
    for iou_type in ("bbox", "segm"):
        assert out[iou_type]["AP"] == pytest.approx(1.0)
        assert out[iou_type]["AP50"] == pytest.approx(1.0)
        assert out[iou_type]["AR100"] == pytest.approx(1.0)
        assert out[iou_type]["APl"] is None  # no large ground truth: COCO leaves it undefined


def test_coco_ap_with_a_false_positive_between_two_hits():
    """Two GT circles; detections by score: hit (P=1, R=.5), miss (P=.5, R=.5), hit (P=2/3, R=1).

    Interpolated precision is 1 at the 51 recall points 0..0.50 and 2/3 at the 50 points 0.51..1.00,
    so AP = (51 + 50 * 2/3) / 101 = 253/303 at every IoU threshold (hits are exact, the miss has IoU 0).
    All objects are smaller than 32^2, so APs equals AP and APm is undefined.
    """
    m1, m2, miss = rect(5, 15, 5, 15), rect(30, 40, 30, 40), rect(50, 60, 0, 10)
    gt = coco_gt([(1, m1, "circle", "red"), (1, m2, "circle", "red")])
    res = result([box_of(m1), box_of(miss), box_of(m2)], [0.9, 0.8, 0.7], ["circle"] * 3, [m1, miss, m2])
    out = coco_ap(gt, result_to_detections(res, 1, {"circle": 1, "square": 2}))
    for iou_type in ("bbox", "segm"):
        assert out[iou_type]["AP"] == pytest.approx(253 / 303)
        assert out[iou_type]["AP75"] == pytest.approx(253 / 303)
        assert out[iou_type]["APs"] == pytest.approx(253 / 303)
        assert out[iou_type]["APm"] is None
        assert out[iou_type]["AR100"] == pytest.approx(1.0)


def test_coco_ap_mask_and_box_differ_when_only_the_box_is_right():
    """The box is exact but the mask covers half the object: box AP 1, mask AP50 1 (IoU .5), mask AP75 0."""
    m = rect(10, 30, 10, 30)
    gt = coco_gt([(1, m, "square", "red")])
    half = rect(10, 20, 10, 30)
    out = coco_ap(gt, result_to_detections(result([box_of(m)], [0.5], ["square"], [half]), 1, {"square": 2}))
    assert out["bbox"]["AP75"] == pytest.approx(1.0)
    assert out["segm"]["AP50"] == pytest.approx(1.0)
    assert out["segm"]["AP75"] == pytest.approx(0.0)


def test_coco_ap_of_ground_truth_without_areas_uses_the_mask_areas():
    """COCOeval reads every annotation's area (APs/m/l); the readers accept files that leave it out."""
    small, medium = rect(5, 15, 5, 15), rect(0, 64, 0, 64)  # 100 and 4096 pixels
    gt = coco_gt([(1, small, "circle", "red"), (1, medium, "square", "blue")])
    for ann in gt["annotations"]:
        del ann["area"]
    res = result([box_of(small), box_of(medium)], [0.9, 0.8], ["circle", "square"], [small, medium])
    out = coco_ap(gt, result_to_detections(res, 1, {"circle": 1, "square": 2}))
    assert out["segm"]["APs"] == pytest.approx(1.0) and out["segm"]["APm"] == pytest.approx(1.0)
    assert out["segm"]["APl"] is None and "area" not in gt["annotations"][0]


def test_coco_ap_restricted_to_evaluated_images_and_empty_detections():
    m = rect(5, 15, 5, 15)
    gt = coco_gt([(1, m, "circle", "red"), (2, m, "circle", "red")], image_ids=(1, 2))
    dets = result_to_detections(result([box_of(m)], [0.9], ["circle"], [m]), 1, {"circle": 1})
    assert coco_ap(gt, dets, image_ids=[1])["bbox"]["AP"] == pytest.approx(1.0)
    assert coco_ap(gt, dets)["bbox"]["AR100"] == pytest.approx(0.5)  # image 2's circle is missed
    empty = coco_ap(gt, [], iou_types=("segm",))
    assert empty["segm"]["AP"] == 0.0 and set(empty) == {"segm"}


def test_result_to_detections_drops_unknown_labels_and_keeps_fields():
    m = rect(5, 15, 5, 15)
    dets = result_to_detections(
        result([box_of(m)] * 2, [0.9, 0.4], ["circle", "blob"], [m, m]), 7, {"circle": 1}
    )
    assert len(dets) == 1
    assert dets[0]["image_id"] == 7 and dets[0]["category_id"] == 1
    assert dets[0]["bbox"] == [5.0, 5.0, 10.0, 10.0]
    assert dets[0]["score"] == pytest.approx(0.9)


def test_colour_phrase_gt_and_ap_penalise_wrong_colours():
    """Colour swapped on both circles: "blue circle" and "red circle" have AP 0, "red square" AP 1 -> 1/3."""
    red_c, blue_c, red_s = rect(2, 12, 2, 12), rect(20, 30, 20, 30), rect(40, 50, 40, 50)
    gt = coco_gt([(1, red_c, "circle", "red"), (1, blue_c, "circle", "blue"), (1, red_s, "square", "red")])
    derived = colour_phrase_gt(gt)
    assert [c["name"] for c in derived["categories"]] == ["blue circle", "red circle", "red square"]
    assert [a["category_id"] for a in derived["annotations"]] == [2, 1, 3]
    assert [a["category_id"] for a in gt["annotations"]] == [1, 1, 2]  # input untouched
    ids = {c["name"]: c["id"] for c in derived["categories"]}
    swapped = result(
        [box_of(red_c), box_of(blue_c), box_of(red_s)],
        [0.9, 0.8, 0.7],
        ["blue circle", "red circle", "red square"],
        [red_c, blue_c, red_s],
    )
    out = coco_ap(derived, result_to_detections(swapped, 1, ids), iou_types=("bbox",))
    assert out["bbox"]["AP50"] == pytest.approx(1 / 3)
    right = result(
        swapped.boxes, swapped.scores, ["red circle", "blue circle", "red square"], list(swapped.masks)
    )
    assert coco_ap(derived, result_to_detections(right, 1, ids))["segm"]["AP50"] == pytest.approx(1.0)


def test_colour_phrase_gt_requires_colours():
    gt = coco_gt([(1, rect(2, 12, 2, 12), "circle", "red")])
    assert has_colours(gt)
    del gt["annotations"][0]["attributes"]
    assert not has_colours(gt)
    with pytest.raises(ValueError, match="colour"):
        colour_phrase_gt(gt)


# ---------------------------------------------------------------- REC and prompts


def test_rec_accuracy_with_kinds():
    """IoU 1 (hit), 1/3 (miss), exactly .5 (hit), nothing returned (miss): 2 of 4."""
    gt = [np.array([0, 0, 10, 10])] * 4
    preds = [np.array([0, 0, 10, 10]), np.array([5, 0, 15, 10]), np.array([0, 0, 10, 5]), None]
    out = rec_accuracy(preds, gt, kinds=["colour", "colour", "position", "position"])
    assert out["accuracy"] == pytest.approx(0.5)
    assert out["count"] == 4
    assert out["by_kind"] == {
        "colour": {"accuracy": 0.5, "count": 2},
        "position": {"accuracy": 0.5, "count": 2},
    }
    assert "by_kind" not in rec_accuracy(preds[:1], gt[:1])
    assert rec_accuracy([], [])["accuracy"] is None
    with pytest.raises(ValueError):
        rec_accuracy(preds, gt[:2])


def test_expression_kind_covers_the_demo_grammar():
    cases = {
        "the red circle": "colour_shape",
        "Green  Triangle": "colour_shape",
        "the star": "shape",
        "the blue object": "colour_object",
        "the white shape": "colour_object",
        "the biggest object": "size",
        "smallest hexagon": "size",
        "the bottommost cross": "extreme",
        "the leftmost object": "extreme",
        "the square on the right": "side",
        "the thing next to the star": "other",
    }
    assert {sentence: expression_kind(sentence) for sentence in cases} == cases


def test_prompt_ious_and_mean():
    """IoUs 1, 0.5 and 0 (no answer): mean 0.5."""
    gt = rect(0, 10, 0, 10)
    ious = prompt_ious([gt, rect(0, 5, 0, 10), None], [gt, gt, gt])
    assert ious == pytest.approx([1.0, 0.5, 0.0])
    assert mean_iou(ious) == {"mIoU": pytest.approx(0.5), "count": 3}
    assert mean_iou([]) == {"mIoU": None, "count": 0}
    with pytest.raises(ValueError):
        prompt_ious([gt], [])


# ---------------------------------------------------------------- tracking


def frames_from_boxes(
    gt: list[dict[int, list[float]]], pred: list[dict[int, list[float]]]
) -> list[TrackFrame]:
    """Frames from {id: xyxy box} dicts, box IoU as similarity."""
    out = []
    for g, p in zip(gt, pred, strict=True):
        sim = box_iou(np.array(list(g.values())).reshape(-1, 4), np.array(list(p.values())).reshape(-1, 4))
        out.append(TrackFrame(np.array(list(g), np.int64), np.array(list(p), np.int64), sim))
    return out


A, B = [0, 0, 10, 10], [50, 50, 60, 60]


def test_tracking_perfect():
    gt = [{1: A, 2: B}] * 4
    pred = [{1000: A, 7: B}] * 4  # arbitrary tracker ids
    out = tracking_metrics([frames_from_boxes(gt, pred)])
    assert out["MOTA"] == pytest.approx(1.0)
    assert out["IDF1"] == pytest.approx(1.0)
    assert out["HOTA"] == pytest.approx(1.0)
    assert (out["TP"], out["FN"], out["FP"], out["IDSW"]) == (8, 0, 0, 0)


def test_tracking_one_id_switch():
    """Object A is tracked by id 10 in frames 0-1 and id 11 in frames 2-3; B by id 20 throughout.

    CLEAR: TP 8, FN 0, FP 0, IDSW 1 -> MOTA = (8 - 1) / 8 = 0.875.
    Identity: best one-to-one map A->10, B->20 gives IDTP 6, IDFN 2, IDFP 2 -> IDF1 = 6 / 8 = 0.75.
    HOTA: DetA = 1; AssA = (2 * 2/4 + 2 * 2/4 + 4 * 4/4) / 8 = 0.75 -> HOTA = sqrt(0.75).
    """
    gt = [{1: A, 2: B}] * 4
    pred = [{10: A, 20: B}] * 2 + [{11: A, 20: B}] * 2
    out = tracking_metrics([frames_from_boxes(gt, pred)])
    assert out["IDSW"] == 1
    assert out["MOTA"] == pytest.approx(0.875)
    assert out["IDF1"] == pytest.approx(0.75)
    assert out["HOTA"] == pytest.approx(math.sqrt(0.75))


def test_tracking_misses_and_false_positives_over_two_sequences():
    """Sequence 1: A found by id 5 in frames 0-1, missed in frame 2; a false track 6 in frame 1.
    Sequence 2: B perfectly tracked over 2 frames, plus a box at IoU 1/3 (below 0.5: a FP, and B's
    own detection still matches).

    CLEAR: TP 2+2, FN 1, FP 1+1 -> MOTA = (4 - 2) / 5 = 0.4.
    Identity: seq 1 IDTP 2, IDFN 1, IDFP 1; seq 2 IDTP 2, IDFN 0, IDFP 1
    -> IDF1 = IDTP / (IDTP + IDFN/2 + IDFP/2) = 4 / (4 + 0.5 + 1) = 8/11.
    """
    seq1 = frames_from_boxes([{1: A}] * 3, [{5: A}, {5: A, 6: B}, {}])
    shifted = [5, 0, 15, 10]  # IoU 1/3 with A
    seq2 = frames_from_boxes([{1: A}] * 2, [{3: A}, {3: A, 4: shifted}])
    out = tracking_metrics([seq1, seq2])
    assert (out["TP"], out["FN"], out["FP"], out["IDSW"]) == (4, 1, 2, 0)
    assert out["MOTA"] == pytest.approx(0.4)
    assert (out["IDTP"], out["IDFN"], out["IDFP"]) == (4, 1, 2)
    assert out["IDF1"] == pytest.approx(8 / 11)


def test_tracking_rejects_bad_shapes_and_no_sequences():
    with pytest.raises(ValueError):
        tracking_metrics([[TrackFrame(np.array([1]), np.array([1, 2]), np.zeros((1, 1)))]])
    with pytest.raises(ValueError):
        tracking_metrics([])


# ---------------------------------------------------------------- J&F


def test_boundary_map_is_the_up_left_shifted_perimeter():
    """DAVIS marks pixels whose right/lower/lower-right neighbour differs: for a rectangle that is the
    perimeter of the rectangle grown by one pixel up and left."""
    mask = rect(10, 20, 10, 20)
    expected = rect(9, 20, 9, 20) & ~rect(10, 19, 10, 19)
    np.testing.assert_array_equal(boundary_map(mask), expected)
    assert boundary_map(mask).sum() == 40


def test_j_and_f_hand_computed_case():
    """GT: 10x10 square (rows/cols 10..19); prediction: the 10x20 rectangle cols 10..29. J = 100/200.

    Boundaries (radius 1 on 64x64: ceil(0.008 * 90.5) = 1, a 3x3 cross): GT has 40 pixels, all matched but
    rows 11..17 of its right side (7) -> recall 33/40; the prediction has 60, of which its left side (11)
    and top/bottom rows up to column 20 (11 + 11) are matched -> precision 33/60. F = 2PR/(P+R) = 0.66.
    """
    gt, pred = rect(10, 20, 10, 20), rect(10, 20, 10, 30)
    assert boundary_f(pred, gt) == pytest.approx(0.66)
    assert boundary_f(pred, gt, bound_th=1) == pytest.approx(0.66)
    out = j_and_f([pred, gt], [gt, gt])
    assert out["J"] == pytest.approx(0.75)
    assert out["F"] == pytest.approx(0.83)
    assert out["J&F"] == pytest.approx(0.79)


def test_j_and_f_tolerance_and_empty_frames():
    gt = rect(10, 20, 10, 20)
    shifted = rect(10, 20, 11, 21)  # one pixel right: every boundary pixel within tolerance
    assert boundary_f(shifted, gt) == pytest.approx(1.0)
    assert boundary_f(rect(10, 20, 40, 50), gt) == 0.0
    empty = np.zeros_like(gt)
    assert j_and_f([empty], [empty]) == {"J": 1.0, "F": 1.0, "J&F": 1.0}
    assert j_and_f([empty], [gt]) == {"J": 0.0, "F": 0.0, "J&F": 0.0}
    assert j_and_f([gt], [empty]) == {"J": 0.0, "F": 0.0, "J&F": 0.0}
    per_object = [j_and_f([gt], [gt]), j_and_f([empty], [gt])]
    assert mean_j_and_f(per_object) == {"J": 0.5, "F": 0.5, "J&F": 0.5, "count": 2}
    assert mean_j_and_f([])["J&F"] is None


# ---------------------------------------------------------------- runners with fake predictors
#
# The fakes answer from the ground truth (they recognise an image by its bytes), with deliberate,
# known mistakes, so the runners' plumbing (dataset reading, prompt formats, id mapping, metric
# aggregation) is checked against hand-computed totals.

H, W = 64, 80
IMAGE_OBJECTS = {  # image id -> [(shape, colour, (y0, y1, x0, x1))]
    1: [("circle", "red", (5, 20, 5, 20)), ("square", "blue", (30, 50, 40, 60))],
    2: [("triangle", "green", (10, 30, 10, 40))],
    3: [
        ("circle", "red", (40, 60, 50, 70)),
        ("square", "red", (5, 25, 5, 25)),
        ("star", "yellow", (5, 20, 50, 75)),
    ],
}
SHAPE_IDS = {"circle": 1, "square": 2, "triangle": 3, "star": 4, "hexagon": 5}


def write_png(path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def paint(background: int, objects: list[tuple[np.ndarray, int]]) -> np.ndarray:
    image = np.full((H, W, 3), background, np.uint8)
    for mask, value in objects:
        image[mask] = value
    return image


@pytest.fixture
def image_dataset(tmp_path):
    """3 PNG images + COCO JSON with colours and refs; returns (json path, image dir, gt dict)."""
    images, annotations = [], []
    for image_id, objects in IMAGE_OBJECTS.items():
        masks = [rect(*yx, size=(H, W)) for _, _, yx in objects]
        write_png(tmp_path / "img" / f"{image_id}.png", paint(10 * image_id, [(m, 200) for m in masks]))
        images.append({"id": image_id, "file_name": f"{image_id}.png", "height": H, "width": W})
        for (shape, colour, _), mask in zip(objects, masks, strict=True):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": SHAPE_IDS[shape],
                    "bbox": xyxy_to_xywh(box_of(mask)),
                    "area": float(mask.sum()),
                    "segmentation": encode_rle(mask),
                    "iscrowd": 0,
                    "attributes": {"colour": colour},
                }
            )
    refs = [
        {
            "ref_id": 1,
            "ann_id": 1,
            "image_id": 1,
            "category_id": 1,
            "sentences": [
                {"sent": "the red circle"},
                {"sent": "the leftmost object"},
            ],
        },
        {
            "ref_id": 2,
            "ann_id": 3,
            "image_id": 2,
            "category_id": 3,
            "sentences": [{"sent": "green triangle"}],
        },
        {
            "ref_id": 3,
            "ann_id": 6,
            "image_id": 3,
            "category_id": 4,
            "sentences": [{"sent": "the yellow star"}],
        },
    ]
    categories = [{"id": i, "name": n} for n, i in SHAPE_IDS.items()]
    gt = {"images": images, "annotations": annotations, "categories": categories, "refs": refs}
    path = tmp_path / "shapes.json"
    path.write_text(json.dumps(gt))
    return path, tmp_path / "img", gt


class FakeImagePredictor:
    """Answers from the ground truth; ``ground`` understands only "<colour> <shape>" expressions."""

    def __init__(self, gt: dict, image_dir) -> None:
        names = {c["id"]: c["name"] for c in gt["categories"]}
        self.objects: dict[bytes, list[tuple[str, str, np.ndarray]]] = {}
        for info in gt["images"]:
            key = load_rgb(image_dir / info["file_name"]).tobytes()
            self.objects[key] = [
                (
                    names[a["category_id"]],
                    a["attributes"]["colour"],
                    decode_segmentation(a["segmentation"], H, W),
                )
                for a in gt["annotations"]
                if a["image_id"] == info["id"]
            ]
        self.calls: list[str] = []

    @staticmethod
    def answer(rows: list[tuple[str, np.ndarray]]) -> ImageResult:
        n = len(rows)
        return ImageResult(
            boxes=np.array([box_of(m) for _, m in rows], np.float32).reshape(n, 4),
            scores=np.linspace(0.9, 0.5, n).astype(np.float32),
            labels=[label for label, _ in rows],
            masks=np.array([m for _, m in rows], bool).reshape(n, H, W),
            track_embeds=np.zeros((n, 4), np.float32),
        )

    def detect(self, image, categories, score_threshold=0.3, max_detections=100):
        assert score_threshold <= 0.05 and max_detections == 100  # AP needs the whole score range
        self.calls.append("detect")
        rows = []
        for shape, colour, mask in self.objects[image.tobytes()]:
            rows += [(name, mask) for name in (shape, f"{colour} {shape}") if name in categories]
        return self.answer(rows)

    def ground(self, image, expressions):
        self.calls.append("ground")
        objects = self.objects[image.tobytes()]
        return [
            self.answer([(e, m) for s, c, m in objects if e.removeprefix("the ") == f"{c} {s}"])
            for e in expressions
        ]

    def segment(self, image, prompts):
        self.calls.append("segment")
        masks = [m for _, _, m in self.objects[image.tobytes()]]
        out = []
        for prompt in prompts:
            if "points" in prompt:
                assert prompt["labels"][0] == 1
                x, y = prompt["points"][0]
                hits = [m for m in masks if m[int(y), int(x)]]
            elif "box" in prompt:
                ious = box_iou(np.array([prompt["box"]]), np.array([box_of(m) for m in masks]))[0]
                hits = [masks[int(ious.argmax())]]
            else:
                inside = [sum(m[int(y), int(x)] for x, y in prompt["scribble"]) for m in masks]
                hits = [masks[int(np.argmax(inside))]] if max(inside) == len(prompt["scribble"]) else []
            out.append(self.answer([("object", m) for m in hits[:1]]))
        return out


def test_evaluate_images_end_to_end(image_dataset):
    """Everything right except "the leftmost object" (the fake only reads colour phrases): REC 3/4."""
    from glee.evaluation.images import evaluate_images

    path, image_dir, gt = image_dataset
    out = evaluate_images(FakeImagePredictor(gt, image_dir), path, image_dir)
    assert out["images"] == 3
    for task in ("detect", "colour"):
        for iou_type in ("bbox", "segm"):
            assert out[task][iou_type]["AP"] == pytest.approx(1.0), (task, iou_type)
    assert out["rec"]["accuracy"] == pytest.approx(0.75)
    assert out["rec"]["by_kind"] == {
        "colour_shape": {"accuracy": 1.0, "count": 3},
        "extreme": {"accuracy": 0.0, "count": 1},
    }
    for task in ("point", "box", "scribble"):
        assert out[task] == {"mIoU": pytest.approx(1.0), "count": 6}, task
    json.dumps(out)  # JSON-ready


def test_evaluate_images_limit_tasks_and_skips(image_dataset, tmp_path):
    from glee.evaluation.images import evaluate_images

    path, image_dir, gt = image_dataset
    fake = FakeImagePredictor(gt, image_dir)
    out = evaluate_images(fake, path, image_dir, tasks=("detect", "point"), limit=1)
    assert set(out) == {"images", "detect", "point"}
    assert out["images"] == 1 and out["point"]["count"] == 2
    assert out["detect"]["bbox"]["AR100"] == pytest.approx(1.0)  # other images' objects are not counted
    assert fake.calls == ["detect", "segment"]
    bare = {k: v for k, v in gt.items() if k != "refs"}
    for ann in bare["annotations"]:
        del ann["attributes"]
    bare_path = tmp_path / "bare.json"
    bare_path.write_text(json.dumps(bare))
    out = evaluate_images(fake, bare_path, image_dir, tasks=("colour", "rec"))
    assert out["colour"] == {"skipped": "annotations carry no colour attribute"}
    assert out["rec"] == {"skipped": "dataset has no refs"}
    with pytest.raises(ValueError, match="unknown image tasks"):
        evaluate_images(fake, path, image_dir, tasks=("track",))


def test_prompts_are_reproducible_per_seed(image_dataset):
    from glee.evaluation.images import evaluate_images

    path, image_dir, gt = image_dataset

    class Recorder(FakeImagePredictor):
        def segment(self, image, prompts):
            self.prompts.extend(json.dumps(p) for p in prompts)
            return super().segment(image, prompts)

    runs = []
    for seed in (0, 0, 1):
        fake = Recorder(gt, image_dir)
        fake.prompts = []
        evaluate_images(fake, path, image_dir, tasks=("point", "scribble"), seed=seed)
        runs.append(fake.prompts)
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


# video id -> {ann id: (shape, colour, expressions, per-frame (y0, x0) of a 10x10 box or None)}
VIDEO_OBJECTS = {
    1: {
        1: ("circle", "red", ["the red circle"], [(5, 5), (5, 10), (5, 15), (5, 20)]),
        2: ("square", "blue", ["the blue square"], [(40, 60), (40, 55), None, (40, 45)]),
        3: ("star", "green", [], [None, (20, 30), (22, 30), (24, 30)]),
    },
    2: {4: ("hexagon", "yellow", ["the yellow hexagon", "the only object"], [(10, 10)] * 4)},
}


@pytest.fixture
def video_dataset(tmp_path):
    """2 videos x 4 PNG frames + YouTube-VIS JSON; returns (json path, frames dir, object masks)."""
    videos, annotations, masks = [], [], {}
    for video_id, objects in VIDEO_OBJECTS.items():
        names = [f"v{video_id}/{t:05d}.png" for t in range(4)]
        videos.append({"id": video_id, "height": H, "width": W, "length": 4, "file_names": names})
        for ann_id, (shape, colour, expressions, places) in objects.items():
            masks[ann_id] = [
                None if p is None else rect(p[0], p[0] + 10, p[1], p[1] + 10, (H, W)) for p in places
            ]
            annotations.append(
                {
                    "id": ann_id,
                    "video_id": video_id,
                    "category_id": SHAPE_IDS[shape],
                    "segmentations": [None if m is None else encode_rle(m) for m in masks[ann_id]],
                    "bboxes": [None if m is None else xyxy_to_xywh(box_of(m)) for m in masks[ann_id]],
                    "areas": [None if m is None else float(m.sum()) for m in masks[ann_id]],
                    "iscrowd": 0,
                    "attributes": {"colour": colour},
                    "expressions": expressions,
                }
            )
        for t, name in enumerate(names):
            present = [(m[t], 200) for a, m in masks.items() if a in objects and m[t] is not None]
            write_png(tmp_path / "frames" / name, paint(40 * video_id + t, present))
    categories = [{"id": i, "name": n} for n, i in SHAPE_IDS.items()]
    path = tmp_path / "videos.json"
    path.write_text(json.dumps({"videos": videos, "annotations": annotations, "categories": categories}))
    return path, tmp_path / "frames", masks


class FakeVideoPredictor:
    """Answers from the ground truth; in video 2 the tracker switches the object's id at frame 2 and
    RVOS understands only "<colour> <shape>"."""

    def __init__(self, frames_dir) -> None:
        self.video_of = {load_rgb(frames_dir / f"v{v}/00000.png").tobytes(): v for v in VIDEO_OBJECTS}
        self.thresholds: set[float] = set()

    def frames_for(self, rows: list[tuple[int, np.ndarray]], index: int):
        from glee.model.video_predictor import FrameResult

        n = len(rows)
        return FrameResult(
            boxes=np.array([box_of(m) for _, m in rows], np.float32).reshape(n, 4),
            scores=np.full(n, 0.9, np.float32),
            labels=["object"] * n,
            masks=np.array([m for _, m in rows], bool).reshape(n, H, W),
            track_embeds=np.zeros((n, 4), np.float32),
            track_ids=[i for i, _ in rows],
            frame_index=index,
        )

    def run(self, frames, task="track", categories=None, expression=None, prompts=None, score_threshold=0.3):
        self.thresholds.add(score_threshold)
        video = self.video_of[frames[0].tobytes()]
        objects = VIDEO_OBJECTS[video]
        gt = {
            a: [None if p is None else rect(p[0], p[0] + 10, p[1], p[1] + 10, (H, W)) for p in o[3]]
            for a, o in objects.items()
        }
        if task == "track":
            assert categories == list(SHAPE_IDS)
            ids = {a: (lambda t, a=a: 999 if video == 2 and t >= 2 else 10 * a) for a in objects}
        elif task == "rvos":
            ids = {
                a: (lambda t: 1)
                for a, o in objects.items()
                if expression.removeprefix("the ") == f"{o[1]} {o[0]}"
            }
        else:
            assert task == "vos" and isinstance(prompts, dict)
            ids = {}
            for obj_id, prompt in prompts.items():
                (ann,) = [a for a, m in gt.items() if m[0] is not None and (m[0] == prompt["mask"]).all()]
                ids[ann] = lambda t, obj_id=obj_id: obj_id
        return [
            self.frames_for([(ids[a](t), gt[a][t]) for a in ids if gt[a][t] is not None], t)
            for t in range(len(frames))
        ]


def test_evaluate_videos_end_to_end(video_dataset):
    """Tracking: 14 GT detections all found; video 2's object changes id once.
    CLEAR: TP 14, IDSW 1 -> MOTA 13/14. Identity: IDTP 10 + 2, IDFN 2, IDFP 2 -> IDF1 = 12/14.
    HOTA: DetA 1, AssA = (10 * 1 + 4 * 0.5) / 14 -> HOTA = sqrt(6/7).
    RVOS: 4 expressions, "the only object" unanswered (J = F = 0 on its 4 non-empty frames) -> 0.75;
    the three colour-shape expressions are right from the first frame on, "the only object" (kind other)
    is not.
    VOS: the 3 objects visible in frame 0 (the star enters later), all perfect -> 1.
    """
    from glee.evaluation.videos import evaluate_videos

    path, frames_dir, _ = video_dataset
    out = evaluate_videos(FakeVideoPredictor(frames_dir), path, frames_dir)
    assert out["videos"] == 2
    track = out["track"]
    assert (track["TP"], track["FN"], track["FP"], track["IDSW"]) == (14, 0, 0, 1)
    assert track["MOTA"] == pytest.approx(13 / 14)
    assert track["IDF1"] == pytest.approx(12 / 14)
    assert track["HOTA"] == pytest.approx(math.sqrt(6 / 7))
    perfect = {"J": 1.0, "F": 1.0, "J&F": 1.0, "count": 3}
    missed = {"J": 0.0, "F": 0.0, "J&F": 0.0, "count": 1}
    assert out["rvos"] == {
        "J": 0.75, "F": 0.75, "J&F": 0.75, "count": 4, "first_frame_accuracy": 0.75,
        "by_kind": {"colour_shape": perfect, "other": missed},
    }  # fmt: skip
    assert out["vos"] == {"J": 1.0, "F": 1.0, "J&F": 1.0, "count": 3}
    json.dumps(out)


def test_evaluate_videos_limit_and_tasks(video_dataset):
    from glee.evaluation.videos import evaluate_videos

    path, frames_dir, _ = video_dataset
    out = evaluate_videos(FakeVideoPredictor(frames_dir), path, frames_dir, tasks=("track",), limit=1)
    assert set(out) == {"videos", "track"}
    assert out["track"]["MOTA"] == pytest.approx(1.0) and out["track"]["TP"] == 10
    with pytest.raises(ValueError, match="unknown video tasks"):
        evaluate_videos(FakeVideoPredictor(frames_dir), path, frames_dir, tasks=("rec",))


def test_cli_eval_images_and_videos(image_dataset, video_dataset, tmp_path, monkeypatch):
    """``glee eval`` picks the runner from the JSON, prints a table and writes the JSON results."""
    from typer.testing import CliRunner

    import glee.model
    from glee.cli import app
    from glee.model.video_predictor import VideoPredictor

    path, image_dir, gt = image_dataset
    loaded = []

    class Loader:
        @staticmethod
        def load(name_or_path=None, device="cpu"):
            loaded.append((name_or_path, device))
            return FakeImagePredictor(gt, image_dir)

    monkeypatch.setattr(glee.model, "GleePredictor", Loader, raising=False)
    runner = CliRunner()
    out_json = tmp_path / "results.json"
    args = [
        "eval",
        str(path),
        "--images",
        str(image_dir),
        "--model",
        "m1",
        "--device",
        "meta",
        "--tasks",
        "detect,rec",
    ]
    res = runner.invoke(app, [*args, "--out", str(out_json)])
    assert res.exit_code == 0, res.output
    assert "detect.bbox.AP50" in res.output and "rec.accuracy" in res.output
    record = json.loads(out_json.read_text())
    assert record["model"] == "m1" and loaded == [("m1", "meta")]
    assert record["rec"]["accuracy"] == pytest.approx(0.75)
    assert set(record) == {"dataset", "model", "images", "detect", "rec"}

    bad = runner.invoke(app, ["eval", str(path), "--images", str(image_dir), "--tasks", "track"])
    assert bad.exit_code == 2

    vpath, frames_dir, _ = video_dataset
    fake = FakeVideoPredictor(frames_dir)
    monkeypatch.setattr(VideoPredictor, "load", classmethod(lambda cls, name=None, device="cpu": fake))
    video_args = ["eval", str(vpath), "--images", str(frames_dir), "--out", str(out_json)]
    res = runner.invoke(app, [*video_args, "--tasks", "vos"])
    assert res.exit_code == 0, res.output
    record = json.loads(out_json.read_text())
    assert record["vos"]["J&F"] == pytest.approx(1.0) and "score_threshold" not in record
    assert fake.thresholds == {0.3}  # the predictor's own default
    res = runner.invoke(app, [*video_args, "--tasks", "track,rvos", "--score-threshold", "0.35"])
    assert res.exit_code == 0, res.output
    assert json.loads(out_json.read_text())["score_threshold"] == 0.35 and fake.thresholds == {0.3, 0.35}
    assert runner.invoke(app, [*video_args, "--score-threshold", "1.5"]).exit_code == 2
    image_threshold = runner.invoke(app, [*args, "--score-threshold", "0.5"])
    assert image_threshold.exit_code == 2 and "applies to video datasets" in image_threshold.output


def test_boundary_map_matches_trackeval_davis_reference():
    """Cross-check with TrackEval's copy of DAVIS ``seg2bmap`` on irregular masks touching the border."""
    from scipy import ndimage
    from trackeval.metrics import JAndF

    rng = np.random.default_rng(0)
    for _ in range(5):
        mask = ndimage.gaussian_filter(rng.random((37, 53)), 3) > 0.5
        np.testing.assert_array_equal(boundary_map(mask), JAndF._seg2bmap(mask.copy()).astype(bool))
