"""A byte cache with one contract and two backends: in-process for one worker, Redis for many."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast

from leadscore.core.errors import LeadScoreError
from leadscore.core.resp import RedisAddress, RespClient, RespError


class CacheUnavailableError(LeadScoreError):
    """The cache backend could not answer in time; the caller decides whether to go without it."""

    status_code = 503
    code = "cache_unavailable"


class Cache(Protocol):
    """What the service needs from a cache, so memory and Redis are interchangeable."""

    name: str

    async def get(self, key: str) -> bytes | None:
        """The live value under `key`, or None when absent or expired."""
        ...

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        """Store `value` under `key` until `ttl_seconds` have passed."""
        ...

    async def add(self, key: str, value: bytes, ttl_seconds: float) -> bool:
        """Store `value` only if `key` holds no live value; whether it was stored (atomic, so
        two workers racing for one key cannot both win)."""
        ...

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Values for many keys in one round trip, in order."""
        ...

    async def set_many(self, items: Sequence[tuple[str, bytes, float]]) -> None:
        """Store many (key, value, ttl_seconds) entries in one round trip."""
        ...

    async def delete(self, key: str) -> None:
        """Forget `key`; absent keys are not an error."""
        ...

    async def ping(self) -> None:
        """Prove the backend answers, raising CacheUnavailableError when it cannot."""
        ...

    async def close(self) -> None:
        """Release connections; the cache is unusable afterwards."""
        ...


def _check_ttl(ttl_seconds: float) -> None:
    """Refuse a TTL that would store nothing, rather than let each backend guess differently."""
    if not ttl_seconds > 0:
        raise ValueError(f"ttl_seconds must be positive, got {ttl_seconds!r}")


class MemoryCache:
    """A bounded LRU cache with per-entry expiry, for a single worker process.

    Every operation is O(1) (an OrderedDict move or pop). It takes no lock: asyncio runs one
    coroutine at a time and no method awaits, so each call is atomic within its event loop. It is
    not safe to share between threads. Expired entries are dropped when read or when they reach
    the least recently used end, so `max_entries` bounds memory either way.
    """

    name = "memory"

    def __init__(
        self, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries!r}")
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    async def get(self, key: str) -> bytes | None:
        """The live value under `key`, refreshed as most recently used."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, value = entry
        if self._clock() >= expires_at:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        """Store `value`, evicting the least recently used entry when full."""
        _check_ttl(ttl_seconds)
        entries = self._entries
        entries[key] = (self._clock() + ttl_seconds, value)
        entries.move_to_end(key)
        if len(entries) > self.max_entries:
            entries.popitem(last=False)

    async def add(self, key: str, value: bytes, ttl_seconds: float) -> bool:
        """Store `value` unless a live one is there (atomic: no await in between)."""
        if await self.get(key) is not None:
            return False
        await self.set(key, value, ttl_seconds)
        return True

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Each key's live value, in order."""
        return [await self.get(key) for key in keys]

    async def set_many(self, items: Sequence[tuple[str, bytes, float]]) -> None:
        """Store each entry."""
        for key, value, ttl in items:
            await self.set(key, value, ttl)

    async def delete(self, key: str) -> None:
        """Forget `key`."""
        self._entries.pop(key, None)

    async def ping(self) -> None:
        """Always answers: the cache is this process."""

    async def close(self) -> None:
        """Drop every entry so a closed cache holds no memory."""
        self._entries.clear()


class RedisCache:
    """A cache in Redis, shared by every worker, with every failure raised as one domain error.

    Operations are bounded by `timeout_seconds` and never retried: this cache sits on a
    millisecond request path, where a slow answer is worse than none. Every request of the
    worker shares one pipelined connection (`RespClient`).
    """

    name = "redis"

    def __init__(
        self, redis: RedisAddress | str, prefix: str = "leadscore:", timeout_seconds: float = 0.25
    ) -> None:
        self.prefix = prefix
        self._redis = RespClient(redis, timeout_seconds)

    async def _run(self, what: str, *command: bytes | str | int) -> Any:
        try:
            return await self._redis.execute(*command)
        except RespError as exc:
            raise CacheUnavailableError(f"redis {what} failed: {exc}") from exc

    async def get(self, key: str) -> bytes | None:
        """The live value under `key`; Redis expires entries itself."""
        return cast("bytes | None", await self._run("GET", "GET", self.prefix + key))

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        """Store `value` with a millisecond TTL, rounded up so it never expires early."""
        _check_ttl(ttl_seconds)
        await self._run("SET", "SET", self.prefix + key, value, "PX", math.ceil(ttl_seconds * 1000))

    async def add(self, key: str, value: bytes, ttl_seconds: float) -> bool:
        """SET ... NX PX: Redis decides which of several workers stores first."""
        _check_ttl(ttl_seconds)
        reply = await self._run(
            "SET", "SET", self.prefix + key, value, "NX", "PX", math.ceil(ttl_seconds * 1000)
        )
        return reply is not None

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """One MGET for all keys."""
        if not keys:
            return []
        values = await self._run("MGET", "MGET", *(self.prefix + key for key in keys))
        return cast("list[bytes | None]", values)

    async def set_many(self, items: Sequence[tuple[str, bytes, float]]) -> None:
        """Every SET ... PX in one write and one round trip."""
        if not items:
            return
        for _, _, ttl in items:
            _check_ttl(ttl)
        commands: list[tuple[bytes | str | int, ...]] = [
            ("SET", self.prefix + key, value, "PX", math.ceil(ttl * 1000))
            for key, value, ttl in items
        ]
        try:
            await self._redis.execute_many(commands)
        except RespError as exc:
            raise CacheUnavailableError(f"redis SET failed: {exc}") from exc

    async def delete(self, key: str) -> None:
        """Forget `key`."""
        await self._run("DEL", "DEL", self.prefix + key)

    async def ping(self) -> None:
        """Round-trip a PING so readiness checks see a dead Redis."""
        await self._run("PING", "PING")

    async def close(self) -> None:
        """Close the connection."""
        await self._redis.close()


def create_cache(redis: RedisAddress | str | None, *, max_entries: int = 100_000) -> Cache:
    """Redis when configured, so workers share entries; otherwise this process's memory."""
    if redis:
        return RedisCache(redis)
    return MemoryCache(max_entries=max_entries)
