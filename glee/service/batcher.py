"""Dynamic batching across requests in front of a single model worker (Triton's dynamic batcher, in
asyncio).

Requests wait in one bounded FIFO queue. When the model is free, the oldest request fixes the batch key
(same padded input size and task); the batch closes when ``max_batch_size`` requests with that key are
queued or when the oldest one has waited ``max_queue_delay_s``, whichever comes first. Requests with
other keys keep their place for a later batch. While a batch runs, new requests accumulate, so under
load batches fill up without any extra delay. The queue's bound is the engine's (``Engine._admit``), since
video frames wait for the same model thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from glee.service.errors import UnavailableError

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchTiming:
    """Seconds a request waited in the queue, seconds its batch ran in the model, and the batch size."""

    queue_s: float
    inference_s: float
    batch_size: int


@dataclass
class _Pending(Generic[T]):
    item: T
    key: Hashable
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)


class DynamicBatcher(Generic[T, R]):
    """Groups submitted items into batches for ``run_batch`` (called in ``executor``, one batch at a time).

    ``run_batch(items) -> results`` must return one result per item, in order. When a batch of several
    items raises, each item is retried alone, so one bad request cannot fail the requests batched with it.
    ``on_batch(size, seconds)`` observes every executed batch (metrics).
    """

    def __init__(
        self,
        run_batch: Callable[[list[T]], Sequence[R]],
        key: Callable[[T], Hashable],
        executor: Executor,
        *,
        max_batch_size: int,
        max_queue_delay_s: float,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self._run_batch = run_batch
        self._key = key
        self._executor = executor
        self.max_batch_size = max_batch_size
        self.max_queue_delay_s = max_queue_delay_s
        self._on_batch = on_batch
        self._pending: list[_Pending[T]] = []
        self._arrived = asyncio.Event()
        self._worker: asyncio.Task | None = None

    def __len__(self) -> int:
        """Requests waiting in the queue (not counting the batch being executed)."""
        return len(self._pending)

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._work(), name="glee-batcher")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None
        for pending in self._pending:
            if not pending.future.done():
                pending.future.set_exception(UnavailableError("the server is shutting down"))
        self._pending.clear()

    async def submit(self, item: T) -> tuple[R, BatchTiming]:
        """Queue one item and wait for its result."""
        if self._worker is None:
            raise UnavailableError("the batcher is not running")
        future = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(item, self._key(item), future))
        self._arrived.set()
        return await future

    async def _work(self) -> None:
        while True:
            batch = await self._next_batch()
            await self._execute(batch)

    async def _next_batch(self) -> list[_Pending[T]]:
        while True:
            self._pending = [p for p in self._pending if not p.future.done()]  # drop cancelled requests
            if not self._pending:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            oldest = self._pending[0]
            same_key = [p for p in self._pending if p.key == oldest.key]
            wait = oldest.enqueued + self.max_queue_delay_s - time.perf_counter()
            if len(same_key) >= self.max_batch_size or wait <= 0:
                batch = same_key[: self.max_batch_size]
                taken = {id(p) for p in batch}
                self._pending = [p for p in self._pending if id(p) not in taken]
                return batch
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), timeout=wait)

    async def _execute(self, batch: list[_Pending[T]]) -> None:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            results = await loop.run_in_executor(self._executor, self._run_batch, [p.item for p in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"run_batch returned {len(results)} results for {len(batch)} items")
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0], exc=exc)
                return
            log.warning("batch of %d failed (%s); retrying its requests one by one", len(batch), exc)
            for pending in batch:
                await self._execute([pending])
            return
        elapsed = time.perf_counter() - started
        if self._on_batch is not None:
            self._on_batch(len(batch), elapsed)
        for pending, result in zip(batch, results, strict=True):
            _settle(pending, result=(result, BatchTiming(started - pending.enqueued, elapsed, len(batch))))


def _settle(pending: _Pending, *, result: Any = None, exc: BaseException | None = None) -> None:
    if pending.future.done():  # the client went away while its batch ran
        return
    if exc is not None:
        pending.future.set_exception(exc)
    else:
        pending.future.set_result(result)
