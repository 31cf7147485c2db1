"""Queries of outcomes; the request boundary commits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from leadscore.core.tables import (
    LeadRow,
    OutcomeRow,
)


@dataclass(frozen=True)
class OutcomeRecord:
    """An outcome of a lead, as stored."""

    team_id: int
    lead_id: str
    outcome: str
    occurred_at: datetime
    sale_price: float | None
    closed_at: datetime | None
    recorded_at: datetime


async def known_leads(session: AsyncSession, team_id: int, lead_ids: Sequence[str]) -> set[str]:
    """Which of these leads the team has scored."""
    result = await session.execute(
        select(LeadRow.lead_id).where(LeadRow.team_id == team_id, LeadRow.lead_id.in_(lead_ids))
    )
    return set(result.scalars())


async def lead_outcomes(
    session: AsyncSession, team_id: int, lead_ids: Sequence[str]
) -> dict[tuple[str, str], OutcomeRecord]:
    """The recorded outcomes of these leads, by (lead, outcome)."""
    result = await session.execute(
        select(OutcomeRow).where(OutcomeRow.team_id == team_id, OutcomeRow.lead_id.in_(lead_ids))
    )
    return {
        (row.lead_id, row.outcome): OutcomeRecord(
            row.team_id, row.lead_id, row.outcome, row.occurred_at, row.sale_price,
            row.closed_at, row.recorded_at,
        )
        for row in result.scalars()
    }  # fmt: skip


async def save_outcomes(session: AsyncSession, records: Sequence[OutcomeRecord]) -> None:
    """Insert new outcomes; a concurrent duplicate raises IntegrityError (unique key)."""
    if not records:
        return
    await session.execute(
        insert(OutcomeRow.metadata.tables[OutcomeRow.__tablename__]),
        [
            {
                "team_id": r.team_id, "lead_id": r.lead_id, "outcome": r.outcome,
                "occurred_at": r.occurred_at, "sale_price": r.sale_price,
                "closed_at": r.closed_at, "recorded_at": r.recorded_at,
            }
            for r in records
        ],
    )  # fmt: skip
