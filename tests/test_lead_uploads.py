"""How an upload ends when its scoring cannot go on: a chunk the service refuses, a shutdown
past the drain; a real scoring service and model, its writer and events recorded."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from leadscore.auth.principal import Principal
from leadscore.core.bus import MemoryBus
from leadscore.core.cache import MemoryCache
from leadscore.core.errors import DATABASE_DOWN, DatabaseUnavailableError
from leadscore.core.metrics import Metrics
from leadscore.engine.model import LeadModel
from leadscore.engine.scorer import Scorer
from leadscore.live.events import Event, EventPublisher
from leadscore.models.holder import LiveModel, ModelHolder
from leadscore.models.shadow import ShadowScorer
from leadscore.scoring.service import ScoringService
from leadscore.scoring.upload import LeadUploads

WHO = Principal(1, 1, "acme", "agent")


class _Events(EventPublisher):
    """Every event the upload emits, as every client would see it."""

    def __init__(self) -> None:
        super().__init__(MemoryBus())
        self.wants = lambda _team, event_type: event_type == "batch_processing"
        self.seen: list[dict[str, Any]] = []

    def emit(self, event: Event) -> None:
        self.seen.append(orjson.loads(event.body)["data"])


class _Writer:
    """Stores the first `accepts` submissions, then refuses like a writer whose database is
    down in durable mode; `slow` makes every submission take that long."""

    def __init__(self, accepts: int, slow: float = 0.0) -> None:
        self.accepts = accepts
        self.slow = slow
        self.stored: list[str] = []

    async def submit(self, records: list[Any], *, wait: bool = False) -> None:
        await asyncio.sleep(self.slow)
        if self.accepts == 0:
            raise DatabaseUnavailableError(DATABASE_DOWN)
        self.accepts -= 1
        self.stored += [r.lead_id for r in records]

    def unwritten(self, key: object) -> None:
        return None


def _uploads(model: LeadModel, writer: _Writer, events: _Events, **options: Any) -> LeadUploads:
    live = LiveModel(model, Scorer(model), Path("."))
    scoring = ScoringService(
        ModelHolder(live), MemoryCache(), writer,  # type: ignore[arg-type]
        Metrics.create(), events, ShadowScorer(writer.submit),  # type: ignore[arg-type]
    )  # fmt: skip
    return LeadUploads(scoring, events, Path("."), max_rows=1000, chunk=10, **options)


def _rows(n: int) -> list[dict[str, str | None]]:
    return [{"lead_id": f"u{i}", "source": "Zillow", "pre_approved": "true"} for i in range(n)]


async def test_a_chunk_the_service_refuses_ends_the_upload_failed_with_counts(
    model: LeadModel,
) -> None:
    writer, events = _Writer(accepts=2), _Events()
    uploads = _uploads(model, writer, events)
    uploads._launch(WHO, "b1", _rows(35))
    task = uploads.task("b1")
    assert task is not None
    with pytest.raises(DatabaseUnavailableError):
        await task
    assert writer.stored == [f"u{i}" for i in range(20)]
    assert [e["status"] for e in events.seen] == ["started", "in_progress", "in_progress", "failed"]
    last = events.seen[-1]
    assert (last["succeeded"], last["failed"], last["not_scored"]) == (20, 0, 15)
    assert last["completed"] == 20
    assert "DatabaseUnavailableError" in last["error"]
    assert uploads.task("b1") is None


async def test_a_shutdown_waits_for_uploads_then_reports_the_rest_interrupted(
    model: LeadModel,
) -> None:
    writer, events = _Writer(accepts=1000, slow=0.2), _Events()
    uploads = _uploads(model, writer, events, drain_seconds=0.3)
    uploads._launch(WHO, "b2", _rows(100))
    await asyncio.sleep(0)
    await uploads.close()
    last = events.seen[-1]
    assert last["status"] == "failed"
    assert last["error"] == "interrupted: server shutdown"
    assert 0 < last["succeeded"] < 100
    assert last["succeeded"] + last["not_scored"] == 100
    assert last["succeeded"] == len(writer.stored)
