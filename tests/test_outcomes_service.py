"""Outcomes of leads scored a moment ago by another worker, whose writer has not committed yet."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadscore.auth import repository as auth_repo
from leadscore.auth.principal import Principal
from leadscore.core.errors import NotFoundError
from leadscore.core.writer import ScoreWriter
from leadscore.outcomes.service import OutcomeIn, OutcomeService
from leadscore.scoring import repository as scoring_repo
from leadscore.scoring.repository import ScoreRecord


async def _nothing(records: Sequence[ScoreRecord]) -> None:
    """This worker's writer: it holds none of the leads (they went to the other worker)."""


def _writer() -> ScoreWriter[ScoreRecord]:
    return ScoreWriter(_nothing, batch_max=10, interval_ms=0, durable=False)


async def _other_worker_commits(
    sessions: async_sessionmaker[AsyncSession], team_id: int, delay: float
) -> None:
    """The other worker's writer commits the lead's score `delay` seconds from now."""
    await asyncio.sleep(delay)
    now = datetime.now(UTC)
    async with sessions() as session, session.begin():
        await scoring_repo.save_scores(session, [ScoreRecord(
            team_id, "lead-1", {}, "v1", 40.0, "warm", False, False, now, {"ml_score": 40.0}
        )])  # fmt: skip


@pytest.mark.parametrize("wait", [2.0, 0.0])
async def test_an_outcome_waits_for_another_workers_writer_only_when_there_may_be_one(
    sessions: async_sessionmaker[AsyncSession], wait: float
) -> None:
    async with sessions() as session, session.begin():
        team = await auth_repo.create_team(session, "acme", datetime.now(UTC))
    who = Principal(1, team.id, "acme", "agent")
    item = OutcomeIn(lead_id="lead-1", outcome="converted", occurred_at=datetime.now(UTC))
    service = OutcomeService(_writer(), other_writers_seconds=wait)
    other = asyncio.create_task(_other_worker_commits(sessions, team.id, 0.3))
    async with sessions() as session, session.begin():  # as the request's session is
        if wait:
            body = await service.record(session, who, [item])
            assert b'"recorded":1' in body
        else:
            with pytest.raises(NotFoundError, match="lead-1"):
                await service.record(session, who, [item])
    await other


async def test_a_lead_nobody_scored_is_still_404_after_the_wait(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session, session.begin():
        team = await auth_repo.create_team(session, "acme", datetime.now(UTC))
    service = OutcomeService(_writer(), other_writers_seconds=0.3)
    item = OutcomeIn(lead_id="nobody", outcome="lost", occurred_at=datetime.now(UTC))
    async with sessions() as session, session.begin():
        with pytest.raises(NotFoundError, match="nobody"):
            await service.record(session, Principal(1, team.id, "acme", "agent"), [item])
