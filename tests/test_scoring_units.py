"""Small rules of the scoring service that deserve their own checks."""

from __future__ import annotations

import asyncio

import pytest

from leadscore.services.scoring import cache_ttl
from leadscore.services.writer import ScoreWriter, WriterOverloadedError
from leadscore.store.repositories import ScoreRecord, key_prefix


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
