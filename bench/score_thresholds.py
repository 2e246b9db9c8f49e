"""How a detection score threshold trades found objects against false positives (the README's figures).

Detects every category of a COCO-format image set at threshold 0, matches detections to ground truth
greedily by score (box IoU >= 0.5 under the right name, each object once), then reports the score
distribution of the matched detections and, per threshold, the share of objects found and the unmatched
detections per image.

    python bench/score_thresholds.py data/tune_images          # the embedded demo model
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from PIL import Image

from glee.data.masks import box_iou
from glee.model.predictor import GleePredictor


def _match(scores: np.ndarray, ious: np.ndarray, same_name: np.ndarray) -> np.ndarray:
    """Bool per detection: matched to a still-free object of its name, best score first."""
    matched = np.zeros(len(scores), bool)
    free = np.ones(ious.shape[1], bool)
    for i in np.argsort(-scores):
        candidates = np.where(free & same_name[i], ious[i], 0.0)
        if candidates.size and candidates.max() >= 0.5:
            free[candidates.argmax()] = False
            matched[i] = True
    return matched


def main(
    dataset: Annotated[Path, typer.Argument(help="folder with annotations.json and images/")],
    model: Annotated[str | None, typer.Option(help="weights dir (default: the embedded demo model)")] = None,
    thresholds: Annotated[str, typer.Option(help="comma-separated")] = "0.2,0.3",
) -> None:
    """Print the matched-score distribution and recall / false positives per image at each threshold."""
    coco = json.loads((dataset / "annotations.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    predictor = GleePredictor.load(model)
    matched_scores, unmatched_scores, n_objects = [], [], 0
    for image in coco["images"]:
        anns = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
        n_objects += len(anns)
        gt = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)]).reshape(-1, 4)
        pixels = np.asarray(Image.open(dataset / "images" / image["file_name"]).convert("RGB"))
        result = predictor.detect(pixels, sorted(set(names.values())), score_threshold=0.0)
        scores = np.asarray(result.scores, float)
        ious = box_iou(np.asarray(result.boxes).reshape(-1, 4), gt)
        same_name = np.array([[label == names[a["category_id"]] for a in anns] for label in result.labels])
        matched = _match(scores, ious, same_name.reshape(len(scores), len(anns)))
        matched_scores += scores[matched].tolist()
        unmatched_scores += scores[~matched].tolist()
    found, extra = np.array(matched_scores), np.array(unmatched_scores)
    print(f"{len(coco['images'])} images, {n_objects} objects, {len(found)} matched at threshold 0: "
          f"median score {np.median(found):.2f}, 10th percentile {np.percentile(found, 10):.2f}")  # fmt: skip
    for t in (float(x) for x in thresholds.split(",")):
        print(f"threshold {t}: found {(found >= t).sum() / n_objects:.1%} of the objects, "
              f"{(extra >= t).sum() / len(coco['images']):.2f} false positives per image")  # fmt: skip


if __name__ == "__main__":
    typer.run(main)
