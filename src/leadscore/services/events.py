"""Live events: what they say, how they travel between workers, and who publishes them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

import orjson

from leadscore.bus import BusUnavailableError, EventBus

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
            "timestamp": timestamp or datetime.now(UTC).isoformat().replace("+00:00", "Z"),
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


def lead_scored(team_id: int, name: str | None, body: dict[str, Any]) -> Event:
    """A lead was scored: the dashboard's row, with the reasons and the money."""
    commission = body.get("commission") or {}
    data = {
        "lead_id": body["lead_id"],
        "name": name,
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
    }
    return _about_lead(EventType.LEAD_SCORED, team_id, name, body, data)


def escalation(team_id: int, name: str | None, body: dict[str, Any], threshold: float) -> Event:
    """A lead the model is unsure about: a human or an LLM should qualify it."""
    confidence = body["ml_confidence"]
    data = {
        "lead_id": body["lead_id"],
        "name": name,
        "ml_score": body["ml_score"],
        "classification": body["classification"],
        "confidence": confidence,
        "threshold": threshold,
        "reason": f"confidence {confidence:.2f} is below the review threshold {threshold:.2f}",
        "model_version": body["model_version"],
    }
    return _about_lead(EventType.ESCALATION, team_id, name, body, data)


def _about_lead(
    event_type: str, team_id: int, name: str | None, body: dict[str, Any], data: dict[str, Any]
) -> Event:
    """One event about a lead in two copies with the same id and time; viewers' has no name."""
    event_id = uuid.uuid4().hex
    timestamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    full = envelope(event_type, data, event_id=event_id, timestamp=timestamp)
    redacted = (
        envelope(event_type, data | {"name": None}, event_id=event_id, timestamp=timestamp)
        if name
        else None
    )
    return Event(
        event_type, team_id, body["ml_score"], body["classification"], time.time(), full, redacted
    )


def batch_processing(team_id: int, batch_id: str, completed: int, total: int, status: str) -> Event:
    """Progress of a batch: `started`, `in_progress` after each chunk, `completed`."""
    data = {
        "batch_id": batch_id,
        "status": status,
        "completed": completed,
        "total": total,
        "progress_percent": round(completed * 100.0 / total, 1) if total else 100.0,
    }
    body = envelope(EventType.BATCH_PROCESSING, data)
    return Event(EventType.BATCH_PROCESSING, team_id, None, None, time.time(), body)


def model_status(status: str, version: str, detail: dict[str, Any] | None = None) -> Event:
    """The live model changed: `loaded`, `promoted`, `rolled_back` or `drift_alert`."""
    data = {"status": status, "model_version": version, "detail": detail or {}}
    body = envelope(EventType.MODEL_STATUS, data)
    return Event(EventType.MODEL_STATUS, None, None, None, time.time(), body)


class EventPublisher:
    """Collects events from request handlers and publishes them in one bus message per flush.

    `emit` never waits: the request path appends and goes on. A background task publishes
    everything emitted since its last round trip in one message, in emission order, so a busy
    worker sends one bus message per few scores instead of one per score.
    """

    def __init__(self, bus: EventBus, max_events_per_message: int = 256) -> None:
        self.bus = bus
        self.max_events = max_events_per_message
        self.published = 0
        self.lost = 0
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
                log.warning("%d live events lost: %s", len(chunk), exc)
                continue
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
