"""The rate-limit contract, run on every backend with one fake clock so their decisions match."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from leadscore.core.ratelimit import (
    LeasingRateLimiter,
    MemoryRateLimiter,
    RateDecision,
    RateLimiter,
    RateLimitUnavailableError,
    RedisRateLimiter,
    create_rate_limiter,
)
from tests.services import dead_port, delete_prefixed, redis_url


class FakeClock:
    """A clock the test moves by hand, given to both backends so their decisions are comparable."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


MakeLimiter = Callable[[FakeClock | None], RateLimiter]


@pytest.fixture(params=["memory", "redis"])
async def make_limiter(request: pytest.FixtureRequest) -> AsyncIterator[MakeLimiter]:
    """Builds limiters of one backend on a fake clock, or on the backend's own clock for None."""
    made: list[RateLimiter] = []
    url = redis_url() if request.param == "redis" else ""
    prefix = f"leadscore-test:{uuid.uuid4().hex}:rl:"

    def make(clock: FakeClock | None) -> RateLimiter:
        limiter: RateLimiter
        if request.param == "memory":
            limiter = MemoryRateLimiter(clock) if clock else MemoryRateLimiter()
        else:
            limiter = RedisRateLimiter(url, prefix=prefix, clock=clock)
        made.append(limiter)
        return limiter

    try:
        yield make
    finally:
        for limiter in made:
            await limiter.close()
        if url:
            await delete_prefixed(url, prefix)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def limiter(make_limiter: MakeLimiter, clock: FakeClock) -> RateLimiter:
    return make_limiter(clock)


# --- contract: every backend -------------------------------------------------------------------


async def test_allows_the_limit_then_refuses_with_retry_after(limiter: RateLimiter) -> None:
    decisions = [await limiter.hit("api-key", limit=5, window_seconds=10) for _ in range(6)]
    assert [(d.allowed, d.remaining) for d in decisions] == [
        (True, 4),
        (True, 3),
        (True, 2),
        (True, 1),
        (True, 0),
        (False, 0),
    ]
    assert all(d.limit == 5 and d.retry_after_seconds == 0 for d in decisions[:5])
    assert decisions[5].retry_after_seconds == pytest.approx(2.0)  # one interval: 10 s / 5


async def test_retry_after_is_exactly_when_the_next_hit_is_allowed(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    for _ in range(3):
        await limiter.hit("k", limit=3, window_seconds=1)
    refused = await limiter.hit("k", limit=3, window_seconds=1)
    assert not refused.allowed
    assert refused.retry_after_seconds > 0
    clock.now += refused.retry_after_seconds - 0.000_01
    assert not (await limiter.hit("k", limit=3, window_seconds=1)).allowed
    clock.now += 0.000_01
    assert (await limiter.hit("k", limit=3, window_seconds=1)).allowed


async def test_window_refills_one_interval_at_a_time_then_fully(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    for _ in range(600):
        assert (await limiter.hit("k", limit=600, window_seconds=60)).allowed
    assert not (await limiter.hit("k", limit=600, window_seconds=60)).allowed
    clock.now += 0.1
    assert (await limiter.hit("k", limit=600, window_seconds=60)).allowed
    assert not (await limiter.hit("k", limit=600, window_seconds=60)).allowed
    clock.now += 60
    refilled = await limiter.hit("k", limit=600, window_seconds=60)
    assert (refilled.allowed, refilled.remaining) == (True, 599)


async def test_decisions_follow_the_documented_sequence(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    # limit 3 per 1 s: the interval is 333_334 µs (rounded up), so a full bucket spans 1.000002 s.
    script: list[tuple[float, RateDecision]] = [
        (0.0, RateDecision(True, 3, 2, 0.0)),
        (0.0, RateDecision(True, 3, 1, 0.0)),
        (0.0, RateDecision(True, 3, 0, 0.0)),
        (0.0, RateDecision(False, 3, 0, 0.333334)),
        (0.2, RateDecision(False, 3, 0, 0.133334)),
        (0.5, RateDecision(True, 3, 0, 0.0)),
        (2.0, RateDecision(True, 3, 2, 0.0)),
    ]
    start = clock.now
    for at, expected in script:
        clock.now = start + at
        assert await limiter.hit("k", limit=3, window_seconds=1) == expected, at


async def test_keys_are_limited_independently(limiter: RateLimiter) -> None:
    assert (await limiter.hit("a", limit=1, window_seconds=60)).allowed
    assert not (await limiter.hit("a", limit=1, window_seconds=60)).allowed
    assert (await limiter.hit("b", limit=1, window_seconds=60)).allowed


async def test_concurrent_hits_never_exceed_the_limit(limiter: RateLimiter) -> None:
    decisions = await asyncio.gather(
        *(limiter.hit("k", limit=10, window_seconds=60) for _ in range(50))
    )
    assert sum(d.allowed for d in decisions) == 10


async def test_backend_default_clock_refuses_with_a_bounded_retry_after(
    make_limiter: MakeLimiter,
) -> None:
    limiter = make_limiter(None)  # memory: time.monotonic; Redis: the server's TIME
    decisions = [await limiter.hit("k", limit=2, window_seconds=60) for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, False]
    assert 29 < decisions[2].retry_after_seconds <= 30


@pytest.mark.parametrize(("limit", "window"), [(0, 60.0), (10, 0.0), (10, -1.0)])
async def test_meaningless_limits_are_refused(
    limiter: RateLimiter, limit: int, window: float
) -> None:
    with pytest.raises(ValueError, match="must be"):
        await limiter.hit("k", limit=limit, window_seconds=window)


# --- memory only: bounded state -----------------------------------------------------------------


async def test_memory_limiter_forgets_keys_whose_bucket_refilled(clock: FakeClock) -> None:
    limiter = MemoryRateLimiter(clock)
    for n in range(5_000):
        await limiter.hit(f"key-{n}", limit=10, window_seconds=1)
    clock.now += 1
    for n in range(5_000):
        await limiter.hit(f"other-{n}", limit=10, window_seconds=1)
    assert len(limiter._tats) < 10_000  # the first 5,000 keys hold no state any more


# --- redis only: expiry and failure -------------------------------------------------------------


async def test_redis_key_expires_once_its_bucket_is_full_again(clock: FakeClock) -> None:
    url = redis_url()
    prefix = f"leadscore-test:{uuid.uuid4().hex}:rl:"
    limiter = RedisRateLimiter(url, prefix=prefix, clock=clock)
    admin = Redis.from_url(url)
    try:
        await limiter.hit("k", limit=3, window_seconds=6)
        await limiter.hit("k", limit=3, window_seconds=6)
        assert 3_900 < await admin.pttl(prefix + "k") <= 4_000  # two intervals of 2 s
    finally:
        await admin.delete(prefix + "k")
        await admin.aclose()
        await limiter.close()


async def test_unavailable_redis_raises_rate_limit_unavailable_at_once() -> None:
    limiter = RedisRateLimiter(f"redis://127.0.0.1:{dead_port()}/0", timeout_seconds=0.25)
    started = time.perf_counter()
    try:
        with pytest.raises(RateLimitUnavailableError) as caught:
            await limiter.hit("k", limit=10, window_seconds=60)
    finally:
        await limiter.close()
    assert time.perf_counter() - started < 1.0
    assert (caught.value.status_code, caught.value.code) == (503, "rate_limit_unavailable")


async def test_create_rate_limiter_uses_redis_only_when_a_url_is_configured() -> None:
    memory = create_rate_limiter(None)
    redis = create_rate_limiter("redis://127.0.0.1:1/0")  # constructing does not connect
    try:
        assert (memory.name, redis.name) == ("memory", "redis+lease")
    finally:
        await memory.close()
        await redis.close()


# --- cost and leases -------------------------------------------------------------------------


async def test_cost_takes_several_requests_at_once(
    make_limiter: MakeLimiter, clock: FakeClock
) -> None:
    limiter = make_limiter(clock)
    taken = [
        (await limiter.hit("bulk", limit=10, window_seconds=60, cost=cost)).allowed
        for cost in (4, 4, 4, 2, 1)
    ]
    assert taken == [True, True, False, True, False]


@pytest.mark.parametrize("cost", [0, 11])
async def test_cost_outside_one_to_limit_is_refused(make_limiter: MakeLimiter, cost: int) -> None:
    with pytest.raises(ValueError, match="cost"):
        await make_limiter(None).hit("k", limit=10, window_seconds=60, cost=cost)


class CountingLimiter:
    """Counts calls reaching the shared limiter."""

    def __init__(self, inner: RateLimiter) -> None:
        self.inner = inner
        self.name = inner.name
        self.calls = 0

    async def hit(self, key: str, limit: int, window_seconds: float, cost: int = 1) -> RateDecision:
        self.calls += 1
        await asyncio.sleep(0)  # a round trip: other requests run meanwhile
        return await self.inner.hit(key, limit, window_seconds, cost)

    async def close(self) -> None:
        await self.inner.close()


async def test_leases_cut_shared_calls(make_limiter: MakeLimiter, clock: FakeClock) -> None:
    shared = CountingLimiter(make_limiter(clock))
    leasing = LeasingRateLimiter(shared, lease=8, clock=clock)
    decisions = [await leasing.hit("busy", limit=1200, window_seconds=60) for _ in range(30)]
    assert all(d.allowed for d in decisions)
    assert shared.calls == 4  # ceil(30 / 8)


async def test_concurrent_requests_share_one_refill(
    make_limiter: MakeLimiter, clock: FakeClock
) -> None:
    shared = CountingLimiter(make_limiter(clock))
    leasing = LeasingRateLimiter(shared, lease=32, clock=clock)
    decisions = await asyncio.gather(
        *(leasing.hit("burst", limit=100_000, window_seconds=60) for _ in range(20))
    )
    assert all(d.allowed for d in decisions)
    assert shared.calls == 1  # one lease of 32 served all 20; none reserved its own
    refused = LeasingRateLimiter(CountingLimiter(make_limiter(clock)), lease=32, clock=clock)
    small = await asyncio.gather(
        *(refused.hit("tight", limit=3, window_seconds=60) for _ in range(5))
    )
    assert [d.allowed for d in small].count(True) == 3  # waiters fall back to exact hits


async def test_leases_never_exceed_the_limit_across_workers(
    make_limiter: MakeLimiter, clock: FakeClock
) -> None:
    shared = make_limiter(clock)
    workers = [LeasingRateLimiter(shared, lease=8, clock=clock) for _ in range(2)]
    allowed = 0
    for i in range(400):
        allowed += (await workers[i % 2].hit("k", limit=200, window_seconds=60)).allowed
    assert 200 - 2 * 2 <= allowed <= 200  # lease = limit // 100 = 2 per worker


async def test_small_limits_are_exact_through_leases(
    make_limiter: MakeLimiter, clock: FakeClock
) -> None:
    leasing = LeasingRateLimiter(make_limiter(clock), clock=clock)
    taken = [(await leasing.hit("few", limit=3, window_seconds=60)).allowed for _ in range(4)]
    assert taken == [True, True, True, False]


async def test_unused_lease_expires(make_limiter: MakeLimiter, clock: FakeClock) -> None:
    shared = CountingLimiter(make_limiter(clock))
    leasing = LeasingRateLimiter(shared, lease=8, lease_seconds=1.0, clock=clock)
    await leasing.hit("idle", limit=1200, window_seconds=60)
    clock.now += 2.0
    await leasing.hit("idle", limit=1200, window_seconds=60)
    assert shared.calls == 2
