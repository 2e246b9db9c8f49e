"""What the guided mask filter (``GleeConfig.mask_guided_radius``) costs per call of the demo predictor.

    python bench/mask_refinement.py --scenes 20 --size 512

Runs the committed demo model on generated demo-domain scenes of one size, each call once with the
filter and once without (interleaved, same model, same inputs), and prints one JSON line per call kind
with the median milliseconds of both and their ratio. 512 is the worst case of the domain: the radius in
image pixels grows with the image (16 px at 512), and so does every mask.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch

from glee.data.scenes import SceneConfig, generate_scene
from glee.data.spec import SHAPES
from glee.model import GleePredictor


def _ms(call: Callable[..., object], *args: object) -> float:
    start = time.perf_counter()
    call(*args)
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenes", type=int, default=20)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=777)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    guided = GleePredictor.load()
    bilinear = guided.with_config(mask_guided_radius=None)
    config = SceneConfig(min_size=args.size, max_size=args.size)
    kinds: dict[str, Callable[[GleePredictor, object, list[dict]], object]] = {
        "detect, threshold 0.3": lambda p, image, _: p.detect(image, list(SHAPES)),
        "detect, threshold 0, 100 detections (COCO AP)": lambda p, image, _: p.detect(
            image, list(SHAPES), score_threshold=0.0, max_detections=100
        ),
        "segment, one box prompt per object": lambda p, image, prompts: p.segment(image, prompts),
    }
    times: dict[str, dict[str, list[float]]] = {k: {"guided": [], "bilinear": []} for k in kinds}
    for index in range(args.scenes + 1):  # scene 0 warms up
        scene = generate_scene(args.seed, index, config)
        prompts = [{"box": list(o.box)} for o in scene.objects if o.area]
        for kind, call in kinds.items():
            for name, predictor in (("guided", guided), ("bilinear", bilinear)):
                ms = _ms(call, predictor, scene.image, prompts)
                if index:
                    times[kind][name].append(ms)
    for kind, runs in times.items():
        g, b = statistics.median(runs["guided"]), statistics.median(runs["bilinear"])
        row = {"call": kind, "size": args.size, "scenes": args.scenes, "threads": args.threads}
        row |= {"guided_ms": round(g, 1), "bilinear_ms": round(b, 1), "ratio": round(g / b, 2)}
        print(json.dumps(row))


if __name__ == "__main__":
    main()
