"""The LLM qualifier's take: concurrent workers on one database never take the same escalation,
and each entry, once taken, waits for its lease (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadscore.auth import repository as auth_repo
from leadscore.core.db import create_engine, session_factory, transaction
from leadscore.core.migrate import upgrade
from leadscore.qualification import repository as repo
from leadscore.scoring import repository as scoring_repo
from leadscore.scoring.repository import ScoreRecord

from ..services import postgres_url, reset_postgres

LEADS = 12


@pytest.fixture(params=["sqlite", "postgres"])
async def queue(
    request: pytest.FixtureRequest, database: str
) -> AsyncIterator[tuple[async_sessionmaker[AsyncSession], int]]:
    """A migrated database with one team and an open escalation for each of its leads."""
    url = database
    if request.param == "postgres":
        url = postgres_url()
        await reset_postgres(url)
        await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    sessions = session_factory(engine)
    now = datetime.now(UTC)
    async with transaction(sessions) as session:
        team = await auth_repo.create_team(session, "acme", now)
        records = [
            ScoreRecord(team.id, f"lead-{i}", {}, "v1", 50.0, "warm", True, False, now,
                        {"ml_score": 50.0})
            for i in range(LEADS)
        ]  # fmt: skip
        await scoring_repo.save_scores(session, records)
        rows = [
            {"team_id": team.id, "lead_id": r.lead_id, "status": "open", "reasons": [],
             "ml_score": 50.0, "ml_confidence": 0.5, "opened_at": now, "llm_attempts": 0,
             "updated_at": now}
            for r in records
        ]  # fmt: skip
        assert len(await repo.open_many(session, rows)) == LEADS
        assert await repo.open_many(session, rows) == []  # once per lead while open
    yield sessions, team.id
    await engine.dispose()


async def test_concurrent_takers_never_take_the_same_escalation(
    queue: tuple[async_sessionmaker[AsyncSession], int],
) -> None:
    sessions, _ = queue
    taken: list[int] = []

    async def worker() -> None:
        while True:
            now = datetime.now(UTC)
            async with transaction(sessions) as session:
                row = await repo.take_for_llm(session, now, now + timedelta(minutes=5))
                await asyncio.sleep(0.01)  # hold the transaction: the others run meanwhile
            if row is None:
                return
            taken.append(row.id)

    await asyncio.gather(*(worker() for _ in range(4)))
    assert len(taken) == LEADS
    assert len(set(taken)) == LEADS
    now = datetime.now(UTC)
    async with transaction(sessions) as session:  # every one is leased now
        assert await repo.take_for_llm(session, now, now) is None
    later = now + timedelta(minutes=6)
    async with transaction(sessions) as session:  # a dead worker's lease runs out
        again = await repo.take_for_llm(session, later, later + timedelta(minutes=5))
    assert again is not None
    assert again.id == min(taken)  # oldest first
