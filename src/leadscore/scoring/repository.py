"""Queries of leads and their scores; the score writer commits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from leadscore.core.tables import (
    LeadRow,
    ScoreRow,
)


@dataclass(frozen=True)
class ScoreRecord:
    """A score to persist, with the lead data it was computed from."""

    team_id: int
    lead_id: str
    lead_data: dict[str, Any]
    model_version: str
    ml_score: float
    classification: str
    escalation_recommended: bool
    cache_hit: bool
    scored_at: datetime
    result: dict[str, Any]


async def save_scores(session: AsyncSession, records: Sequence[ScoreRecord]) -> None:
    """Append score history and upsert each lead's latest data: two bulk statements."""
    if not records:
        return
    await session.execute(
        insert(ScoreRow.metadata.tables[ScoreRow.__tablename__]),  # Core: no ORM bookkeeping
        [
            {
                "team_id": r.team_id,
                "lead_id": r.lead_id,
                "model_version": r.model_version,
                "ml_score": r.ml_score,
                "classification": r.classification,
                "escalation_recommended": r.escalation_recommended,
                "cache_hit": r.cache_hit,
                "scored_at": r.scored_at,
                "result": r.result,
            }
            for r in records
        ],
    )
    latest: dict[tuple[int, str], ScoreRecord] = {}
    first: dict[tuple[int, str], ScoreRecord] = {}
    for record in records:
        latest[(record.team_id, record.lead_id)] = record
        first.setdefault((record.team_id, record.lead_id), record)
    rows = [
        {
            "team_id": r.team_id,
            "lead_id": r.lead_id,
            "data": r.lead_data,
            # A new lead's first data is its first score's, even when a batch holds two.
            "first_data": first[key].lead_data,
            "first_seen_at": first[key].scored_at,
            "updated_at": r.scored_at,
        }
        for key, r in latest.items()
    ]
    upsert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = upsert(LeadRow)
    statement = statement.on_conflict_do_update(
        index_elements=[LeadRow.team_id, LeadRow.lead_id],
        set_={"data": statement.excluded.data, "updated_at": statement.excluded.updated_at},
    )
    # Parameters passed separately: one cached statement, whatever the batch size.
    await session.execute(statement, rows)


async def latest_score(session: AsyncSession, team_id: int, lead_id: str) -> ScoreRow | None:
    """The most recent score of a lead for one team."""
    result = await session.execute(
        select(ScoreRow)
        .where(ScoreRow.team_id == team_id, ScoreRow.lead_id == lead_id)
        .order_by(ScoreRow.scored_at.desc(), ScoreRow.id.desc())
        .limit(1)
    )
    return result.scalar_one_or_none()


async def score_history(
    session: AsyncSession, team_id: int, lead_id: str, limit: int
) -> list[ScoreRow]:
    """A lead's scores for one team, newest first."""
    result = await session.execute(
        select(ScoreRow)
        .where(ScoreRow.team_id == team_id, ScoreRow.lead_id == lead_id)
        .order_by(ScoreRow.scored_at.desc(), ScoreRow.id.desc())
        .limit(limit)
    )
    return list(result.scalars())
