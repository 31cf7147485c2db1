"""Per-key request limits with one contract and two backends: in-process and Redis.

Both backends run GCRA (the generic cell rate algorithm, a token bucket kept as one timestamp):
`limit` per `window_seconds` admits a burst of `limit` requests, then one more every
`window_seconds / limit`. It was chosen over fixed or sliding windows because it keeps a single
integer per key (O(1) time and memory, one Redis key, no sorted-set log), never releases a
second burst at a window boundary, and yields an exact `retry_after_seconds`.

Times are whole microseconds and the emission interval is rounded up to one, so the arithmetic
is integer-exact in Python and in Redis's Lua alike: the same hits at the same times get the
same decisions from either backend. The Redis update is one Lua script, so concurrent workers
cannot both take the last slot.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from leadscore.core.errors import LeadScoreError
from leadscore.core.resp import RedisAddress, RespClient, RespError, Script

_US = 1_000_000


class RateLimitUnavailableError(LeadScoreError):
    """The limiter's backend could not answer; the API decides whether to fail open or closed."""

    status_code = 503
    code = "rate_limit_unavailable"


@dataclass(frozen=True)
class RateDecision:
    """One hit's outcome, with what a client needs for RateLimit and Retry-After headers."""

    allowed: bool
    limit: int
    remaining: int
    retry_after_seconds: float


class RateLimiter(Protocol):
    """What the API needs from a limiter, so memory and Redis are interchangeable."""

    name: str

    async def hit(self, key: str, limit: int, window_seconds: float, cost: int = 1) -> RateDecision:
        """Count `cost` requests against `key` if they fit `limit` per `window_seconds`."""
        ...

    async def close(self) -> None:
        """Release connections; the limiter is unusable afterwards."""
        ...


def _interval_us(limit: int, window_seconds: float) -> int:
    """The emission interval in whole microseconds, rounded up so no backend admits extra."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit!r}")
    window_us = round(window_seconds * _US)
    if window_us < 1:
        raise ValueError(f"window_seconds must be at least 1 µs, got {window_seconds!r}")
    return -(-window_us // limit)


def _check_cost(cost: int, limit: int) -> None:
    if not 1 <= cost <= limit:
        raise ValueError(f"cost must be between 1 and the limit, got {cost!r}")


class MemoryRateLimiter:
    """GCRA in a dict, for a single worker process.

    No lock: `hit` never awaits, so each call is atomic within its event loop (not across
    threads). Keys whose bucket has refilled carry no state and are swept once the dict doubles.
    """

    name = "memory"

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tats: dict[str, int] = {}
        self._sweep_at = 1024

    async def hit(self, key: str, limit: int, window_seconds: float, cost: int = 1) -> RateDecision:
        """Admit or refuse `cost` requests, in the same integer steps as the Redis script."""
        interval = _interval_us(limit, window_seconds)
        _check_cost(cost, limit)
        now = round(self._clock() * _US)
        tat = max(self._tats.get(key, now), now)
        new_tat = tat + interval * cost
        allow_at = new_tat - interval * limit
        if now < allow_at:
            return RateDecision(False, limit, 0, (allow_at - now) / _US)
        self._tats[key] = new_tat
        if len(self._tats) > self._sweep_at:
            self._sweep(now)
        return RateDecision(True, limit, (interval * limit - (new_tat - now)) // interval, 0.0)

    def _sweep(self, now: int) -> None:
        """Drop full buckets; amortised O(1) because the next sweep waits for the dict to double."""
        self._tats = {key: tat for key, tat in self._tats.items() if tat > now}
        self._sweep_at = max(1024, 2 * len(self._tats))

    async def close(self) -> None:
        """Forget every key."""
        self._tats.clear()


# KEYS[1] holds the key's theoretical arrival time (TAT) in µs; ARGV: interval µs, limit, now µs
# or "" for the server's TIME, cost (requests taken at once). Numbers go back to Redis through
# "%d": Lua 5.1's tostring keeps only 14 digits, too few for epoch microseconds.
_GCRA = Script("""
local interval = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local now
if ARGV[3] == "" then
  local t = redis.call("TIME")
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[3])
end
local tat = tonumber(redis.call("GET", KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + interval * tonumber(ARGV[4])
local allow_at = new_tat - interval * limit
if now < allow_at then
  return {0, 0, allow_at - now}
end
local ttl_ms = math.ceil((new_tat - now) / 1000)
redis.call("SET", KEYS[1], string.format("%d", new_tat), "PX", string.format("%d", ttl_ms))
return {1, math.floor((interval * limit - (new_tat - now)) / interval), 0}
""")


class RedisRateLimiter:
    """GCRA in one Lua script, so every worker shares each key's limit.

    With no `clock` the script reads Redis's TIME, one clock for all workers; a given `clock`
    must be shared by every process using the same keys (tests pass a fake one). A key expires
    in Redis once its bucket is full again, so idle keys cost nothing.
    """

    name = "redis"

    def __init__(
        self,
        redis: RedisAddress | str,
        prefix: str = "leadscore:rl:",
        timeout_seconds: float = 0.25,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.prefix = prefix
        self._clock = clock
        self._redis = RespClient(redis, timeout_seconds)

    async def hit(self, key: str, limit: int, window_seconds: float, cost: int = 1) -> RateDecision:
        """Admit or refuse `cost` requests atomically in Redis (EVALSHA, script loaded once)."""
        interval = _interval_us(limit, window_seconds)
        _check_cost(cost, limit)
        now = "" if self._clock is None else str(round(self._clock() * _US))
        try:
            allowed, remaining, retry_us = await self._redis.run_script(
                _GCRA, [self.prefix + key], [interval, limit, now, cost]
            )
        except RespError as exc:
            raise RateLimitUnavailableError(f"redis rate limit failed: {exc}") from exc
        return RateDecision(bool(allowed), limit, int(remaining), int(retry_us) / _US)

    async def close(self) -> None:
        """Close the connection."""
        await self._redis.close()


@dataclass
class _Lease:
    tokens: int
    expires_at: float


class LeasingRateLimiter:
    """Takes a shared limiter's tokens a few at a time and spends them in this process.

    Each worker reserves up to `lease` requests in one round trip and admits them locally, so
    Redis sees one call per `lease` requests instead of one per request. The limit still holds
    across all workers, because a token is reserved before it is spent; the price is that
    tokens left in a lease expire unused after `lease_seconds`, so near the limit a key can be
    refused up to (workers × lease) requests early. Limits under 100 per window lease one token
    at a time, which is exactly the shared limiter.
    """

    def __init__(
        self,
        shared: RateLimiter,
        lease: int = 32,
        lease_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.shared = shared
        self.name = f"{shared.name}+lease"
        self._lease = lease
        self._lease_seconds = lease_seconds
        self._clock = clock
        self._leases: dict[str, _Lease] = {}
        self._refills: dict[str, asyncio.Event] = {}

    def _spend(self, key: str, limit: int, cost: int) -> RateDecision | None:
        held = self._leases.get(key)
        if cost == 1 and held is not None and held.tokens > 0 and held.expires_at > self._clock():
            held.tokens -= 1
            return RateDecision(True, limit, held.tokens, 0.0)
        return None

    async def hit(self, key: str, limit: int, window_seconds: float, cost: int = 1) -> RateDecision:
        """Spend a leased token if one is left, else reserve a new lease from the shared limiter.

        Concurrent requests that find the lease empty wait for one refill instead of each
        reserving its own: a busy key costs one shared call per lease, not one per request.
        """
        spent = self._spend(key, limit, cost)
        if spent is not None:
            return spent
        refill = self._refills.get(key)
        if refill is not None and cost == 1:
            await refill.wait()
            spent = self._spend(key, limit, cost)
            if spent is not None:
                return spent
        done = asyncio.Event()
        self._refills.setdefault(key, done)
        try:
            return await self._reserve(key, limit, window_seconds, cost)
        finally:
            if self._refills.get(key) is done:
                del self._refills[key]
            done.set()

    async def _reserve(
        self, key: str, limit: int, window_seconds: float, cost: int
    ) -> RateDecision:
        now = self._clock()
        size = max(cost, min(self._lease, limit // 100))
        decision = await self.shared.hit(key, limit, window_seconds, size)
        if not decision.allowed and size > cost:
            size = cost
            decision = await self.shared.hit(key, limit, window_seconds, size)
        if decision.allowed:
            if len(self._leases) > 10_000:
                self._leases = {k: v for k, v in self._leases.items() if v.expires_at > now}
            self._leases[key] = _Lease(size - cost, now + self._lease_seconds)
        return decision

    async def close(self) -> None:
        """Close the shared limiter."""
        self._leases.clear()
        await self.shared.close()


def create_rate_limiter(redis: RedisAddress | str | None) -> RateLimiter:
    """Redis (leased) when configured, so workers share limits; otherwise this process's memory."""
    if redis:
        return LeasingRateLimiter(RedisRateLimiter(redis))
    return MemoryRateLimiter()
