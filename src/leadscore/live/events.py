"""Live events: what they say, how they travel between workers, and who publishes them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

import orjson

from leadscore.core.bus import BusUnavailableError, EventBus
from leadscore.core.lifecycle import Background
from leadscore.core.logs import DependencyLog
from leadscore.core.timestamps import iso_z

log = logging.getLogger(__name__)


class EventType(StrEnum):
    """Every `event_type` the server sends."""

    LEAD_SCORED = "lead_scored"
    BATCH_PROCESSING = "batch_processing"
    MODEL_STATUS = "model_status"
    ESCALATION = "escalation"
    CONNECTION_ESTABLISHED = "connection_established"
    SUBSCRIPTION_UPDATED = "subscription_updated"
    STATUS = "status"
    PING = "ping"
    PONG = "pong"
    ERROR = "error"


SUBSCRIBABLE: Final = frozenset(
    {EventType.LEAD_SCORED, EventType.BATCH_PROCESSING, EventType.MODEL_STATUS,
     EventType.ESCALATION}
)  # fmt: skip
TOP_REASONS: Final = 3
#: Internal bus event: which teams and event types one worker's clients listen to.
AUDIENCE: Final = "_audience"


@dataclass(frozen=True, slots=True)
class Event:
    """One event as every worker's hub receives it: routing facts plus the bytes clients get.

    `body` is serialised once, where the event happens; `redacted` is the viewer's copy without
    lead personal data (None when the event carries none).
    """

    event_type: str
    team_id: int | None  # None: every team (model events)
    score: float | None
    classification: str | None
    published_at: float  # wall clock, seconds: fan-out latency is measured from here
    body: bytes
    redacted: bytes | None = None


def envelope(
    event_type: str,
    data: dict[str, Any],
    *,
    event_id: str | None = None,
    timestamp: str | None = None,
) -> bytes:
    """The message clients receive: `{"event_type", "event_id", "timestamp", "data"}`."""
    return orjson.dumps(
        {
            "event_type": event_type,
            "event_id": event_id or uuid.uuid4().hex,
            "timestamp": timestamp or iso_z(datetime.now(UTC)),
            "data": data,
        }
    )


def encode(events: Sequence[Event]) -> bytes:
    """Events → one bus message: per event a header line, the body line, the redacted line.

    orjson never writes a raw newline, so lines frame the parts without any escaping.
    """
    parts: list[bytes] = []
    for e in events:
        header = [e.event_type, e.team_id, e.score, e.classification, e.published_at]
        parts += [orjson.dumps(header), e.body, e.redacted or b""]
    return b"\n".join(parts)


def decode(message: bytes) -> list[Event]:
    """The inverse of `encode`."""
    lines = message.split(b"\n")
    events = []
    for i in range(0, len(lines) - 2, 3):
        event_type, team_id, score, classification, published_at = orjson.loads(lines[i])
        events.append(
            Event(
                event_type, team_id, score, classification, published_at, lines[i + 1],
                lines[i + 2] or None,
            )
        )  # fmt: skip
    return events


def lead_scored(
    team_id: int,
    name: str | None,
    body: dict[str, Any],
    change: dict[str, Any] | None = None,
    source: str | None = None,
    top_question: dict[str, Any] | None = None,
) -> Event:
    """A lead was scored: the dashboard's row, with the reasons, the money, the first question
    to ask, and why its score moved since its previous one (`change`, null for a first score)."""
    commission = body.get("commission") or {}
    data = {
        "lead_id": body["lead_id"],
        "name": name,
        "source": source,
        "ml_score": body["ml_score"],
        "classification": body["classification"],
        "confidence": body["ml_confidence"],
        "reasons": [
            {"feature": r["feature"], "points": r["points"], "text": r["text"]}
            for r in (body.get("reasons") or [])[:TOP_REASONS]
        ],
        "expected_commission": commission.get("expected_commission"),
        "estimated_commission": commission.get("estimated_commission"),
        "escalation_recommended": body["escalation_recommended"],
        "cache_hit": body["cache_hit"],
        "model_version": body["model_version"],
        "processing_time_ms": body["processing_time_ms"],
        "evidence": body.get("evidence"),
        "qualification_needed": body["escalation_recommended"],
        "top_question": top_question,
        "change": change,
    }
    return _about_lead(EventType.LEAD_SCORED, team_id, name, body, data)


def escalation(
    team_id: int,
    name: str | None,
    body: dict[str, Any],
    threshold: float | None,
    *,
    status: str = "recommended",
    escalation_id: int | None = None,
    reasons: Sequence[str] = (),
    by: str | None = None,
) -> Event:
    """A lead the model is unsure about: `recommended` by a score (no `escalation_id`), or a
    change of its queue entry (`open`, `claimed`, `resolved`, with the entry's id and who)."""
    confidence = body["ml_confidence"]
    if status == "recommended" and threshold is not None:
        reason = f"confidence {confidence:.2f} is below the review threshold {threshold:.2f}"
    elif status == "open":
        reason = "entered the qualification queue: " + (", ".join(reasons) or "unsure")
    else:
        reason = f"{status} by {by}" if by else status
    data = {
        "lead_id": body["lead_id"],
        "name": name,
        "ml_score": body["ml_score"],
        "classification": body["classification"],
        "confidence": confidence,
        "threshold": threshold,
        "reason": reason,
        "model_version": body["model_version"],
        "escalation_id": escalation_id,
        "status": status,
        "reasons": list(reasons),
        "by": by,
    }
    return _about_lead(EventType.ESCALATION, team_id, name, body, data)


def _about_lead(
    event_type: str, team_id: int, name: str | None, body: dict[str, Any], data: dict[str, Any]
) -> Event:
    """One event about a lead in two copies with the same id and time; viewers' has no name."""
    event_id = uuid.uuid4().hex
    timestamp = iso_z(datetime.now(UTC))
    full = envelope(event_type, data, event_id=event_id, timestamp=timestamp)
    redacted = (
        envelope(event_type, data | {"name": None}, event_id=event_id, timestamp=timestamp)
        if name
        else None
    )
    return Event(
        event_type, team_id, body["ml_score"], body["classification"], time.time(), full, redacted
    )


def batch_processing(
    team_id: int,
    batch_id: str,
    completed: int,
    total: int,
    status: str,
    outcome: Mapping[str, Any] | None = None,
) -> Event:
    """Progress of a batch: `started`, `in_progress` after each chunk, `completed` (or
    `failed`); `outcome` adds how the batch ended (counts, errors) to its last event."""
    data = {
        "batch_id": batch_id,
        "status": status,
        "completed": completed,
        "total": total,
        "progress_percent": round(completed * 100.0 / total, 1) if total else 100.0,
        **(outcome or {}),
    }
    body = envelope(EventType.BATCH_PROCESSING, data)
    return Event(EventType.BATCH_PROCESSING, team_id, None, None, time.time(), body)


def model_status(
    status: str, version: str, detail: dict[str, Any] | None = None, team_id: int | None = None
) -> Event:
    """A model changed: `loaded`, `promoted`, `rolled_back`, `trial`, `drift_alert`, training
    progress.

    Events about one team's model (`team_id`) reach that team only; global ones every team.
    """
    data = {"status": status, "model_version": version, "detail": detail or {}}
    body = envelope(EventType.MODEL_STATUS, data)
    return Event(EventType.MODEL_STATUS, team_id, None, None, time.time(), body)


Listening = dict[int, frozenset[str]]  # team id → event types some client wants


def audience_event(worker: str, listening: Listening, ttl_seconds: float) -> Event:
    """A worker announces what its clients listen to; it holds for `ttl_seconds`."""
    body = orjson.dumps(
        {
            "worker": worker,
            "ttl": ttl_seconds,
            "listening": {str(team): sorted(types) for team, types in listening.items()},
        }
    )
    return Event(AUDIENCE, None, None, None, time.time(), body)


def parse_audience(event: Event) -> tuple[str, Listening, float]:
    """The inverse of `audience_event`: worker, what it listens to, for how long."""
    raw = orjson.loads(event.body)
    listening = {int(team): frozenset(types) for team, types in raw["listening"].items()}
    return raw["worker"], listening, float(raw["ttl"])


class Audience:
    """Which teams and event types some client of some worker listens to.

    Scoring asks `wants` before building an event, so a worker whose events nobody watches
    spends nothing on them. This worker's own clients are known exactly; other workers
    announce theirs on the bus when they change and every second, each announcement valid for
    a few seconds.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._certain_from = clock()
        self._local: Listening = {}
        self._remote: dict[str, tuple[float, Listening]] = {}
        self._merged: dict[int, frozenset[str]] = {}
        self._valid_until = float("inf")

    def wants(self, team_id: int | None, event_type: str) -> bool:
        """Whether any client anywhere may want this event (events for all teams: always)."""
        now = self._clock()
        if team_id is None or now < self._certain_from:
            return True
        if now >= self._valid_until:
            self._merge()
        types = self._merged.get(team_id)
        return types is not None and event_type in types

    @property
    def certain(self) -> bool:
        """Whether every other worker has had time to announce its listeners."""
        return self._clock() >= self._certain_from

    def expect_others(self, seconds: float) -> None:
        """Other workers have not all been heard yet: answer yes to everything for a while."""
        self._certain_from = self._clock() + seconds

    def set_local(self, listening: Listening) -> None:
        """What this worker's clients listen to now."""
        self._local = listening
        self._merge()

    def heard(self, worker: str, listening: Listening, ttl_seconds: float) -> None:
        """Another worker's announcement."""
        if listening:
            self._remote[worker] = (self._clock() + ttl_seconds, listening)
        else:
            self._remote.pop(worker, None)
        self._merge()

    def _merge(self) -> None:
        now = self._clock()
        self._remote = {w: v for w, v in self._remote.items() if v[0] > now}
        merged: dict[int, set[str]] = {team: set(types) for team, types in self._local.items()}
        for _, listening in self._remote.values():
            for team, types in listening.items():
                merged.setdefault(team, set()).update(types)
        self._merged = {team: frozenset(types) for team, types in merged.items()}
        self._valid_until = min((v[0] for v in self._remote.values()), default=float("inf"))


class EventPublisher(Background):
    """Collects events from request handlers and publishes them in one bus message per flush.

    `emit` never waits: the request path appends and goes on. A background task publishes
    everything emitted since its last round trip in one message, in emission order, so a busy
    worker sends one bus message per few scores instead of one per score. Callers ask `wants`
    first: an event no client listens to is never built.
    """

    def __init__(
        self,
        bus: EventBus,
        max_events_per_message: int = 256,
        audience: Audience | None = None,
    ) -> None:
        self.bus = bus
        self.audience = audience or Audience()
        self.wants = self.audience.wants
        self.max_events = max_events_per_message
        self.published = 0
        self.lost = 0
        self._bus_state = DependencyLog(log, "redis (live events)")
        self._pending: list[Event] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        """Start the flushing task (inside the running loop)."""
        self._task = asyncio.create_task(self._run(), name="event-publisher")

    def emit(self, event: Event) -> None:
        """Queue an event for every worker's hub."""
        self._pending.append(event)
        self._wake.set()

    async def flush(self) -> None:
        """Publish everything queued now (the flushing task does this continuously)."""
        while self._pending:
            chunk = self._pending[: self.max_events]
            del self._pending[: self.max_events]
            try:
                await self.bus.publish(encode(chunk))
            except BusUnavailableError as exc:
                # Live events are notifications; the scores they announce are already stored.
                self.lost += len(chunk)
                self._bus_state.down(f"live events lost: {exc}", refused=len(chunk))
                continue
            self._bus_state.up()
            self.published += len(chunk)

    async def _run(self) -> None:
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def close(self) -> None:
        """Publish what is queued, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
