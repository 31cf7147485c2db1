"""The event bus: one contract, an in-process backend for one worker, Redis pub/sub for many."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Final, Protocol, cast

from leadscore.core.errors import LeadScoreError
from leadscore.core.logs import DependencyLog
from leadscore.core.resp import RedisAddress, RespClient, RespError, RespSubscriber

log = logging.getLogger(__name__)
#: A member this long expired is gone for good (a dead worker), and is deleted from the hash.
FORGET_AFTER_SECONDS: Final = 60.0

Deliver = Callable[[bytes], None]


class BusUnavailableError(LeadScoreError):
    """The bus could not take a message; live events are lost, scores are not."""

    status_code = 503
    code = "bus_unavailable"


class EventBus(Protocol):
    """Carries opaque messages from any worker to every worker's subscribers, in order."""

    name: str

    async def publish(self, message: bytes) -> None:
        """Send `message` to every subscriber of every worker."""
        ...

    async def subscribe(self, deliver: Deliver) -> None:
        """Call `deliver(message)` for every message published from now on."""
        ...

    async def share(self, member: str, value: bytes, ttl_seconds: float) -> None:
        """Publish this worker's state under `member`; others read it until it expires."""
        ...

    async def shared(self) -> dict[str, bytes]:
        """Every member's unexpired state, this worker's included."""
        ...

    async def close(self) -> None:
        """Stop delivering and release connections."""
        ...


class MemoryBus:
    """Delivers in the publishing process: the embedded default, one worker."""

    name = "memory"

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._subscribers: list[Deliver] = []
        self._state: dict[str, tuple[float, bytes]] = {}
        self._clock = clock

    async def publish(self, message: bytes) -> None:
        """Hand the message to each subscriber now; there is no other worker to reach."""
        for deliver in tuple(self._subscribers):
            deliver(message)

    async def subscribe(self, deliver: Deliver) -> None:
        """Add a subscriber."""
        self._subscribers.append(deliver)

    async def share(self, member: str, value: bytes, ttl_seconds: float) -> None:
        """Keep the member's state until its TTL passes."""
        self._state[member] = (self._clock() + ttl_seconds, value)

    async def shared(self) -> dict[str, bytes]:
        """Unexpired states."""
        now = self._clock()
        return {k: v for k, (until, v) in self._state.items() if until > now}

    async def close(self) -> None:
        """Forget every subscriber."""
        self._subscribers.clear()
        self._state.clear()


class RedisBus:
    """Redis pub/sub on one channel per deployment prefix; each worker holds one subscription.

    Pub/sub is fire-and-forget: a worker whose subscription is reconnecting misses what is
    published meanwhile. Live events are notifications; every score is in the database anyway.
    """

    name = "redis"

    def __init__(
        self, redis: RedisAddress | str, prefix: str = "leadscore:", timeout_seconds: float = 0.25
    ) -> None:
        self.channel = f"{prefix}events"
        self._state_key = f"{prefix}events:members"
        self._redis = RespClient(redis, timeout_seconds)
        # Its own connection: a subscribed connection carries nothing else. It waits for
        # messages without a timeout and PINGs when quiet instead.
        self._listener = RespSubscriber(self._redis.address, self.channel, timeout_seconds)
        self._reader: asyncio.Task[None] | None = None
        self._subscribers: list[Deliver] = []
        # Retried every half second: one line per outage (and counts), not two a second.
        self._subscription = DependencyLog(log, "redis (event bus subscription)")

    async def publish(self, message: bytes) -> None:
        """PUBLISH on the channel; every worker subscribed (this one included) receives it."""
        try:
            await self._redis.execute("PUBLISH", self.channel, message)
        except RespError as exc:
            raise BusUnavailableError(f"redis PUBLISH failed: {exc}") from exc

    async def subscribe(self, deliver: Deliver) -> None:
        """Subscribe once per worker, confirmed before returning when Redis answers; when it
        does not, the worker starts anyway and the reader keeps trying."""
        self._subscribers.append(deliver)
        if self._reader is not None:
            return
        try:
            await self._listener.connect()
        except RespError as exc:
            log.warning("event bus subscription failed (%s); retrying in the background", exc)
        self._reader = asyncio.create_task(self._read(), name="bus-reader")

    async def _read(self) -> None:
        """Deliver messages as they arrive; a lost connection is re-subscribed on the next read."""
        while True:
            try:
                data = await self._listener.receive(wait=1.0)
            except RespError as exc:
                self._subscription.down(f"subscription lost ({exc}); reconnecting every 0.5 s")
                await asyncio.sleep(0.5)
                continue
            self._subscription.up()
            if data is None:
                continue
            for deliver in tuple(self._subscribers):
                try:
                    deliver(data)
                except Exception:  # one broken subscriber must not stop the others
                    log.exception("event subscriber failed")

    async def share(self, member: str, value: bytes, ttl_seconds: float) -> None:
        """HSET member → expiry|value in one hash; readers skip expired members."""
        expires = f"{time.time() + ttl_seconds:.3f}".encode()
        try:
            await self._redis.execute("HSET", self._state_key, member, expires + b"|" + value)
        except RespError as exc:
            raise BusUnavailableError(f"redis HSET failed: {exc}") from exc

    async def shared(self) -> dict[str, bytes]:
        """Every unexpired member's state; long-expired ones are removed on the way."""
        try:
            flat = cast("list[bytes]", await self._redis.execute("HGETALL", self._state_key))
        except RespError as exc:
            raise BusUnavailableError(f"redis HGETALL failed: {exc}") from exc
        raw = dict(zip(flat[::2], flat[1::2], strict=True))  # RESP2: field, value, field, ...
        now = time.time()
        live: dict[str, bytes] = {}
        expired = []
        for member, entry in raw.items():
            until, _, value = entry.partition(b"|")
            if float(until) > now:
                live[member.decode()] = value
            elif float(until) < now - FORGET_AFTER_SECONDS:
                # Only long-gone members: a worker that was merely late may re-share between
                # this read and the delete, and its fresh state must not be deleted.
                expired.append(member)
        if expired:
            with contextlib.suppress(RespError):
                await self._redis.execute("HDEL", self._state_key, *expired)
        return live

    async def close(self) -> None:
        """Stop the reader and close both connections."""
        self._subscribers.clear()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self._listener.close()
        await self._redis.close()


def create_bus(redis: RedisAddress | str | None) -> EventBus:
    """Redis when configured, so every worker's clients see every event; else in-process."""
    if redis:
        return RedisBus(redis)
    return MemoryBus()
