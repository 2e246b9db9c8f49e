"""Ordered parallel map used by the writers and the packer."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable
from typing import Any

from tqdm import tqdm


def run_ordered(
    fn: Callable[[Any], Any], jobs: list[Any], workers: int, desc: str, progress: bool
) -> list[Any]:
    """fn over jobs in `workers` spawned processes (in-process when workers <= 1), results in job order.

    Spawn, not fork: callers such as the trainer may hold threads (torch) that fork would copy broken.
    """

    def collect(results: Iterable[Any]) -> list[Any]:
        return list(tqdm(results, total=len(jobs), desc=desc, disable=not progress, unit="it"))

    if workers <= 1:
        return collect(map(fn, jobs))
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        return collect(pool.imap(fn, jobs))
