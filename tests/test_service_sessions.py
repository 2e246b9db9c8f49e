"""Session stores: the in-memory one and the Redis one (against a real redis-server) behave the same,
and the version check lets only one of two concurrent writers advance a session."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest
import redis

from glee.service.errors import NotFoundError, SessionConflictError, UnavailableError
from glee.service.sessions import MemorySessionStore, RedisSessionStore, SessionStore, open_session_store

StoreFactory = Callable[[int], SessionStore]


@pytest.fixture(params=["memory", "redis"])
def make_store(request: pytest.FixtureRequest) -> StoreFactory:
    if request.param == "memory":
        return MemorySessionStore
    url = request.getfixturevalue("redis_url")
    return lambda ttl_s: RedisSessionStore(url, ttl_s)


def run(coro) -> object:
    return asyncio.run(coro)


def new_id() -> str:
    return uuid.uuid4().hex


def test_create_load_commit_delete_round_trip(make_store: StoreFactory) -> None:
    async def scenario() -> None:
        store, sid = make_store(600), new_id()
        state = bytes(range(256)) * 16  # arbitrary binary, as TrackState bytes are
        await store.create(sid, state, {"task": "track", "mask_format": "rle"})
        record = await store.load(sid)
        assert (record.state, record.version) == (state, 0)
        assert record.meta == {"task": "track", "mask_format": "rle"}
        assert 590 <= record.expires_in_s <= 600
        assert await store.commit(sid, 0, b"\x00next") == 1
        assert await store.commit(sid, 1, b"\x00third") == 2
        record = await store.load(sid)
        assert (record.state, record.version) == (b"\x00third", 2)
        await store.delete(sid)
        with pytest.raises(NotFoundError):
            await store.load(sid)
        with pytest.raises(NotFoundError):
            await store.delete(sid)
        with pytest.raises(NotFoundError):
            await store.commit(sid, 2, b"x")
        await store.close()

    run(scenario())


def test_only_one_of_two_writers_that_loaded_the_same_version_can_commit(make_store: StoreFactory) -> None:
    async def scenario() -> None:
        replica_a, sid = make_store(600), new_id()
        # In memory, both "replicas" must be one store (one process); Redis gets two clients.
        replica_b = replica_a if isinstance(replica_a, MemorySessionStore) else make_store(600)
        await replica_a.create(sid, b"v0", {"task": "track"})
        seen_a, seen_b = await replica_a.load(sid), await replica_b.load(sid)
        assert await replica_a.commit(sid, seen_a.version, b"from a") == 1
        with pytest.raises(SessionConflictError):
            await replica_b.commit(sid, seen_b.version, b"from b")
        assert (await replica_b.load(sid)).state == b"from a"
        await replica_a.close()
        await replica_b.close()

    run(scenario())


def test_sessions_expire_after_their_ttl_and_commits_refresh_it(make_store: StoreFactory) -> None:
    async def scenario() -> None:
        store, idle, active = make_store(2), new_id(), new_id()
        await store.create(idle, b"s", {"task": "track"})
        await store.create(active, b"s", {"task": "track"})
        await asyncio.sleep(1.0)
        await store.commit(active, 0, b"s1")  # "active" now lives 2 s from here
        await asyncio.sleep(1.3)  # "idle" is past its 2 s for sure; "active" has 0.7 s left
        assert (await store.load(active)).version == 1
        with pytest.raises(NotFoundError):
            await store.load(idle)
        await store.close()

    run(scenario())


def test_redis_records_are_hashes_with_a_ttl(redis_url: str) -> None:
    async def scenario() -> str:
        store, sid = RedisSessionStore(redis_url, 120), new_id()
        await store.create(sid, b"state", {"task": "vos"})
        await store.commit(sid, 0, b"state-1")
        await store.close()
        return sid

    sid = run(scenario())
    client = redis.Redis.from_url(redis_url)
    key = RedisSessionStore.KEY_PREFIX + sid
    assert client.hgetall(key) == {b"state": b"state-1", b"version": b"1", b"meta": b'{"task": "vos"}'}
    assert 0 < client.ttl(key) <= 120
    client.close()


def test_an_unreachable_redis_is_unavailable_not_a_crash(unused_port: int) -> None:
    async def scenario() -> None:
        store = RedisSessionStore(f"redis://127.0.0.1:{unused_port}/0", 60)
        for call in (
            store.create(new_id(), b"s", {}),
            store.load(new_id()),
            store.commit(new_id(), 0, b"s"),
            store.delete(new_id()),
        ):
            with pytest.raises(UnavailableError) as info:
                await call
            assert info.value.http_status == 503 and info.value.grpc_code == "UNAVAILABLE"
        await store.close()

    run(scenario())


def test_the_store_is_redis_only_when_a_url_is_configured(redis_url: str) -> None:
    assert isinstance(open_session_store(None, 60), MemorySessionStore)
    store = open_session_store(redis_url, 60)
    assert isinstance(store, RedisSessionStore)
    run(store.close())
