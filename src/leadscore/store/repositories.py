"""Every query LeadScore runs lives here; callers own the transaction and commit."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import case, delete, func, insert, select, text, union_all, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from leadscore.store.tables import (
    ApiKey,
    LeadRow,
    ModelAliasRow,
    ModelChangeRow,
    ModelExperimentRow,
    ModelVersionRow,
    OutcomeRow,
    ScoreRow,
    ShadowScoreRow,
    Team,
)

KEY_PREFIX: Final = "lsk_"


async def ping(session: AsyncSession) -> None:
    """A real round trip to the database."""
    await session.execute(text("SELECT 1"))


async def team_by_name(session: AsyncSession, name: str) -> Team | None:
    """The team with this name, if any."""
    result = await session.execute(select(Team).where(Team.name == name))
    return result.scalar_one_or_none()


async def create_team(session: AsyncSession, name: str, now: datetime) -> Team:
    """A new team; the caller commits."""
    team = Team(name=name, created_at=now)
    session.add(team)
    await session.flush()
    return team


def hash_key(secret: str) -> str:
    """API keys are 256-bit random secrets, so one SHA-256 is enough to store them safely."""
    return hashlib.sha256(secret.encode()).hexdigest()


async def create_api_key(
    session: AsyncSession, team: Team, role: str, name: str, now: datetime
) -> str:
    """Store a new key's hash and return the key itself, which is never stored."""
    prefix = secrets.token_hex(6)
    secret = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    session.add(
        ApiKey(
            team_id=team.id,
            prefix=prefix,
            key_hash=hash_key(secret),
            role=role,
            name=name,
            created_at=now,
        )
    )
    await session.flush()
    return secret


@dataclass(frozen=True)
class KeyOwner:
    """Who an API key belongs to."""

    key_id: int
    team_id: int
    team_name: str
    role: str


def key_prefix(secret: str) -> str | None:
    """The lookup prefix of a well-formed key, None for anything else."""
    if not secret.startswith(KEY_PREFIX):
        return None
    prefix, sep, _ = secret[len(KEY_PREFIX) :].partition("_")
    return prefix if sep and len(prefix) == 12 else None


async def key_owner(session: AsyncSession, secret: str) -> KeyOwner | None:
    """The owner of an active key, compared in constant time; None when unknown or revoked."""
    prefix = key_prefix(secret)
    if prefix is None:
        return None
    result = await session.execute(
        select(ApiKey, Team.name)
        .join(Team, Team.id == ApiKey.team_id)
        .where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))
    )
    row = result.one_or_none()
    if row is None:
        return None
    key, team_name = row
    if not hmac.compare_digest(key.key_hash, hash_key(secret)):
        return None
    return KeyOwner(key.id, key.team_id, team_name, key.role)


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


async def register_model(
    session: AsyncSession,
    version: str,
    path: str,
    card: dict[str, Any],
    now: datetime,
    *,
    artifact: bytes | None = None,
    team_id: int | None = None,
    parent_version: str | None = None,
    trained_by: str | None = None,
) -> bool:
    """Record a model version once (workers start together); True when it is new."""
    upsert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = upsert(ModelVersionRow).values(
        version=version, path=path, card=card, registered_at=now, artifact=artifact,
        team_id=team_id, parent_version=parent_version, trained_by=trained_by,
    )  # fmt: skip
    result = await session.execute(statement.on_conflict_do_nothing(index_elements=["version"]))
    return bool(getattr(result, "rowcount", 0))


async def model_version(session: AsyncSession, version: str) -> ModelVersionRow | None:
    """One registered version, artifact included."""
    result = await session.execute(
        select(ModelVersionRow).where(ModelVersionRow.version == version)
    )
    return result.scalar_one_or_none()


async def model_versions(session: AsyncSession) -> list[ModelVersionRow]:
    """Every registered version without its artifact bytes, newest first."""
    result = await session.execute(
        select(ModelVersionRow)
        .options(defer(ModelVersionRow.artifact))
        .order_by(ModelVersionRow.registered_at.desc(), ModelVersionRow.id.desc())
    )
    return list(result.scalars())


async def model_aliases(session: AsyncSession) -> dict[tuple[str, str], str]:
    """(scope, alias) → version for every alias."""
    result = await session.execute(select(ModelAliasRow))
    return {(row.scope, row.alias): row.version for row in result.scalars()}


async def set_alias(
    session: AsyncSession, scope: str, alias: str, version: str, now: datetime
) -> None:
    """Point an alias at a version (insert or move)."""
    upsert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = upsert(ModelAliasRow).values(
        scope=scope, alias=alias, version=version, updated_at=now
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["scope", "alias"],
            set_={"version": statement.excluded.version, "updated_at": now},
        )
    )


async def take_lease(
    session: AsyncSession, scope: str, holder: str, now: datetime, stale_before: datetime
) -> bool:
    """Hold the scope's `training` alias unless a live holder has it (stale ones are cleared)."""
    await session.execute(
        delete(ModelAliasRow).where(
            ModelAliasRow.scope == scope,
            ModelAliasRow.alias == "training",
            ModelAliasRow.updated_at < stale_before,
        )
    )
    upsert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = upsert(ModelAliasRow).values(
        scope=scope, alias="training", version=holder, updated_at=now
    )
    result = await session.execute(statement.on_conflict_do_nothing())
    return bool(getattr(result, "rowcount", 0))


async def renew_lease(session: AsyncSession, scope: str, holder: str, now: datetime) -> bool:
    """Keep the `training` alias while its holder works; False if the holder lost it."""
    result = await session.execute(
        update(ModelAliasRow)
        .where(
            ModelAliasRow.scope == scope,
            ModelAliasRow.alias == "training",
            ModelAliasRow.version == holder,
        )
        .values(updated_at=now)
    )
    return bool(getattr(result, "rowcount", 0))


async def release_lease(session: AsyncSession, scope: str, holder: str) -> None:
    """Give the `training` alias back."""
    await session.execute(
        delete(ModelAliasRow).where(
            ModelAliasRow.scope == scope,
            ModelAliasRow.alias == "training",
            ModelAliasRow.version == holder,
        )
    )


async def drop_alias(session: AsyncSession, scope: str, alias: str) -> None:
    """Remove an alias (a challenger that was promoted or refused)."""
    await session.execute(
        delete(ModelAliasRow).where(ModelAliasRow.scope == scope, ModelAliasRow.alias == alias)
    )


async def add_model_change(session: AsyncSession, change: ModelChangeRow) -> None:
    """Append to the audit trail of alias changes."""
    session.add(change)


async def model_changes(
    session: AsyncSession, scope: str, limit: int = 100
) -> list[ModelChangeRow]:
    """A scope's alias changes, newest first."""
    result = await session.execute(
        select(ModelChangeRow)
        .where(ModelChangeRow.scope == scope)
        .order_by(ModelChangeRow.id.desc())
        .limit(limit)
    )
    return list(result.scalars())


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


@dataclass(frozen=True)
class TrainingLead:
    """A lead with outcomes: its data as first scored, when, and what happened."""

    lead_id: str
    data: dict[str, Any]
    first_seen_at: datetime
    outcomes: dict[str, OutcomeRecord]


async def training_leads(session: AsyncSession, team_id: int) -> list[TrainingLead]:
    """Every lead of the team with at least one outcome, oldest first (columns, not ORM rows:
    tens of thousands of leads are read at once)."""
    result = await session.execute(
        select(
            LeadRow.lead_id, LeadRow.first_data, LeadRow.data, LeadRow.first_seen_at,
            OutcomeRow.outcome, OutcomeRow.occurred_at, OutcomeRow.sale_price,
            OutcomeRow.closed_at, OutcomeRow.recorded_at,
        )
        .join(OutcomeRow, (OutcomeRow.team_id == LeadRow.team_id)
              & (OutcomeRow.lead_id == LeadRow.lead_id))
        .where(LeadRow.team_id == team_id)
        .order_by(LeadRow.first_seen_at, LeadRow.lead_id)
    )  # fmt: skip
    leads: dict[str, TrainingLead] = {}
    for lead_id, first_data, data, first_seen_at, *outcome in result.all():
        entry = leads.get(lead_id)
        if entry is None:
            entry = leads[lead_id] = TrainingLead(lead_id, first_data or data, first_seen_at, {})
        entry.outcomes[outcome[0]] = OutcomeRecord(team_id, lead_id, *outcome)
    return list(leads.values())


async def leads_with_outcomes(session: AsyncSession, team_id: int) -> int:
    """How many of the team's leads have at least one outcome."""
    result = await session.execute(
        select(func.count(func.distinct(OutcomeRow.lead_id))).where(OutcomeRow.team_id == team_id)
    )
    return int(result.scalar_one())


async def recent_leads(
    session: AsyncSession, team_id: int, limit: int
) -> list[tuple[dict[str, Any], datetime]]:
    """The team's most recently scored leads: their data and when they were last scored."""
    result = await session.execute(
        select(LeadRow.data, LeadRow.updated_at)
        .where(LeadRow.team_id == team_id)
        .order_by(LeadRow.updated_at.desc())
        .limit(limit)
    )
    return [(data, updated_at) for data, updated_at in result.all()]


async def scored_outcomes(
    session: AsyncSession, team_id: int, limit: int
) -> list[tuple[str, float, bool]]:
    """The team's latest scores of leads with a known conversion: (version, score, converted).

    Converted = a `converted` or `closed` outcome; not converted = only `lost`.
    """
    converted = (
        select(OutcomeRow.lead_id).where(
            OutcomeRow.team_id == team_id, OutcomeRow.outcome.in_(("converted", "closed"))
        )
    ).subquery()
    labelled = (
        select(OutcomeRow.lead_id).where(OutcomeRow.team_id == team_id).distinct()
    ).subquery()
    result = await session.execute(
        select(ScoreRow.model_version, ScoreRow.ml_score, converted.c.lead_id.is_not(None))
        .join(labelled, labelled.c.lead_id == ScoreRow.lead_id)
        .outerjoin(converted, converted.c.lead_id == ScoreRow.lead_id)
        .where(ScoreRow.team_id == team_id)
        .order_by(ScoreRow.scored_at.desc(), ScoreRow.id.desc())
        .limit(limit)
    )
    return [(version, score, bool(hit)) for version, score, hit in result.all()]


async def teams_with_outcomes(session: AsyncSession, at_least: int) -> list[int]:
    """Teams with at least this many leads with outcomes (candidates for their own model)."""
    result = await session.execute(
        select(OutcomeRow.team_id)
        .group_by(OutcomeRow.team_id)
        .having(func.count(func.distinct(OutcomeRow.lead_id)) >= at_least)
    )
    return list(result.scalars())


async def model_experiments(session: AsyncSession) -> dict[str, ModelExperimentRow]:
    """scope → the experiment running there."""
    result = await session.execute(select(ModelExperimentRow))
    return {row.scope: row for row in result.scalars()}


async def set_experiment(
    session: AsyncSession, scope: str, mode: str, share: float, now: datetime, actor: str
) -> None:
    """Start (or change) a scope's experiment."""
    upsert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = upsert(ModelExperimentRow).values(
        scope=scope, mode=mode, share=share, started_at=now, actor=actor
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["scope"],
            set_={"mode": mode, "share": share, "started_at": now, "actor": actor},
        )
    )


async def end_experiment(session: AsyncSession, scope: str) -> bool:
    """Stop a scope's experiment; whether one was running."""
    result = await session.execute(
        delete(ModelExperimentRow).where(ModelExperimentRow.scope == scope)
    )
    return bool(getattr(result, "rowcount", 0))


@dataclass(frozen=True)
class ShadowRecord:
    """A score one version gave a lead while another version's score was returned."""

    team_id: int
    lead_id: str
    model_version: str
    served_version: str
    ml_score: float
    scored_at: datetime


async def save_shadow_scores(session: AsyncSession, records: Sequence[ShadowRecord]) -> None:
    """Append shadow scores in one statement."""
    if not records:
        return
    await session.execute(
        insert(ShadowScoreRow.metadata.tables[ShadowScoreRow.__tablename__]),
        [
            {
                "team_id": r.team_id, "lead_id": r.lead_id, "model_version": r.model_version,
                "served_version": r.served_version, "ml_score": r.ml_score,
                "scored_at": r.scored_at,
            }
            for r in records
        ],
    )  # fmt: skip


async def scores_before_outcomes(
    session: AsyncSession, team_id: int, versions: Sequence[str], limit: int
) -> list[tuple[str, str, float, bool]]:
    """(lead, version, score, converted) for these versions' scores, returned or shadow, made
    before the lead's first outcome (a later score may have seen it); newest first."""
    labels = (
        select(
            OutcomeRow.lead_id,
            func.min(OutcomeRow.occurred_at).label("first_outcome"),
            func.max(case((OutcomeRow.outcome.in_(("converted", "closed")), 1), else_=0)).label(
                "converted"
            ),
        )
        .where(OutcomeRow.team_id == team_id)
        .group_by(OutcomeRow.lead_id)
        .subquery()
    )
    parts = [
        select(table.lead_id, table.model_version, table.ml_score, table.scored_at,
               labels.c.converted)
        .join(labels, labels.c.lead_id == table.lead_id)
        .where(table.team_id == team_id, table.model_version.in_(versions),
               table.scored_at <= labels.c.first_outcome)
        for table in (ScoreRow, ShadowScoreRow)
    ]  # fmt: skip
    both = union_all(*parts).subquery()
    result = await session.execute(
        select(both.c.lead_id, both.c.model_version, both.c.ml_score, both.c.converted)
        .order_by(both.c.scored_at.desc())
        .limit(limit)
    )
    return [(lead, version, score, bool(hit)) for lead, version, score, hit in result.all()]
