"""leads: the latest score denormalised for the leads list, its sort indexes, backfilled

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 15:00:00
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _new_columns() -> tuple[sa.Column[Any], ...]:
    """The added columns (fresh objects: a Column belongs to one table)."""
    return (
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("email", sa.String(254), nullable=True),
        sa.Column("source", sa.String(60), nullable=True),
        sa.Column("ml_score", sa.Float(), nullable=True),
        sa.Column("classification", sa.String(8), nullable=True),
        sa.Column("ml_confidence", sa.Float(), nullable=True),
        sa.Column("qualification_needed", sa.Boolean(), nullable=True),
        sa.Column("expected_commission", sa.Float(), nullable=True),
        sa.Column("change_points", sa.Float(), nullable=True),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("model_version", sa.String(64), nullable=True),
        sa.Column("summary", sa.JSON(), nullable=True),
    )


SORT_COLUMNS = ("ml_score", "expected_commission", "scored_at", "change_points")
CHUNK = 1000


def _columns(data: dict[str, Any], score: Any) -> dict[str, Any]:
    """As `scoring.repository.latest_columns` at this revision (a migration stays frozen)."""
    result = score["result"] or {}
    ask_next = (result.get("qualification") or {}).get("ask_next") or []
    return {
        "name": data.get("name"),
        "email": data.get("email"),
        "source": data.get("source"),
        "ml_score": score["ml_score"],
        "classification": score["classification"],
        "ml_confidence": result.get("ml_confidence"),
        "qualification_needed": score["escalation_recommended"],
        "expected_commission": (result.get("commission") or {}).get("expected_commission"),
        "scored_at": score["scored_at"],
        "model_version": score["model_version"],
        "summary": {
            "top_question": {k: ask_next[0][k] for k in ("field", "question")}
            if ask_next
            else None,
            "reasons": (result.get("reasons") or [])[:2],
        },
    }


def _backfill() -> None:
    """Each lead's latest score (and the points since its previous one) from the history."""
    bind = op.get_bind()
    meta = sa.MetaData()
    leads = sa.Table("leads", meta, autoload_with=bind)
    scores = sa.Table("scores", meta, autoload_with=bind)
    ranked = sa.select(
        scores.c.team_id, scores.c.lead_id, scores.c.ml_score, scores.c.classification,
        scores.c.escalation_recommended, scores.c.model_version, scores.c.scored_at,
        scores.c.result,
        sa.func.row_number().over(
            partition_by=(scores.c.team_id, scores.c.lead_id),
            order_by=(scores.c.scored_at.desc(), scores.c.id.desc()),
        ).label("rank"),
    ).subquery()  # fmt: skip
    last_two = (
        sa.select(ranked, leads.c.data)
        .join(
            leads, sa.and_(leads.c.team_id == ranked.c.team_id, leads.c.lead_id == ranked.c.lead_id)
        )
        .where(ranked.c.rank <= 2)
        .order_by(ranked.c.team_id, ranked.c.lead_id, ranked.c.rank)
    )
    update = (
        leads.update()
        .where(leads.c.team_id == sa.bindparam("k_team"), leads.c.lead_id == sa.bindparam("k_lead"))
        .values({c.name: sa.bindparam(c.name) for c in _new_columns()})
    )
    pending: list[dict[str, Any]] = []
    latest: dict[str, Any] | None = None
    for row in bind.execute(last_two).mappings():  # rows of one lead are adjacent, newest first
        if row["rank"] == 1:
            if len(pending) >= CHUNK:  # every lead pending is complete: its rows came first
                bind.execute(update, pending)
                pending = []
            latest = {
                "k_team": row["team_id"], "k_lead": row["lead_id"],
                **_columns(row["data"] or {}, row), "change_points": None,
            }  # fmt: skip
            pending.append(latest)
        elif latest is not None:
            latest["change_points"] = round(latest["ml_score"] - row["ml_score"], 2)
    if pending:
        bind.execute(update, pending)


def upgrade() -> None:
    with op.batch_alter_table("leads") as batch:
        for column in _new_columns():
            batch.add_column(column)
    _backfill()
    for name in SORT_COLUMNS:
        op.create_index(f"ix_leads_team_{name}", "leads", ["team_id", name, "lead_id"])
    op.create_index("ix_scores_team_time", "scores", ["team_id", "scored_at"])


def downgrade() -> None:
    op.drop_index("ix_scores_team_time", table_name="scores")
    for name in reversed(SORT_COLUMNS):
        op.drop_index(f"ix_leads_team_{name}", table_name="leads")
    with op.batch_alter_table("leads") as batch:
        for column in reversed(_new_columns()):
            batch.drop_column(column.name)
