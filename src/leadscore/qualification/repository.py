"""Queries of the escalations table; the request (or the worker's unit of work) commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Row, and_, func, or_, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from leadscore.core.tables import EscalationRow, LeadRow, ScoreRow

#: The partial unique index's predicate, as written in the table (once per lead while open).
_OPEN_PREDICATE: Final = text("status != 'resolved'")
#: The LLM qualifier's states that wait for llm_next_at: taken (leased until then; a worker
#: that died lets it go), an error to retry, the team's hourly budget spent.
LLM_RUNNING: Final = "running"
LLM_RETRY: Final = "retry"
LLM_BUDGET: Final = "budget"
_LLM_WAITING: Final = (LLM_RUNNING, LLM_RETRY, LLM_BUDGET)

_latest_result = (
    select(ScoreRow.result)
    .where(ScoreRow.team_id == EscalationRow.team_id, ScoreRow.lead_id == EscalationRow.lead_id)
    .order_by(ScoreRow.scored_at.desc(), ScoreRow.id.desc())
    .limit(1)
    .correlate(EscalationRow)
    .scalar_subquery()
    .label("latest_result")
)
_OF_LEAD: Final = and_(
    LeadRow.team_id == EscalationRow.team_id, LeadRow.lead_id == EscalationRow.lead_id
)
_VIEW: Final = (
    EscalationRow,
    LeadRow.name,
    LeadRow.ml_score.label("current_score"),
    LeadRow.ml_confidence.label("current_confidence"),
    LeadRow.classification,
    LeadRow.qualification_needed,
    LeadRow.model_version,
    _latest_result,
)


def _insert_for(session: AsyncSession) -> Any:
    dialect = session.get_bind().dialect.name
    return (pg_insert if dialect == "postgresql" else sqlite_insert)(EscalationRow)


async def open_many(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> list[Row[Any]]:
    """Open an escalation per row unless its lead has one not resolved (one statement):
    (id, team_id, lead_id) of those opened."""
    if not rows:
        return []
    statement = (
        _insert_for(session)
        .values(list(rows))
        .on_conflict_do_nothing(
            index_elements=[EscalationRow.team_id, EscalationRow.lead_id],
            index_where=_OPEN_PREDICATE,
        )
        .returning(EscalationRow.id, EscalationRow.team_id, EscalationRow.lead_id)
    )
    return list(await session.execute(statement))


async def resolve_open(
    session: AsyncSession, leads: Sequence[tuple[int, str]], by: str, now: datetime
) -> list[Row[Any]]:
    """Resolve the open (unclaimed) escalations of these (team, lead) pairs (one statement):
    (id, team_id, lead_id) of those resolved."""
    if not leads:
        return []
    statement = (
        update(EscalationRow)
        .where(
            EscalationRow.status == "open",
            tuple_(EscalationRow.team_id, EscalationRow.lead_id).in_(list(leads)),
        )
        .values(status="resolved", resolved_by=by, resolved_at=now, updated_at=now)
        .returning(EscalationRow.id, EscalationRow.team_id, EscalationRow.lead_id)
    )
    return list(await session.execute(statement, execution_options={"synchronize_session": False}))


async def page(
    session: AsyncSession,
    team_id: int,
    statuses: Sequence[str],
    after_id: int | None,
    limit: int,
) -> list[Row[Any]]:
    """Up to `limit` escalations of these statuses after `after_id`, oldest first, each with
    its lead's name, latest score and that score's result (for `ask_next`)."""
    statement = (
        select(*_VIEW)
        .join(LeadRow, _OF_LEAD)
        .where(EscalationRow.team_id == team_id, EscalationRow.status.in_(list(statuses)))
        .order_by(EscalationRow.id)
        .limit(limit)
    )
    if after_id is not None:
        statement = statement.where(EscalationRow.id > after_id)
    return list(await session.execute(statement))


async def count_by_status(
    session: AsyncSession, team_id: int, statuses: Sequence[str]
) -> dict[str, int]:
    """How many of a team's escalations are in each of these statuses."""
    statement = (
        select(EscalationRow.status, func.count())
        .where(EscalationRow.team_id == team_id, EscalationRow.status.in_(list(statuses)))
        .group_by(EscalationRow.status)
    )
    return {str(status): int(n) for status, n in await session.execute(statement)}


async def view(session: AsyncSession, team_id: int, escalation_id: int) -> Row[Any] | None:
    """One escalation of one team as the list shows it."""
    statement = (
        select(*_VIEW)
        .join(LeadRow, _OF_LEAD)
        .where(EscalationRow.team_id == team_id, EscalationRow.id == escalation_id)
        # Read afresh: this unit of work may have changed the row with an UPDATE already.
        .execution_options(populate_existing=True)
    )
    return (await session.execute(statement)).one_or_none()


async def get(session: AsyncSession, team_id: int, escalation_id: int) -> EscalationRow | None:
    """One escalation of one team."""
    statement = select(EscalationRow).where(
        EscalationRow.team_id == team_id, EscalationRow.id == escalation_id
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def claim(
    session: AsyncSession, team_id: int, escalation_id: int, by: str, now: datetime
) -> bool:
    """Claim an open escalation for `by`; False when it is not open (or not the team's)."""
    statement = (
        update(EscalationRow)
        .where(
            EscalationRow.team_id == team_id,
            EscalationRow.id == escalation_id,
            EscalationRow.status == "open",
        )
        .values(status="claimed", claimed_by=by, claimed_at=now, updated_at=now)
        .returning(EscalationRow.id)
    )
    result = await session.execute(statement, execution_options={"synchronize_session": False})
    return result.first() is not None


async def mark_resolved(
    session: AsyncSession,
    escalation_id: int,
    values: dict[str, Any],
    from_statuses: Sequence[str],
) -> bool:
    """Resolve an escalation if it is still in one of `from_statuses` (one conditional UPDATE:
    two resolutions never both succeed); False when it was not."""
    statement = (
        update(EscalationRow)
        .where(EscalationRow.id == escalation_id, EscalationRow.status.in_(list(from_statuses)))
        .values(status="resolved", **values)
        .returning(EscalationRow.id)
    )
    result = await session.execute(statement, execution_options={"synchronize_session": False})
    return result.first() is not None


async def lead_data(session: AsyncSession, team_id: int, lead_id: str) -> dict[str, Any] | None:
    """A lead's latest stored data."""
    statement = select(LeadRow.data).where(LeadRow.team_id == team_id, LeadRow.lead_id == lead_id)
    data: dict[str, Any] | None = (await session.execute(statement)).scalar_one_or_none()
    return data


async def take_for_llm(
    session: AsyncSession, now: datetime, lease_until: datetime
) -> EscalationRow | None:
    """Take the oldest open escalation the LLM may try now (never tried, due for a retry, or
    taken by a worker whose lease ran out) in one UPDATE … RETURNING: two workers never take
    the same one (PostgreSQL skips rows another worker is taking; SQLite writes one at a time)."""
    due = and_(
        EscalationRow.status == "open",
        or_(
            EscalationRow.llm_state.is_(None),
            and_(
                EscalationRow.llm_state.in_(_LLM_WAITING),
                or_(EscalationRow.llm_next_at.is_(None), EscalationRow.llm_next_at <= now),
            ),
        ),
    )
    candidate = (
        select(EscalationRow.id)
        .where(due)
        .order_by(EscalationRow.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    statement = (
        update(EscalationRow)
        .where(EscalationRow.id == candidate, due)
        .values(llm_state=LLM_RUNNING, llm_next_at=lease_until, updated_at=now)
        .returning(EscalationRow)
    )
    result = await session.execute(statement, execution_options={"synchronize_session": False})
    return result.scalar_one_or_none()


async def set_llm(
    session: AsyncSession,
    escalation_id: int,
    now: datetime,
    state: str | None,
    next_at: datetime | None,
    attempts: int,
    notes: str | None = None,
) -> None:
    """Record the LLM qualifier's progress on one escalation (notes kept unless given)."""
    values: dict[str, Any] = {
        "llm_state": state, "llm_next_at": next_at, "llm_attempts": attempts, "updated_at": now,
    }  # fmt: skip
    if notes is not None:
        values["notes"] = notes
    await session.execute(
        update(EscalationRow).where(EscalationRow.id == escalation_id).values(**values),
        execution_options={"synchronize_session": False},
    )
