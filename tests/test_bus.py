"""The event bus contract, run against memory and Redis alike, and the event encoding."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import orjson
import pytest

from leadscore.core.bus import BusUnavailableError, EventBus, MemoryBus, RedisBus
from leadscore.live import events
from leadscore.live.events import EventPublisher, decode, encode
from tests.services import dead_port, delete_prefixed, redis_url

Workers = Callable[[], EventBus]


@pytest.fixture(params=["memory", "redis"])
async def workers(request: pytest.FixtureRequest) -> AsyncIterator[Workers]:
    """Each call gives one worker's view of the same bus."""
    made: list[EventBus] = []
    if request.param == "memory":
        bus = MemoryBus()
        made.append(bus)
        yield lambda: bus
    else:
        url = redis_url()
        prefix = f"leadscore-test:{uuid.uuid4().hex}:"

        def worker() -> EventBus:
            made.append(RedisBus(url, prefix=prefix))
            return made[-1]

        yield worker
        await delete_prefixed(url, prefix)
    for bus in made:
        await bus.close()


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def test_every_worker_receives_every_message_in_order_byte_exact(workers: Workers) -> None:
    first, second = workers(), workers()
    got_first: list[bytes] = []
    got_second: list[bytes] = []
    await first.subscribe(got_first.append)
    await second.subscribe(got_second.append)
    messages = [b"one", b"two\nlines", bytes(range(256)), b"x" * 100_000]
    for message in messages[:2]:
        await first.publish(message)
    for message in messages[2:]:
        await second.publish(message)
    await until(lambda: len(got_first) == len(got_second) == len(messages))
    assert got_first == messages
    assert got_second == messages


async def test_closed_bus_delivers_nothing(workers: Workers) -> None:
    publisher, listener = workers(), workers()
    got: list[bytes] = []
    await listener.subscribe(got.append)
    await publisher.publish(b"before")
    await until(lambda: got == [b"before"])
    await listener.close()
    await publisher.publish(b"after")
    await asyncio.sleep(0.1)
    assert got == [b"before"]


async def test_shared_state_is_seen_by_every_worker_until_it_expires(workers: Workers) -> None:
    first, second = workers(), workers()
    await first.share("a", b"state of a", ttl_seconds=0.3)
    await second.share("b", b"state of b", ttl_seconds=30)
    assert await first.shared() == {"a": b"state of a", "b": b"state of b"}
    await asyncio.sleep(0.4)
    assert await second.shared() == {"b": b"state of b"}


async def test_other_deployments_on_the_same_redis_do_not_hear() -> None:
    ours = RedisBus(redis_url(), prefix=f"leadscore-test:{uuid.uuid4().hex}:")
    other = RedisBus(redis_url(), prefix=f"leadscore-test:{uuid.uuid4().hex}:")
    got: list[bytes] = []
    mine: list[bytes] = []
    try:
        await other.subscribe(got.append)
        await ours.subscribe(mine.append)
        await ours.publish(b"ours only")
        await until(lambda: mine == [b"ours only"])
        assert got == []
    finally:
        await other.close()
        await ours.close()


async def test_redis_outage_fails_publishing_clearly_but_not_starting() -> None:
    bus = RedisBus(f"redis://127.0.0.1:{dead_port()}/0", timeout_seconds=0.2)
    try:
        await bus.subscribe(lambda _m: None)  # a worker still starts; the reader retries
        with pytest.raises(BusUnavailableError, match="PUBLISH"):
            await bus.publish(b"lost")
    finally:
        await bus.close()


# --- events ----------------------------------------------------------------------------------

BODY = {
    "lead_id": "l1", "ml_score": 91.5, "classification": "hot", "ml_confidence": 0.93,
    "reasons": [{"feature": f"f{i}", "points": 10.0 - i, "text": f"t{i}"} for i in range(5)],
    "commission": {"expected_commission": 1200.0, "estimated_commission": 30000.0},
    "escalation_recommended": False, "cache_hit": False, "model_version": "v1",
    "processing_time_ms": 0.3,
}  # fmt: skip


def test_events_survive_the_wire_and_viewers_get_no_name() -> None:
    scored = events.lead_scored(7, "Sarah Chen", BODY)
    progress = events.batch_processing(7, "b1", 25, 100, "in_progress")
    model = events.model_status("promoted", "v2")
    decoded = decode(encode([scored, progress, model]))
    assert decoded == [scored, progress, model]
    full = orjson.loads(scored.body)
    assert set(full) == {"event_type", "event_id", "timestamp", "data"}
    assert full["data"]["name"] == "Sarah Chen"
    assert len(full["data"]["reasons"]) == 3
    assert scored.redacted is not None
    viewer_copy = orjson.loads(scored.redacted)
    assert viewer_copy["data"]["name"] is None
    assert (viewer_copy["event_id"], viewer_copy["timestamp"]) == (
        full["event_id"],
        full["timestamp"],
    )  # one event, two copies
    assert orjson.loads(progress.body)["data"]["progress_percent"] == 25.0
    assert (model.team_id, model.redacted) == (None, None)


class RecordingBus(MemoryBus):
    """Counts publish calls."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[bytes] = []

    async def publish(self, message: bytes) -> None:
        self.messages.append(message)
        await asyncio.sleep(0)  # a round trip: more events arrive meanwhile


async def test_publisher_sends_what_accumulates_in_one_message_in_order() -> None:
    bus = RecordingBus()
    publisher = EventPublisher(bus)
    publisher.start()
    sent = [events.batch_processing(1, "b", i, 10, "in_progress") for i in range(10)]
    for event in sent:
        publisher.emit(event)
    await publisher.close()
    assert len(bus.messages) == 1
    assert [e for m in bus.messages for e in decode(m)] == sent
    assert publisher.published == 10


# --- who listens -------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_audience_knows_local_and_announced_listeners_until_they_expire() -> None:
    clock = Clock()
    audience = events.Audience(clock)
    assert not audience.wants(1, "lead_scored")
    assert audience.wants(None, "model_status")  # events for every team are always built
    audience.set_local({1: frozenset({"lead_scored"})})
    assert audience.wants(1, "lead_scored")
    assert not audience.wants(1, "escalation")
    assert not audience.wants(2, "lead_scored")
    audience.heard("other", {2: frozenset({"escalation"})}, 5.0)
    assert audience.wants(2, "escalation")
    clock.now += 4.9
    assert audience.wants(2, "escalation")
    clock.now += 0.2  # the other worker stopped announcing: it has gone
    assert not audience.wants(2, "escalation")
    assert audience.wants(1, "lead_scored")
    audience.heard("other", {2: frozenset({"escalation"})}, 5.0)
    audience.heard("other", {}, 5.0)  # its last client left
    assert not audience.wants(2, "escalation")


def test_a_new_worker_builds_everything_until_it_has_heard_the_others() -> None:
    clock = Clock()
    audience = events.Audience(clock)
    audience.expect_others(2.0)
    assert audience.wants(7, "lead_scored")
    clock.now += 2.0
    assert not audience.wants(7, "lead_scored")


def test_announcements_survive_the_bus_encoding() -> None:
    listening = {3: frozenset({"lead_scored", "escalation"}), 4: frozenset({"batch_processing"})}
    [event] = decode(encode([events.audience_event("w1", listening, 5.0)]))
    assert events.parse_audience(event) == ("w1", listening, 5.0)
