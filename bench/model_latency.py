"""Median CPU latency of one GLEE forward (random weights) per input size and task.

    python bench/model_latency.py --variant lite --sizes 384x512 800x1333 --repeats 5

Prints one JSON line per (size, task) with the median and all timings; quote medians (shared CPUs are noisy).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from glee.model import build_glee


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variant", default="lite")
    parser.add_argument("--sizes", nargs="+", default=["384x512", "800x1333"])
    parser.add_argument("--tasks", nargs="+", default=["categories", "grounding", "point"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_glee(args.variant)
    for size in args.sizes:
        h, w = (int(v) for v in size.split("x"))
        pixels = torch.rand(1, 3, h, w) * 255
        mask = torch.zeros(1, h, w, dtype=torch.bool)
        mask[0, h // 3 : h // 3 + 16, w // 3 : w // 3 + 16] = True
        calls = {
            "categories": lambda p=pixels: model.forward_raw(p, categories=["person", "car", "tree", "dog"]),
            "grounding": lambda p=pixels: model.forward_raw(p, expression="the person on the left"),
            "point": lambda p=pixels, m=mask: model.forward_raw(p, prompt_mask=m, prompt_type="point"),
        }
        for task in args.tasks:
            calls[task]()  # warm-up
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                calls[task]()
                times.append(time.perf_counter() - t0)
            print(json.dumps({"variant": args.variant, "size": size, "task": task, "threads": args.threads,
                              "median_s": round(statistics.median(times), 3),
                              "runs_s": [round(t, 3) for t in times]}), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
