"""Small rules of the scoring service that deserve their own checks."""

from __future__ import annotations

import asyncio

import pytest

from leadscore.auth.repository import key_prefix
from leadscore.core.writer import ScoreWriter, WriterOverloadedError
from leadscore.scoring.repository import ScoreRecord
from leadscore.scoring.service import cache_ttl


@pytest.mark.parametrize(
    ("confidence", "ttl"),
    [(0.99, 900.0), (0.95, 900.0), (0.949, 600.0), (0.85, 600.0), (0.849, 300.0), (0.1, 300.0)],
)
def test_cache_ttl_grows_with_confidence(confidence: float, ttl: float) -> None:
    assert cache_ttl(confidence) == ttl


@pytest.mark.parametrize(
    ("secret", "prefix"),
    [
        ("lsk_0123456789ab_secretpart", "0123456789ab"),
        ("lsk_short_secret", None),
        ("Bearer xyz", None),
        ("lsk_0123456789ab", None),
    ],
)
def test_only_well_formed_keys_are_looked_up(secret: str, prefix: str | None) -> None:
    assert key_prefix(secret) == prefix


def _record(i: int) -> ScoreRecord:
    from datetime import UTC, datetime

    return ScoreRecord(1, f"l{i}", {}, "v", 1.0, "cold", False, False, datetime.now(UTC), {})


async def test_writer_batches_and_drains_on_close() -> None:
    written: list[list[str]] = []

    async def persist(records: list[ScoreRecord]) -> None:  # type: ignore[misc]
        written.append([r.lead_id for r in records])

    writer = ScoreWriter(persist, batch_max=3, interval_ms=1, durable=False)  # type: ignore[arg-type]
    writer.start()
    await writer.submit([_record(i) for i in range(7)])
    await writer.close()
    assert [lead for batch in written for lead in batch] == [f"l{i}" for i in range(7)]
    assert max(len(batch) for batch in written) <= 3
    with pytest.raises(WriterOverloadedError):
        await writer.submit([_record(99)])


async def test_writer_retries_until_the_database_answers() -> None:
    attempts = 0

    async def flaky(records: list[ScoreRecord]) -> None:  # type: ignore[misc]
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise ConnectionError("database restarting")

    writer = ScoreWriter(flaky, batch_max=10, interval_ms=0, durable=True)  # type: ignore[arg-type]
    writer.start()
    await asyncio.wait_for(writer.submit([_record(1)]), timeout=5)
    await writer.close()
    assert attempts == 3
    assert writer.written == 1
    assert writer.failures == 2


class _NoWriter:
    async def submit(self, records: object, *, wait: bool = False) -> None:
        return None

    def unwritten(self, key: object) -> None:
        return None


async def test_a_cached_score_is_reused_only_while_fresh(model: object) -> None:
    """The lead's entry answers repeats until its confidence-based freshness runs out."""
    from pathlib import Path

    import orjson

    from leadscore.auth.principal import Principal
    from leadscore.core.bus import MemoryBus
    from leadscore.core.cache import MemoryCache
    from leadscore.core.metrics import Metrics
    from leadscore.engine.schema import Lead
    from leadscore.engine.scorer import Scorer
    from leadscore.live.events import EventPublisher
    from leadscore.models.holder import LiveModel, ModelHolder
    from leadscore.models.shadow import ShadowScorer
    from leadscore.scoring.schemas import EXAMPLE_LEAD, ScoreRequest
    from leadscore.scoring.service import ScoringService, _lead_key, _pack, _unpack

    cache = MemoryCache()
    live = LiveModel(model, Scorer(model), Path("."))  # type: ignore[arg-type]
    service = ScoringService(
        ModelHolder(live),
        cache,
        _NoWriter(),  # type: ignore[arg-type]
        Metrics.create(),
        EventPublisher(MemoryBus()),
        ShadowScorer(_NoWriter().submit),
    )
    request = ScoreRequest.model_validate(EXAMPLE_LEAD)
    lead = Lead.model_construct(lead_id=request.lead_id, lead_data=request.lead_data)
    who = Principal(1, 1, "acme", "agent")
    first = orjson.loads(await service.score(who, lead, request.options))
    second = orjson.loads(await service.score(who, lead, request.options))
    assert (first["cache_hit"], second["cache_hit"]) == (False, True)
    key = _lead_key(1, lead.lead_id)
    stored = await cache.get(key)
    assert stored is not None
    signature, fresh_until, body = _unpack(stored)
    assert fresh_until > 0
    await cache.set(key, _pack(signature, 0, body), 60)  # freshness over
    third = orjson.loads(await service.score(who, lead, request.options))
    assert third["cache_hit"] is False
    other_team = orjson.loads(
        await service.score(Principal(2, 2, "globex", "agent"), lead, request.options)
    )
    assert other_team["cache_hit"] is False
