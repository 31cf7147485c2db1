"""The leads table's latest score, as the score writer keeps it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadscore.auth import repository as auth_repo
from leadscore.core.tables import LeadRow
from leadscore.scoring import repository as scoring_repo
from leadscore.scoring.repository import ScoreRecord


def record(team_id: int, score: float, at: datetime) -> ScoreRecord:
    return ScoreRecord(team_id, "lead-1", {"name": f"at {score}"}, "v1", score, "cold",
                       False, False, at, {"ml_score": score})  # fmt: skip


async def test_an_older_score_written_late_does_not_replace_the_latest(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    now = datetime(2026, 10, 1, 12, tzinfo=UTC)
    async with sessions() as session, session.begin():
        team = await auth_repo.create_team(session, "acme", now)
        await scoring_repo.save_scores(session, [record(team.id, 20.0, now)])
        await scoring_repo.save_scores(session, [record(team.id, 35.0, now + timedelta(seconds=2))])
        # Another worker's writer commits a score made in between, after the newer one.
        await scoring_repo.save_scores(session, [record(team.id, 99.0, now + timedelta(seconds=1))])
    async with sessions() as session:
        row = (await session.execute(select(LeadRow))).scalar_one()
    assert row.ml_score == 35.0
    assert row.change_points == 15.0
    assert row.data == {"name": "at 35.0"}
    assert row.updated_at == now + timedelta(seconds=2)
