"""Ordered parallel map used by the dataset writers."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable
from typing import Any

from tqdm import tqdm


def run_ordered(
    fn: Callable[[Any], Any], jobs: list[Any], workers: int, desc: str, progress: bool
) -> list[Any]:
    """fn over jobs in `workers` spawned processes (in-process when workers <= 1), results in job order.
    No more processes than jobs are started: each spawn costs a Python start-up.

    Spawn, not fork: callers such as the trainer may hold threads (torch) that fork would copy broken.
    """
    workers = min(workers, len(jobs))

    def collect(results: Iterable[Any]) -> list[Any]:
        return list(tqdm(results, total=len(jobs), desc=desc, disable=not progress, unit="it"))

    if workers <= 1:
        return collect(map(fn, jobs))
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        return collect(pool.imap(fn, jobs))
