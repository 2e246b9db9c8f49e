"""Video session stores: in-memory (one process) and Redis (any replica can continue any session).

A session is the model's ``TrackState`` bytes plus a version number and a little service metadata.
Every frame commits the new state with a compare-and-set on the version (a Lua script in Redis, atomic
on the server), so two replicas that both load version v and both compute frame v+1 cannot both win:
the second commit fails with ``SessionConflictError`` instead of silently forking the session. Each
commit refreshes the TTL, so a session lives ``ttl_s`` after its last frame.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from glee.service.errors import NotFoundError, SessionConflictError, UnavailableError


@dataclass(frozen=True)
class SessionRecord:
    state: bytes
    version: int
    meta: dict[str, Any]
    expires_in_s: int


class SessionStore(ABC):
    """Keyed by session id; every method raises ``NotFoundError`` for unknown or expired sessions."""

    def __init__(self, ttl_s: int) -> None:
        self.ttl_s = ttl_s

    @abstractmethod
    async def create(self, session_id: str, state: bytes, meta: dict[str, Any]) -> None: ...

    @abstractmethod
    async def load(self, session_id: str) -> SessionRecord: ...

    @abstractmethod
    async def commit(self, session_id: str, expected_version: int, state: bytes) -> int:
        """Replace the state if its version is still ``expected_version``; returns the new version."""

    @abstractmethod
    async def delete(self, session_id: str) -> None: ...

    async def close(self) -> None:  # noqa: B027 - only stores holding connections need it
        """Release connections."""


def _not_found(session_id: str) -> NotFoundError:
    return NotFoundError(f"session {session_id!r} does not exist or has expired", code="session_not_found")


def _conflict(session_id: str) -> SessionConflictError:
    return SessionConflictError(f"session {session_id!r} was advanced by another request; reload and retry")


@dataclass
class _Entry:
    state: bytes
    version: int
    meta: dict[str, Any]
    expires_at: float


class MemorySessionStore(SessionStore):
    """Sessions in this process only (the default of ``glee serve`` without ``--redis-url``)."""

    def __init__(self, ttl_s: int) -> None:
        super().__init__(ttl_s)
        self._entries: dict[str, _Entry] = {}

    def _live(self, session_id: str) -> _Entry:
        entry = self._entries.get(session_id)
        if entry is None or entry.expires_at <= time.monotonic():
            self._entries.pop(session_id, None)
            raise _not_found(session_id)
        return entry

    def _purge_expired(self) -> None:
        now = time.monotonic()
        for session_id in [k for k, e in self._entries.items() if e.expires_at <= now]:
            del self._entries[session_id]

    async def create(self, session_id: str, state: bytes, meta: dict[str, Any]) -> None:
        self._purge_expired()
        self._entries[session_id] = _Entry(state, 0, dict(meta), time.monotonic() + self.ttl_s)

    async def load(self, session_id: str) -> SessionRecord:
        entry = self._live(session_id)
        remaining = max(0, round(entry.expires_at - time.monotonic()))
        return SessionRecord(entry.state, entry.version, dict(entry.meta), remaining)

    async def commit(self, session_id: str, expected_version: int, state: bytes) -> int:
        entry = self._live(session_id)
        if entry.version != expected_version:
            raise _conflict(session_id)
        entry.state, entry.version = state, entry.version + 1
        entry.expires_at = time.monotonic() + self.ttl_s
        return entry.version

    async def delete(self, session_id: str) -> None:
        self._live(session_id)
        del self._entries[session_id]


# KEYS[1] session hash; ARGV: expected version, new state, ttl seconds.
# Returns the new version, -1 when the session is gone, -2 when another writer got there first.
_COMMIT_SCRIPT = """
local version = redis.call('HGET', KEYS[1], 'version')
if not version then return -1 end
if version ~= ARGV[1] then return -2 end
local next_version = tonumber(version) + 1
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'version', next_version)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return next_version
"""


class RedisSessionStore(SessionStore):
    """Sessions in Redis as hashes ``glee:session:<id>`` {state, version, meta} with a TTL.

    Connection problems become ``UnavailableError`` (503 / UNAVAILABLE) quickly: short socket timeouts
    and two fast retries, so a dead Redis fails video requests instead of hanging them.
    """

    KEY_PREFIX = "glee:session:"

    def __init__(self, url: str, ttl_s: int, *, timeout_s: float = 2.0) -> None:
        super().__init__(ttl_s)
        self._redis = aioredis.Redis.from_url(
            url,
            socket_connect_timeout=timeout_s,
            socket_timeout=timeout_s,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), retries=2),
        )
        self._commit = self._redis.register_script(_COMMIT_SCRIPT)

    def _key(self, session_id: str) -> str:
        return self.KEY_PREFIX + session_id

    async def create(self, session_id: str, state: bytes, meta: dict[str, Any]) -> None:
        key = self._key(session_id)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping={"state": state, "version": 0, "meta": json.dumps(meta)})
                pipe.expire(key, self.ttl_s)
                await pipe.execute()
        except RedisError as exc:
            raise _unavailable(exc) from exc

    async def load(self, session_id: str) -> SessionRecord:
        key = self._key(session_id)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hgetall(key)
                pipe.ttl(key)
                fields, ttl = await pipe.execute()
        except RedisError as exc:
            raise _unavailable(exc) from exc
        if not fields:
            raise _not_found(session_id)
        return SessionRecord(
            state=fields[b"state"],
            version=int(fields[b"version"]),
            meta=json.loads(fields[b"meta"]),
            expires_in_s=max(0, int(ttl)),
        )

    async def commit(self, session_id: str, expected_version: int, state: bytes) -> int:
        try:
            result = int(
                await self._commit(keys=[self._key(session_id)], args=[expected_version, state, self.ttl_s])
            )
        except RedisError as exc:
            raise _unavailable(exc) from exc
        if result == -1:
            raise _not_found(session_id)
        if result == -2:
            raise _conflict(session_id)
        return result

    async def delete(self, session_id: str) -> None:
        try:
            deleted = await self._redis.delete(self._key(session_id))
        except RedisError as exc:
            raise _unavailable(exc) from exc
        if not deleted:
            raise _not_found(session_id)

    async def close(self) -> None:
        await self._redis.aclose()


def _unavailable(exc: Exception) -> UnavailableError:
    return UnavailableError(f"the session store is unavailable: {exc}", code="session_store_unavailable")


def open_session_store(redis_url: str | None, ttl_s: int) -> SessionStore:
    """Redis when a URL is configured, otherwise this process's memory."""
    return RedisSessionStore(redis_url, ttl_s) if redis_url else MemorySessionStore(ttl_s)
