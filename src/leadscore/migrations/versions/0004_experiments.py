"""champion/challenger experiments and shadow scores

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 09:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import leadscore.core.tables

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_experiments",
        sa.Column("scope", sa.String(length=32), nullable=False),
        sa.Column("mode", sa.String(length=8), nullable=False),
        sa.Column("share", sa.Float(), nullable=False),
        sa.Column("started_at", leadscore.core.tables.UtcDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("scope", name=op.f("pk_model_experiments")),
    )
    op.create_table(
        "shadow_scores",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("lead_id", sa.String(length=100), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("served_version", sa.String(length=64), nullable=False),
        sa.Column("ml_score", sa.Float(), nullable=False),
        sa.Column("scored_at", leadscore.core.tables.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["teams.id"],
            name=op.f("fk_shadow_scores_team_id_teams"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shadow_scores")),
    )
    with op.batch_alter_table("shadow_scores", schema=None) as batch_op:
        batch_op.create_index("ix_shadow_scores_team_lead", ["team_id", "lead_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("shadow_scores", schema=None) as batch_op:
        batch_op.drop_index("ix_shadow_scores_team_lead")
    op.drop_table("shadow_scores")
    op.drop_table("model_experiments")
