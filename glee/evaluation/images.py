"""Image evaluation runner: drives a predictor through its public API over a COCO-format dataset.

Only the predictor's public methods are used (``detect``, ``ground``, ``segment``), so the same runner
judges the PyTorch model, an exported backend or anything else that answers the same calls. Images,
masks and referring sentences come from ``glee.data.readers``; COCO AP reads the raw JSON, as
pycocotools expects. Visual prompts are sampled from the ground-truth masks with the training
samplers and a generator seeded per image, so a result does not depend on ``limit`` or on which
other tasks ran.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from glee.data.prompts import jitter_box, sample_positive_point, sample_scribble
from glee.data.readers import CocoDataset, ImageSample, read_json
from glee.evaluation.coco import coco_ap, colour_phrase_gt, has_colours, result_to_detections
from glee.evaluation.referring import expression_kind, mean_iou, prompt_ious, rec_accuracy
from glee.model.types import ImagePredictor, ImageResult

IMAGE_TASKS = ("detect", "colour", "rec", "point", "box", "scribble")
PROMPT_TASKS = ("point", "box", "scribble")
# COCO AP integrates over the whole precision/recall curve: keep every detection up to COCO's cap.
AP_SCORE_THRESHOLD = 0.0
AP_MAX_DETECTIONS = 100


def sample_prompt(
    task: str, mask: np.ndarray, box: np.ndarray, rng: np.random.Generator, image_hw: tuple[int, int]
) -> dict[str, Any]:
    """One visual prompt for an object, in the predictor's format, drawn like the training prompts.

    point: one positive click inside the visible mask; box: the visible xyxy box with each side
    jittered by up to 10 %; scribble: a 3-8 vertex polyline inside the mask (the predictor API carries
    no pen width).
    """
    if task == "point":
        x, y = sample_positive_point(mask, rng)
        return {"points": [[x, y]], "labels": [1]}
    if task == "box":
        return {"box": jitter_box(box, rng, image_hw=image_hw)}
    if task == "scribble":
        return {"scribble": [[x, y] for x, y in sample_scribble(mask, rng).points]}
    raise ValueError(f"unknown prompt task {task!r}")


def _top1_box(result: ImageResult) -> np.ndarray | None:
    return np.asarray(result.boxes[0], np.float64) if len(result) else None


def _top1_mask(result: ImageResult) -> np.ndarray | None:
    return np.asarray(result.masks[0], bool) if len(result) else None


def _ground_image(
    predictor: ImagePredictor, sample: ImageSample
) -> list[tuple[np.ndarray | None, np.ndarray, str]]:
    """(top-1 box or None, referred object's xyxy box, expression kind) for every sentence on the image."""
    items = [(sentence, k) for k, sentences in enumerate(sample.sentences) for sentence in sentences]
    if not items:
        return []
    results = predictor.ground(sample.image, [sentence for sentence, _ in items])
    return [
        (_top1_box(r), sample.boxes[k], expression_kind(sentence))
        for (sentence, k), r in zip(items, results, strict=True)
    ]


def _prompt_image(
    predictor: ImagePredictor, sample: ImageSample, tasks: Sequence[str], rng: np.random.Generator
) -> dict[str, list[float]]:
    """Per prompt task: the IoU of the top-1 predicted mask for every object on the image."""
    hw = (sample.height, sample.width)
    out = {}
    for task in tasks:
        prompts = [
            sample_prompt(task, m, b, rng, hw) for m, b in zip(sample.masks, sample.boxes, strict=True)
        ]
        results = predictor.segment(sample.image, prompts)
        out[task] = prompt_ious([_top1_mask(r) for r in results], list(sample.masks))
    return out


def _skip_reasons(gt: dict[str, Any], tasks: Sequence[str]) -> dict[str, str]:
    """Tasks the dataset cannot support, with the reason reported in place of their metrics."""
    reasons = {}
    if "colour" in tasks and not has_colours(gt):
        reasons["colour"] = "annotations carry no colour attribute"
    if "rec" in tasks and not gt.get("refs"):
        reasons["rec"] = "dataset has no refs"
    return reasons


def evaluate_images(
    predictor: ImagePredictor,
    coco_json_path: str | Path,
    image_dir: str | Path,
    tasks: Iterable[str] = IMAGE_TASKS,
    limit: int | None = None,
    seed: int = 0,
    progress: Callable[[Iterable[Any]], Iterable[Any]] = iter,
) -> dict[str, Any]:
    """Run ``tasks`` on the first ``limit`` images of the file; return the metrics as a JSON-ready dict.

    detect / colour -> COCO box and mask AP (shape categories / "<colour> <shape>" phrases);
    rec -> accuracy@0.5 of the top-1 box, also per expression kind;
    point / box / scribble -> mIoU of the top-1 mask for one prompt sampled from each object.
    ``progress`` may wrap the image loop (e.g. ``tqdm``).
    """
    tasks = tuple(tasks)
    unknown = set(tasks) - set(IMAGE_TASKS)
    if unknown:
        raise ValueError(f"unknown image tasks {sorted(unknown)}; choose from {IMAGE_TASKS}")
    dataset = CocoDataset(coco_json_path, image_root=image_dir)
    gt = read_json(coco_json_path, "COCO image dataset")
    skipped = _skip_reasons(gt, tasks)
    active = [t for t in tasks if t not in skipped]
    prompt_tasks = [t for t in PROMPT_TASKS if t in active]
    shape_ids = {c["name"]: c["id"] for c in gt["categories"]}
    colour_gt = colour_phrase_gt(gt) if "colour" in active else None
    phrase_ids = {c["name"]: c["id"] for c in colour_gt["categories"]} if colour_gt else {}

    image_ids: list[int] = []
    detections: dict[str, list[dict[str, Any]]] = {"detect": [], "colour": []}
    grounded: list[tuple[np.ndarray | None, np.ndarray, str]] = []
    ious: dict[str, list[float]] = {t: [] for t in PROMPT_TASKS}
    for index in progress(range(min(len(dataset), limit or len(dataset)))):
        sample = dataset.get(index, masks=bool(prompt_tasks))
        image_ids.append(sample.image_id)
        for task, names in (("detect", shape_ids), ("colour", phrase_ids)):
            if task in active:
                result = predictor.detect(
                    sample.image,
                    list(names),
                    score_threshold=AP_SCORE_THRESHOLD,
                    max_detections=AP_MAX_DETECTIONS,
                )
                detections[task] += result_to_detections(result, sample.image_id, names)
        if "rec" in active:
            grounded += _ground_image(predictor, sample)
        if prompt_tasks and len(sample.ann_ids):
            rng = np.random.default_rng([seed, sample.image_id])
            for task, values in _prompt_image(predictor, sample, prompt_tasks, rng).items():
                ious[task] += values

    out: dict[str, Any] = {"images": len(image_ids)}
    for task in tasks:
        if task in skipped:
            out[task] = {"skipped": skipped[task]}
        elif task == "detect":
            out[task] = coco_ap(gt, detections[task], image_ids=image_ids)
        elif task == "colour":
            out[task] = coco_ap(colour_gt, detections[task], image_ids=image_ids)
        elif task == "rec":
            preds, boxes, kinds = ([item[i] for item in grounded] for i in range(3))
            out[task] = rec_accuracy(preds, boxes, kinds)
        else:
            out[task] = mean_iou(ious[task])
    return out
