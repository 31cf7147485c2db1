"""The schema as SQLAlchemy tables; Alembic migrations in `migrations/` are generated from it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """Timestamps stored in UTC and always read back time-zone aware, on SQLite too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Refuse naive datetimes: an instant without a zone is ambiguous."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """SQLite returns naive values; they were written in UTC."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# SQLite only auto-increments INTEGER primary keys; PostgreSQL gets a real BIGINT.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    """Declarative base with stable constraint names, so migrations diff cleanly."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        datetime: UtcDateTime(),
    }


class Team(Base):
    """A real-estate team: every other row belongs to exactly one."""

    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    # A team's own settings; null means the server's default (LEADSCORE_*).
    commission_rate: Mapped[float | None] = mapped_column(Float)
    hot_threshold: Mapped[float | None] = mapped_column(Float)
    warm_threshold: Mapped[float | None] = mapped_column(Float)
    escalation_confidence: Mapped[float | None] = mapped_column(Float)
    # The team's column mapping (`engine.mapping.ColumnMapping`, as JSON): its own CRM fields.
    mapping: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime]


class ApiKey(Base):
    """An API key, stored only as a SHA-256 hash; the prefix finds it without a scan."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


#: The leads list's sort keys, each with an index (team_id, key, lead_id): a page is read
#: backwards along it (key DESC, lead_id DESC), the same on SQLite and PostgreSQL.
LEAD_SORT_COLUMNS = ("ml_score", "expected_commission", "scored_at", "change_points")


class LeadRow(Base):
    """The latest data seen for a lead, per team, with its latest score denormalised (the list)."""

    __tablename__ = "leads"
    __table_args__ = tuple(
        Index(f"ix_leads_team_{column}", "team_id", column, "lead_id")
        for column in LEAD_SORT_COLUMNS
    )

    team_id: Mapped[int] = mapped_column(
        ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True
    )
    lead_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    data: Mapped[dict[str, Any]]
    # The data as first scored: training rows use what was known then, never later updates.
    first_data: Mapped[dict[str, Any] | None]
    first_seen_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # The latest score, written with it by the same upsert (null only before a first score).
    name: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(254))
    source: Mapped[str | None] = mapped_column(String(60))
    ml_score: Mapped[float | None] = mapped_column(Float)
    classification: Mapped[str | None] = mapped_column(String(8))
    ml_confidence: Mapped[float | None] = mapped_column(Float)
    qualification_needed: Mapped[bool | None] = mapped_column(Boolean)
    expected_commission: Mapped[float | None] = mapped_column(Float)
    change_points: Mapped[float | None] = mapped_column(Float)  # since the previous score
    scored_at: Mapped[datetime | None]
    model_version: Mapped[str | None] = mapped_column(String(64))
    summary: Mapped[dict[str, Any] | None]  # top_question and the top two reasons


class ScoreRow(Base):
    """One score returned to a client: the lead's score history."""

    __tablename__ = "scores"
    __table_args__ = (
        Index("ix_scores_team_lead_time", "team_id", "lead_id", "scored_at"),
        Index("ix_scores_team_time", "team_id", "scored_at"),  # the stats window
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    lead_id: Mapped[str] = mapped_column(String(100))
    model_version: Mapped[str] = mapped_column(String(64))
    ml_score: Mapped[float] = mapped_column(Float)
    classification: Mapped[str] = mapped_column(String(8))
    escalation_recommended: Mapped[bool] = mapped_column(Boolean)
    cache_hit: Mapped[bool] = mapped_column(Boolean)
    scored_at: Mapped[datetime]
    result: Mapped[dict[str, Any]]


class OutcomeRow(Base):
    """What happened to a lead: the labels a team's model learns from. One row per outcome."""

    __tablename__ = "outcomes"
    __table_args__ = (
        UniqueConstraint("team_id", "lead_id", "outcome"),
        ForeignKeyConstraint(
            ["team_id", "lead_id"], ["leads.team_id", "leads.lead_id"], ondelete="CASCADE"
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    team_id: Mapped[int] = mapped_column(Integer)
    lead_id: Mapped[str] = mapped_column(String(100))
    outcome: Mapped[str] = mapped_column(String(16))
    occurred_at: Mapped[datetime]
    sale_price: Mapped[float | None] = mapped_column(Float)
    closed_at: Mapped[datetime | None]
    recorded_at: Mapped[datetime]


class ModelVersionRow(Base):
    """A model version the service has loaded, with its card."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(64))
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(String(500))
    card: Mapped[dict[str, Any]]
    registered_at: Mapped[datetime]
    # The artifact itself (tar.gz of the model directory): any worker on any host can load it.
    artifact: Mapped[bytes | None] = mapped_column(LargeBinary)
    parent_version: Mapped[str | None] = mapped_column(String(64))
    trained_by: Mapped[str | None] = mapped_column(String(200))


class ModelAliasRow(Base):
    """Which version serves (`champion`) or waits (`challenger`), globally or for one team."""

    __tablename__ = "model_aliases"

    scope: Mapped[str] = mapped_column(String(32), primary_key=True)  # "global" or a team id
    alias: Mapped[str] = mapped_column(String(16), primary_key=True)
    version: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime]


class ModelChangeRow(Base):
    """Every alias change, with who made it and why: the audit trail rollback reads."""

    __tablename__ = "model_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scope: Mapped[str] = mapped_column(String(32), index=True)
    action: Mapped[str] = mapped_column(String(16))
    from_version: Mapped[str | None] = mapped_column(String(64))
    to_version: Mapped[str] = mapped_column(String(64))
    forced: Mapped[bool] = mapped_column(Boolean)
    detail: Mapped[dict[str, Any]]
    actor: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime]


class ModelExperimentRow(Base):
    """A champion/challenger trial on live traffic for one scope; no row means none runs."""

    __tablename__ = "model_experiments"

    scope: Mapped[str] = mapped_column(String(32), primary_key=True)  # "global" or a team id
    mode: Mapped[str] = mapped_column(String(8))  # "shadow" or "split"
    share: Mapped[float] = mapped_column(Float)  # split: the challenger's share of leads
    started_at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(200))


class ShadowScoreRow(Base):
    """A score computed during an experiment but not returned: the other version's opinion."""

    __tablename__ = "shadow_scores"
    __table_args__ = (Index("ix_shadow_scores_team_lead", "team_id", "lead_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    lead_id: Mapped[str] = mapped_column(String(100))
    model_version: Mapped[str] = mapped_column(String(64))
    served_version: Mapped[str] = mapped_column(String(64))  # what the client got instead
    ml_score: Mapped[float] = mapped_column(Float)
    scored_at: Mapped[datetime]


class TrainingJobRow(Base):
    """A team's training job: running, or how it ended; any worker reads it."""

    __tablename__ = "training_jobs"
    __table_args__ = (Index("ix_training_jobs_team_started", "team_id", "started_at"),)

    job: Mapped[str] = mapped_column(String(32), primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(16))  # running | succeeded | failed
    actor: Mapped[str] = mapped_column(String(200))
    promote: Mapped[bool] = mapped_column(Boolean)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    parent_version: Mapped[str | None] = mapped_column(String(64))
    version: Mapped[str | None] = mapped_column(String(64))  # the challenger it registered
    promoted: Mapped[bool | None] = mapped_column(Boolean)
    error: Mapped[str | None] = mapped_column(String(1000))


class CrmConnectionRow(Base):
    """A team's link to one CRM account: where its webhooks come from and its scores go."""

    __tablename__ = "crm_connections"
    __table_args__ = (UniqueConstraint("provider", "account_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(16))  # gohighlevel | followupboss | webhook
    account_id: Mapped[str] = mapped_column(String(100))  # GoHighLevel's locationId
    name: Mapped[str | None] = mapped_column(String(100))
    api_base: Mapped[str | None] = mapped_column(String(500))
    # Fernet tokens (LEADSCORE_SECRET_KEY) of the write-back credentials and the signing secret.
    credentials: Mapped[bytes | None] = mapped_column(LargeBinary)
    signing_secret: Mapped[bytes | None] = mapped_column(LargeBinary)
    write_back: Mapped[dict[str, Any]]  # score_field, class_tags, commission_field, threshold
    field_mapping: Mapped[dict[str, Any]]  # CRM custom field -> lead field or attributes.<name>
    options: Mapped[dict[str, Any]]  # provider specifics (Follow Up Boss signature variant)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class CrmContactRow(Base):
    """A CRM contact known as one of the team's leads, with what was last written back to it."""

    __tablename__ = "crm_contacts"
    __table_args__ = (Index("ix_crm_contacts_team_lead", "team_id", "lead_id"),)

    connection_id: Mapped[int] = mapped_column(
        ForeignKey("crm_connections.id", ondelete="CASCADE"), primary_key=True
    )
    contact_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    team_id: Mapped[int] = mapped_column(Integer)
    lead_id: Mapped[str] = mapped_column(String(100))
    written_score: Mapped[float | None] = mapped_column(Float)
    written_class: Mapped[str | None] = mapped_column(String(8))
    # Conversations' last outbound message times and the recent messages (for a qualifier).
    state: Mapped[dict[str, Any]]
    updated_at: Mapped[datetime]


class CrmInboxRow(Base):
    """A webhook as received, stored before its 2xx; a worker processes it after."""

    __tablename__ = "crm_inbox"
    __table_args__ = (
        UniqueConstraint("provider", "event_id"),
        Index("ix_crm_inbox_status_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(16))
    event_id: Mapped[str] = mapped_column(String(200))
    connection_id: Mapped[int] = mapped_column(
        ForeignKey("crm_connections.id", ondelete="CASCADE"), index=True
    )
    team_id: Mapped[int] = mapped_column(Integer)
    event_type: Mapped[str] = mapped_column(String(60))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(12))  # pending|done|ignored|rejected|failed
    attempts: Mapped[int] = mapped_column(Integer)
    # A worker processing it holds it until then; a worker killed meanwhile lets it expire.
    lease_until: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(String(1000))
    received_at: Mapped[datetime]
    processed_at: Mapped[datetime | None]


class CrmOutboxRow(Base):
    """A score to write back to a CRM contact, committed with the score; a sender delivers it."""

    __tablename__ = "crm_outbox"
    __table_args__ = (
        Index("ix_crm_outbox_status_due", "status", "next_attempt_at"),
        Index("ix_crm_outbox_contact", "connection_id", "contact_id", "status"),
        Index("ix_crm_outbox_team_status", "team_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    team_id: Mapped[int] = mapped_column(Integer)
    connection_id: Mapped[int] = mapped_column(ForeignKey("crm_connections.id", ondelete="CASCADE"))
    contact_id: Mapped[str] = mapped_column(String(100))
    lead_id: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]]  # ml_score, classification, expected_commission, version
    status: Mapped[str] = mapped_column(String(12))  # pending|sent|failed|superseded|cancelled
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime]
    lease_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]


class EscalationRow(Base):
    """A lead whose score needs qualifying, in its team's queue: open, claimed, then resolved."""

    __tablename__ = "escalations"
    __table_args__ = (
        ForeignKeyConstraint(
            ["team_id", "lead_id"], ["leads.team_id", "leads.lead_id"], ondelete="CASCADE"
        ),
        # Once per lead while open: a lead has at most one escalation not yet resolved.
        Index(
            "uq_escalations_open_lead",
            "team_id",
            "lead_id",
            unique=True,
            sqlite_where=text("status != 'resolved'"),
            postgresql_where=text("status != 'resolved'"),
        ),
        Index("ix_escalations_team_status", "team_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    team_id: Mapped[int] = mapped_column(Integer)
    lead_id: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(10))  # open | claimed | resolved
    reasons: Mapped[list[str]] = mapped_column(JSON)
    ml_score: Mapped[float] = mapped_column(Float)  # when it opened
    ml_confidence: Mapped[float] = mapped_column(Float)
    opened_at: Mapped[datetime]
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    claimed_at: Mapped[datetime | None]
    resolved_by: Mapped[str | None] = mapped_column(String(200))  # an actor, "llm", "rescored"
    resolved_at: Mapped[datetime | None]
    answers: Mapped[dict[str, Any] | None]
    notes: Mapped[str | None] = mapped_column(String(4000))
    outcome: Mapped[str | None] = mapped_column(String(16))
    # The LLM qualifier's progress: attempts so far, when to try next, and how it ended.
    llm_attempts: Mapped[int] = mapped_column(Integer)
    llm_next_at: Mapped[datetime | None]
    # running | retry | budget | unsure | failed | resolved
    llm_state: Mapped[str | None] = mapped_column(String(16))
    updated_at: Mapped[datetime]
