"""Queries of the model registry, trials, leases and the training rows it reads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, delete, func, insert, select, union_all, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from leadscore.core.tables import (
    CrmConnectionRow,
    LeadRow,
    ModelAliasRow,
    ModelChangeRow,
    ModelExperimentRow,
    ModelVersionRow,
    OutcomeRow,
    ScoreRow,
    ShadowScoreRow,
    Team,
    TrainingJobRow,
)
from leadscore.engine.attributes import ATTRIBUTE_PREFIX
from leadscore.outcomes.repository import OutcomeRecord


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


async def lease_holder(session: AsyncSession, scope: str) -> tuple[str, datetime] | None:
    """The job holding a scope's `training` lease and when it last renewed it."""
    result = await session.execute(
        select(ModelAliasRow.version, ModelAliasRow.updated_at).where(
            ModelAliasRow.scope == scope, ModelAliasRow.alias == "training"
        )
    )
    row = result.first()
    return (row.version, row.updated_at) if row is not None else None


async def add_training_job(session: AsyncSession, job: TrainingJobRow) -> None:
    """Record a job that starts now."""
    session.add(job)


async def finish_training_job(
    session: AsyncSession, job: str, **outcome: str | bool | datetime | None
) -> None:
    """Record how a job ended: its state, when, and its version or its error."""
    await session.execute(update(TrainingJobRow).where(TrainingJobRow.job == job).values(**outcome))


async def training_jobs(session: AsyncSession, team_id: int, limit: int) -> list[TrainingJobRow]:
    """A team's jobs, newest first."""
    result = await session.execute(
        select(TrainingJobRow)
        .where(TrainingJobRow.team_id == team_id)
        .order_by(TrainingJobRow.started_at.desc(), TrainingJobRow.job)
        .limit(limit)
    )
    return list(result.scalars())


async def training_job(session: AsyncSession, team_id: int, job: str) -> TrainingJobRow | None:
    """One job of a team (None for another team's)."""
    result = await session.execute(
        select(TrainingJobRow).where(TrainingJobRow.job == job, TrainingJobRow.team_id == team_id)
    )
    return result.scalar_one_or_none()


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


async def had_champion(session: AsyncSession, scope: str) -> bool:
    """Whether a scope's champion was ever set or rolled back (its audit trail says so)."""
    result = await session.execute(
        select(ModelChangeRow.id)
        .where(
            ModelChangeRow.scope == scope,
            ModelChangeRow.action.in_(("promote", "rollback", "bootstrap")),
        )
        .limit(1)
    )
    return result.first() is not None


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


async def team_mapping(session: AsyncSession, team_id: int) -> dict[str, Any] | None:
    """The team's stored column mapping document, if it set one."""
    result = await session.execute(select(Team.mapping).where(Team.id == team_id))
    return result.scalar_one_or_none()


async def connection_attributes(session: AsyncSession, team_id: int) -> list[str]:
    """The attribute names the team's CRM connections map custom fields to, in order."""
    result = await session.execute(
        select(CrmConnectionRow.field_mapping)
        .where(CrmConnectionRow.team_id == team_id)
        .order_by(CrmConnectionRow.id)
    )
    names: dict[str, None] = {}
    for mapping in result.scalars():
        for target in (mapping or {}).values():
            if isinstance(target, str) and target.startswith(ATTRIBUTE_PREFIX):
                names[target[len(ATTRIBUTE_PREFIX) :]] = None
    return list(names)


async def set_team_mapping(
    session: AsyncSession, team_id: int, document: dict[str, Any] | None
) -> None:
    """Store (or clear, with None) the team's column mapping."""
    await session.execute(update(Team).where(Team.id == team_id).values(mapping=document))


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


async def labelled_leads(session: AsyncSession, team_id: int) -> int:
    """How many of a team's leads have an outcome: an upper bound of its training rows."""
    result = await session.execute(
        select(func.count(func.distinct(OutcomeRow.lead_id))).where(OutcomeRow.team_id == team_id)
    )
    return int(result.scalar_one())


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
