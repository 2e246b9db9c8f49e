"""Scheduling of the dynamic batcher. The stand-in model below exists only to observe which requests the
batcher groups together; a gate lets each test decide when the model is busy, so no test depends on
timing."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from glee.service.batcher import DynamicBatcher
from glee.service.errors import UnavailableError


class StandInModel:
    """Records every batch; ``gate`` closed = the model is busy. Items are strings keyed by their first
    letter; a batch containing an item with "bad" in it raises, like a model rejecting one input."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gate = threading.Event()
        self.running = threading.Event()

    def run_batch(self, items: list[str]) -> list[str]:
        self.running.set()
        assert self.gate.wait(10), "test never opened the gate"
        self.batches.append(list(items))
        if any("bad" in item for item in items):
            raise ValueError("bad input")
        return [item.upper() for item in items]


def make(model: StandInModel, executor: ThreadPoolExecutor, **limits: float) -> DynamicBatcher[str, str]:
    options = {"max_batch_size": 3, "max_queue_delay_s": 0.0} | limits
    return DynamicBatcher(model.run_batch, lambda item: item[0], executor, **options)


async def until(condition: threading.Event) -> None:
    while not condition.is_set():
        await asyncio.sleep(0.001)


def run(coro) -> None:
    with ThreadPoolExecutor(max_workers=1) as executor:
        asyncio.run(coro(executor))


def test_requests_that_arrive_while_the_model_is_busy_are_batched_by_key_in_fifo_order() -> None:
    async def scenario(executor: ThreadPoolExecutor) -> None:
        model = StandInModel()
        batcher = make(model, executor)
        batcher.start()
        first = asyncio.create_task(batcher.submit("a0"))
        await until(model.running)
        rest = [asyncio.create_task(batcher.submit(x)) for x in ("a1", "b1", "a2", "a3", "a4", "b2")]
        await asyncio.sleep(0)
        assert len(batcher) == 6
        model.gate.set()
        results = await asyncio.gather(first, *rest)
        await batcher.stop()
        assert model.batches == [["a0"], ["a1", "a2", "a3"], ["b1", "b2"], ["a4"]]
        assert [r for r, _ in results] == ["A0", "A1", "B1", "A2", "A3", "A4", "B2"]
        assert [t.batch_size for _, t in results] == [1, 3, 2, 3, 3, 1, 2]
        assert all(t.queue_s >= 0 and t.inference_s >= 0 for _, t in results)

    run(scenario)


def test_a_full_batch_is_dispatched_without_waiting_for_the_queue_delay() -> None:
    async def scenario(executor: ThreadPoolExecutor) -> None:
        model = StandInModel()
        model.gate.set()
        batcher = make(model, executor, max_batch_size=2, max_queue_delay_s=3600)
        batcher.start()
        results = await asyncio.wait_for(asyncio.gather(batcher.submit("a1"), batcher.submit("a2")), 30)
        await batcher.stop()
        assert model.batches == [["a1", "a2"]]
        assert [r for r, _ in results] == ["A1", "A2"]

    run(scenario)


def test_a_lone_request_runs_once_its_queue_delay_expires() -> None:
    async def scenario(executor: ThreadPoolExecutor) -> None:
        model = StandInModel()
        model.gate.set()
        batcher = make(model, executor, max_batch_size=8, max_queue_delay_s=0.02)
        batcher.start()
        result, timing = await asyncio.wait_for(batcher.submit("a1"), 30)
        await batcher.stop()
        assert (result, timing.batch_size, model.batches) == ("A1", 1, [["a1"]])

    run(scenario)


def test_a_failing_request_fails_alone_and_its_batch_mates_succeed() -> None:
    async def scenario(executor: ThreadPoolExecutor) -> None:
        model = StandInModel()
        batcher = make(model, executor)
        batcher.start()
        first = asyncio.create_task(batcher.submit("a0"))
        await until(model.running)
        tasks = [asyncio.create_task(batcher.submit(x)) for x in ("a1", "abad", "b2")]
        await asyncio.sleep(0)
        model.gate.set()
        ok_first, ok, failed, other = await asyncio.gather(first, *tasks, return_exceptions=True)
        await batcher.stop()
        assert isinstance(failed, ValueError)
        assert ok_first[0] == "A0" and ok[0] == "A1" and other[0] == "B2"
        # "a1" and "abad" share a key: their batch fails, then each is retried alone.
        assert model.batches == [["a0"], ["a1", "abad"], ["a1"], ["abad"], ["b2"]]

    run(scenario)


def test_requests_cancelled_while_queued_never_reach_the_model() -> None:
    async def scenario(executor: ThreadPoolExecutor) -> None:
        model = StandInModel()
        batcher = make(model, executor)
        batcher.start()
        first = asyncio.create_task(batcher.submit("a0"))
        await until(model.running)
        abandoned = asyncio.create_task(batcher.submit("a1"))
        kept = asyncio.create_task(batcher.submit("a2"))
        await asyncio.sleep(0)
        abandoned.cancel()
        model.gate.set()
        await asyncio.gather(first, kept)
        await batcher.stop()
        assert model.batches == [["a0"], ["a2"]]

    run(scenario)


def test_stopping_fails_waiting_requests_with_unavailable() -> None:
    async def scenario(executor: ThreadPoolExecutor) -> None:
        model = StandInModel()
        batcher = make(model, executor, max_queue_delay_s=3600, max_batch_size=8)
        batcher.start()
        waiting = asyncio.create_task(batcher.submit("a1"))
        await asyncio.sleep(0)
        await batcher.stop()
        with pytest.raises(UnavailableError):
            await waiting
        with pytest.raises(UnavailableError):
            await batcher.submit("a2")
        assert model.batches == []

    run(scenario)
