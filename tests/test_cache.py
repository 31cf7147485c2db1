"""The cache contract, run against every backend so memory and Redis stay interchangeable."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from leadscore.core.cache import Cache, CacheUnavailableError, MemoryCache, RedisCache, create_cache
from tests.services import dead_port, delete_prefixed, redis_url


class FakeClock:
    """A monotonic clock the test moves by hand, so expiry needs no sleeping."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Backend:
    """A cache and a way to let time pass for it: a fake clock for memory, real sleep for Redis."""

    cache: Cache
    elapse: Callable[[float], Awaitable[None]]


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "memory":
        clock = FakeClock()

        async def advance(seconds: float) -> None:
            clock.now += seconds

        memory = MemoryCache(max_entries=1_000, clock=clock)
        yield Backend(memory, advance)
        await memory.close()
        return

    url = redis_url()
    prefix = f"leadscore-test:{uuid.uuid4().hex}:"
    cache = RedisCache(url, prefix=prefix)
    try:
        yield Backend(cache, asyncio.sleep)
    finally:
        await cache.close()
        await delete_prefixed(url, prefix)


# --- contract: every backend -------------------------------------------------------------------


async def test_set_then_get_round_trips_bytes(backend: Backend) -> None:
    value = b"\x00score\xff" * 10
    await backend.cache.set("lead:1", value, ttl_seconds=60)
    assert await backend.cache.get("lead:1") == value


async def test_many_keys_in_one_round_trip(backend: Backend) -> None:
    await backend.cache.set_many([("a", b"1", 60), ("b", b"2", 60)])
    assert await backend.cache.get_many(["b", "missing", "a"]) == [b"2", None, b"1"]
    assert await backend.cache.get_many([]) == []
    await backend.cache.set_many([])


async def test_set_many_entries_expire_on_their_own_ttls(backend: Backend) -> None:
    await backend.cache.set_many([("short", b"s", 0.2), ("long", b"l", 60)])
    await backend.elapse(0.3)
    assert await backend.cache.get_many(["short", "long"]) == [None, b"l"]


async def test_missing_key_is_none(backend: Backend) -> None:
    assert await backend.cache.get("never-set") is None


async def test_entry_expires_after_its_ttl(backend: Backend) -> None:
    await backend.cache.set("short", b"v", ttl_seconds=0.2)
    await backend.cache.set("long", b"w", ttl_seconds=60)
    assert await backend.cache.get("short") == b"v"
    await backend.elapse(0.3)
    assert await backend.cache.get("short") is None
    assert await backend.cache.get("long") == b"w"


async def test_add_stores_only_where_no_live_value_is(backend: Backend) -> None:
    assert await backend.cache.add("once", b"first", ttl_seconds=0.2)
    assert not await backend.cache.add("once", b"second", ttl_seconds=60)
    assert await backend.cache.get("once") == b"first"
    await backend.elapse(0.3)
    assert await backend.cache.add("once", b"third", ttl_seconds=60)  # the first expired
    assert await backend.cache.get("once") == b"third"


async def test_overwrite_replaces_value_and_ttl(backend: Backend) -> None:
    await backend.cache.set("k", b"old", ttl_seconds=0.2)
    await backend.cache.set("k", b"new", ttl_seconds=60)
    await backend.elapse(0.3)
    assert await backend.cache.get("k") == b"new"


async def test_delete_forgets_key_and_ignores_absent_keys(backend: Backend) -> None:
    await backend.cache.set("k", b"v", ttl_seconds=60)
    await backend.cache.delete("k")
    await backend.cache.delete("never-set")
    assert await backend.cache.get("k") is None


@pytest.mark.parametrize("ttl", [0, -1.0])
async def test_non_positive_ttl_is_refused(backend: Backend, ttl: float) -> None:
    with pytest.raises(ValueError, match="ttl_seconds"):
        await backend.cache.set("k", b"v", ttl_seconds=ttl)


async def test_ping_answers(backend: Backend) -> None:
    await backend.cache.ping()


# --- memory only: the size bound ---------------------------------------------------------------


async def test_memory_cache_evicts_least_recently_used_beyond_max_entries() -> None:
    cache = MemoryCache(max_entries=3)
    for key in "abc":
        await cache.set(key, key.encode(), ttl_seconds=60)
    assert await cache.get("a") == b"a"  # now most recently used; "b" is the oldest
    await cache.set("d", b"d", ttl_seconds=60)
    assert await cache.get("b") is None
    assert [await cache.get(key) for key in "acd"] == [b"a", b"c", b"d"]


# --- redis only: failure ----------------------------------------------------------------------


async def test_redis_at_a_dead_port_raises_cache_unavailable_at_once() -> None:
    cache = RedisCache(f"redis://127.0.0.1:{dead_port()}/0", timeout_seconds=0.25)
    started = time.perf_counter()
    try:
        with pytest.raises(CacheUnavailableError) as caught:
            await cache.ping()
        with pytest.raises(CacheUnavailableError):
            await cache.get("k")
        with pytest.raises(CacheUnavailableError):
            await cache.set("k", b"v", ttl_seconds=60)
        with pytest.raises(CacheUnavailableError):
            await cache.delete("k")
    finally:
        await cache.close()
    assert time.perf_counter() - started < 1.0
    assert (caught.value.status_code, caught.value.code) == (503, "cache_unavailable")


async def test_redis_that_never_answers_times_out_within_the_timeout() -> None:
    # A listening socket that never accepts: the connection opens, no reply ever comes.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        cache = RedisCache(f"redis://127.0.0.1:{silent.getsockname()[1]}/0", timeout_seconds=0.1)
        started = time.perf_counter()
        try:
            with pytest.raises(CacheUnavailableError):
                await cache.ping()
        finally:
            await cache.close()
    assert time.perf_counter() - started < 0.5


async def test_create_cache_uses_redis_only_when_a_url_is_configured() -> None:
    memory = create_cache(None, max_entries=10)
    redis = create_cache("redis://127.0.0.1:1/0")  # constructing does not connect
    try:
        assert (memory.name, redis.name) == ("memory", "redis")
    finally:
        await memory.close()
        await redis.close()
