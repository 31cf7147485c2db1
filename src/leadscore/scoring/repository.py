"""Queries of leads and their scores (the list and the stats too); the score writer commits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import (
    ColumnElement,
    Float,
    Integer,
    Numeric,
    Row,
    Select,
    and_,
    case,
    cast,
    func,
    insert,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from leadscore.core.tables import (
    LeadRow,
    OutcomeRow,
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


#: The lead's columns that hold its latest score, as `latest_columns` fills them.
LATEST_COLUMNS: Final = (
    "name", "email", "source", "ml_score", "classification", "ml_confidence",
    "qualification_needed", "expected_commission", "scored_at", "model_version", "summary",
)  # fmt: skip


def top_question(result: dict[str, Any]) -> dict[str, Any] | None:
    """The first question of a score's `qualification.ask_next` ({field, question}), or None."""
    ask_next = (result.get("qualification") or {}).get("ask_next") or []
    return {k: ask_next[0][k] for k in ("field", "question")} if ask_next else None


def latest_columns(record: ScoreRecord) -> dict[str, Any]:
    """The leads row's copy of a score: what the list shows, filters and sorts on."""
    result, data = record.result, record.lead_data
    return {
        "name": data.get("name"),
        "email": data.get("email"),
        "source": data.get("source"),
        "ml_score": record.ml_score,
        "classification": record.classification,
        "ml_confidence": result.get("ml_confidence"),
        "qualification_needed": record.escalation_recommended,  # = qualification.needed
        "expected_commission": (result.get("commission") or {}).get("expected_commission"),
        "scored_at": record.scored_at,
        "model_version": record.model_version,
        "summary": {
            "top_question": top_question(result),
            "reasons": (result.get("reasons") or [])[:2],  # the engine sorts them by |points|
        },
    }


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
    # A lead scored twice in one batch changed since its previous score in that batch.
    within: dict[tuple[int, str], float] = {}
    for record in records:
        key = (record.team_id, record.lead_id)
        if key in latest:
            within[key] = round(record.ml_score - latest[key].ml_score, 2)
        latest[key] = record
        first.setdefault(key, record)
    rows = [
        {
            "team_id": r.team_id,
            "lead_id": r.lead_id,
            "data": r.lead_data,
            # A new lead's first data is its first score's, even when a batch holds two.
            "first_data": first[key].lead_data,
            "first_seen_at": first[key].scored_at,
            "updated_at": r.scored_at,
            **latest_columns(r),
            "change_points": within.get(key),
        }
        for key, r in latest.items()
    ]
    upsert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = upsert(LeadRow)
    new = statement.excluded
    # Otherwise the change is since the lead's stored latest score, read by the upsert itself.
    change = case(
        (new.change_points.is_not(None), new.change_points),
        # round(numeric, int): PostgreSQL has no round(double precision, int).
        else_=cast(func.round(cast(new.ml_score - LeadRow.ml_score, Numeric), 2), Float),
    )
    statement = statement.on_conflict_do_update(
        index_elements=[LeadRow.team_id, LeadRow.lead_id],
        set_={"data": new.data, "updated_at": new.updated_at, "change_points": change}
        | {column: new[column] for column in LATEST_COLUMNS},
        # Two workers' writers may commit out of order: an older score never replaces a newer.
        where=LeadRow.updated_at <= new.updated_at,
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
    session: AsyncSession, team_id: int, lead_id: str, limit: int, before: int | None = None
) -> list[ScoreRow]:
    """A lead's scores for one team, newest first; with `before` (a score's id), those after
    it in that order — keyset paging that new scores arriving meanwhile cannot shift."""
    query = select(ScoreRow).where(ScoreRow.team_id == team_id, ScoreRow.lead_id == lead_id)
    if before is not None:
        # The anchor's own time, read in the query: no rounding of a timestamp in a cursor.
        anchor = (
            select(ScoreRow.scored_at)
            .where(ScoreRow.id == before, ScoreRow.team_id == team_id, ScoreRow.lead_id == lead_id)
            .scalar_subquery()
        )
        query = query.where(
            or_(
                ScoreRow.scored_at < anchor,
                and_(ScoreRow.scored_at == anchor, ScoreRow.id < before),
            )
        )
    result = await session.execute(
        query.order_by(ScoreRow.scored_at.desc(), ScoreRow.id.desc()).limit(limit)
    )
    return list(result.scalars())


@dataclass(frozen=True)
class LeadFilter:
    """What the leads list keeps; None keeps everything."""

    classification: str | None = None
    qualification_needed: bool | None = None
    min_score: float | None = None
    source: str | None = None  # compared case-insensitively
    scored_since: datetime | None = None
    q: str | None = None  # a substring of the name or the email, case-insensitively


#: The leads list's sort keys: the column each orders by, descending.
SORT_COLUMNS: Final = {
    "score": LeadRow.ml_score,
    "expected_commission": LeadRow.expected_commission,
    "scored_at": LeadRow.scored_at,
    "change": LeadRow.change_points,
}

_LIST_COLUMNS: Final = (
    LeadRow.lead_id, LeadRow.name, LeadRow.email, LeadRow.source, LeadRow.ml_score,
    LeadRow.classification, LeadRow.ml_confidence, LeadRow.qualification_needed,
    LeadRow.expected_commission, LeadRow.change_points, LeadRow.scored_at,
    LeadRow.model_version, LeadRow.summary,
)  # fmt: skip


def _filtered(statement: Select[Any], team_id: int, keep: LeadFilter) -> Select[Any]:
    conditions: list[ColumnElement[bool]] = [
        LeadRow.team_id == team_id,
        LeadRow.ml_score.is_not(None),  # a lead is listed once it has a score
    ]
    if keep.classification is not None:
        conditions.append(LeadRow.classification == keep.classification)
    if keep.qualification_needed is not None:
        conditions.append(LeadRow.qualification_needed == keep.qualification_needed)
    if keep.min_score is not None:
        conditions.append(LeadRow.ml_score >= keep.min_score)
    if keep.source is not None:
        conditions.append(func.lower(LeadRow.source) == keep.source.lower())
    if keep.scored_since is not None:
        conditions.append(LeadRow.scored_at >= keep.scored_since)
    if keep.q is not None:
        conditions.append(
            or_(
                LeadRow.name.icontains(keep.q, autoescape=True),
                LeadRow.email.icontains(keep.q, autoescape=True),
            )
        )
    return statement.where(*conditions)


async def lead_page(
    session: AsyncSession,
    team_id: int,
    sort: str,
    keep: LeadFilter,
    after: tuple[Any, str] | None,
    limit: int,
) -> list[Row[Any]]:
    """Up to `limit` leads after the keyset `after` (sort value, lead id), by the sort key
    descending then lead id descending, leads without a value last.

    Two index range scans at most (team_id, key, lead_id) read backwards: the leads with a
    value, then (when the page is not full) those without one.
    """
    column = SORT_COLUMNS[sort]
    rows: list[Row[Any]] = []
    if after is None or after[0] is not None:
        valued = _filtered(select(*_LIST_COLUMNS), team_id, keep).where(column.is_not(None))
        if after is not None:
            value, lead_id = after
            valued = valued.where(column <= value, or_(column < value, LeadRow.lead_id < lead_id))
        valued = valued.order_by(column.desc(), LeadRow.lead_id.desc()).limit(limit)
        rows = list(await session.execute(valued))
    if len(rows) < limit:
        empty = _filtered(select(*_LIST_COLUMNS), team_id, keep).where(column.is_(None))
        if after is not None and after[0] is None:
            empty = empty.where(LeadRow.lead_id < after[1])
        missing = limit - len(rows)
        empty = empty.order_by(LeadRow.lead_id.desc()).limit(missing)
        rows += list(await session.execute(empty))
    return rows


async def lead(session: AsyncSession, team_id: int, lead_id: str) -> LeadRow | None:
    """One lead of one team."""
    return await session.get(LeadRow, (team_id, lead_id))


def _floor(value: ColumnElement[Any], dialect: str) -> ColumnElement[int]:
    """floor() of a non-negative value; SQLite may lack floor(), and its CAST truncates."""
    if dialect == "postgresql":
        return cast(func.floor(value), Integer)
    return cast(value, Integer)


def _epoch(moment: InstrumentedAttribute[datetime], dialect: str) -> ColumnElement[float]:
    """Seconds since 1970 of a stored UTC instant."""
    if dialect == "postgresql":
        return cast(func.extract("epoch", moment), Float)
    return (func.julianday(moment) - 2440587.5) * 86400.0


def _band(score: InstrumentedAttribute[Any], dialect: str) -> ColumnElement[int]:
    """The 10-point band of a score, 0..9 (100 is in the top band)."""
    return case((score >= 90, 9), else_=_floor(score / 10, dialect))


def _window(team_id: int, since: datetime, until: datetime) -> list[ColumnElement[bool]]:
    return [ScoreRow.team_id == team_id, ScoreRow.scored_at >= since, ScoreRow.scored_at < until]


async def score_bands(
    session: AsyncSession, team_id: int, since: datetime, until: datetime
) -> list[Row[Any]]:
    """Per 10-point band of the window's scores: (band, scores, hot, warm, cold, qualified)."""
    dialect = session.get_bind().dialect.name
    band = _band(ScoreRow.ml_score, dialect).label("band")

    def count_of(condition: ColumnElement[bool]) -> ColumnElement[int]:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    statement = (
        select(
            band,
            func.count().label("scores"),
            count_of(ScoreRow.classification == "hot").label("hot"),
            count_of(ScoreRow.classification == "warm").label("warm"),
            count_of(ScoreRow.classification == "cold").label("cold"),
            count_of(ScoreRow.escalation_recommended.is_(True)).label("qualified"),
        )
        .where(*_window(team_id, since, until))
        .group_by(band)
    )
    return list(await session.execute(statement))


async def score_timeline(
    session: AsyncSession, team_id: int, since: datetime, until: datetime, bucket_seconds: int
) -> list[Row[Any]]:
    """(bucket, scores) of the window's non-empty buckets of `bucket_seconds` from `since`."""
    dialect = session.get_bind().dialect.name
    offset = _epoch(ScoreRow.scored_at, dialect) - since.timestamp()
    bucket = _floor(offset / bucket_seconds, dialect).label("bucket")
    statement = (
        select(bucket, func.count().label("scores"))
        .where(*_window(team_id, since, until))
        .group_by(bucket)
    )
    return list(await session.execute(statement))


async def conversion_bands(session: AsyncSession, team_id: int) -> list[Row[Any]]:
    """Per band of the latest score, for leads with an outcome: (band, leads, mean score,
    converted), a lead converted when it has a `converted` or `closed` outcome."""
    dialect = session.get_bind().dialect.name
    outcomes = (
        select(
            OutcomeRow.lead_id,
            func.max(case((OutcomeRow.outcome.in_(("converted", "closed")), 1), else_=0)).label(
                "converted"
            ),
        )
        .where(OutcomeRow.team_id == team_id)
        .group_by(OutcomeRow.lead_id)
        .subquery()
    )
    band = _band(LeadRow.ml_score, dialect).label("band")
    statement = (
        select(
            band,
            func.count().label("leads"),
            func.avg(LeadRow.ml_score).label("mean_score"),
            func.sum(outcomes.c.converted).label("converted"),
        )
        .join(outcomes, outcomes.c.lead_id == LeadRow.lead_id)
        .where(LeadRow.team_id == team_id, LeadRow.ml_score.is_not(None))
        .group_by(band)
    )
    return list(await session.execute(statement))


async def class_pipeline(session: AsyncSession, team_id: int) -> list[Row[Any]]:
    """Per latest class of a team's scored leads: (classification, leads, expected commission
    summed, leads with a commission estimate)."""
    statement = (
        select(
            LeadRow.classification,
            func.count().label("leads"),
            func.coalesce(func.sum(LeadRow.expected_commission), 0.0).label("commission"),
            func.count(LeadRow.expected_commission).label("with_commission"),
        )
        .where(LeadRow.team_id == team_id, LeadRow.classification.is_not(None))
        .group_by(LeadRow.classification)
    )
    return list(await session.execute(statement))


async def commission_by_class(session: AsyncSession, team_id: int) -> dict[str, float]:
    """The sum of the expected commission of a team's leads, by their latest class."""
    statement = (
        select(LeadRow.classification, func.sum(LeadRow.expected_commission))
        .where(LeadRow.team_id == team_id, LeadRow.classification.is_not(None))
        .group_by(LeadRow.classification)
    )
    return {str(cls): float(total or 0.0) for cls, total in await session.execute(statement)}
