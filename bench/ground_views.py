"""What grounding's mirrored second view (``GleeConfig.ground_mirror_weight``) costs per ``ground`` call.

    python bench/ground_views.py --scenes 20 --size 256

Runs the committed demo model on generated demo-domain scenes of one size, each call once with the
mirrored view (the demo default) and once with one view (interleaved, same model, same inputs), and prints
one JSON line per call kind with the median milliseconds of both and their ratio. The mirrored view doubles
the batch of the one forward a call makes; the masks and the post-processing stay those of one view.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from glee.data.scenes import SceneConfig, generate_scene
from glee.model import GleePredictor

SENTENCES = ["the leftmost object", "the largest circle", "the red square", "the star on the left"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenes", type=int, default=20)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=777)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    mirrored = GleePredictor.load()
    if not mirrored.cfg.ground_mirror_weight:
        raise SystemExit("the committed demo model grounds with one view: nothing to compare")
    single = mirrored.with_config(ground_mirror_weight=0.0)
    config = SceneConfig(min_size=args.size, max_size=args.size)
    kinds = {"ground, 1 sentence": SENTENCES[:1], f"ground, {len(SENTENCES)} sentences": SENTENCES}
    times: dict[str, dict[str, list[float]]] = {k: {"mirrored": [], "one view": []} for k in kinds}
    for index in range(args.scenes + 1):  # scene 0 warms up
        image = generate_scene(args.seed, index, config).image
        for kind, sentences in kinds.items():
            for name, predictor in (("mirrored", mirrored), ("one view", single)):
                start = time.perf_counter()
                predictor.ground(image, sentences)
                if index:
                    times[kind][name].append((time.perf_counter() - start) * 1000)
    for kind, runs in times.items():
        m, s = statistics.median(runs["mirrored"]), statistics.median(runs["one view"])
        row = {"call": kind, "size": args.size, "scenes": args.scenes, "threads": args.threads}
        row |= {"mirrored_ms": round(m, 1), "one_view_ms": round(s, 1), "ratio": round(m / s, 2)}
        print(json.dumps(row))


if __name__ == "__main__":
    main()
