"""outcomes, and each lead's data as first scored

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 11:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import leadscore.core.tables

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.add_column(sa.Column("first_data", sa.JSON(), nullable=True))
    op.create_table(
        "outcomes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True,
                  nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("lead_id", sa.String(length=100), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("occurred_at", leadscore.core.tables.UtcDateTime(timezone=True), nullable=False),
        sa.Column("sale_price", sa.Float(), nullable=True),
        sa.Column("closed_at", leadscore.core.tables.UtcDateTime(timezone=True), nullable=True),
        sa.Column("recorded_at", leadscore.core.tables.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id", "lead_id"], ["leads.team_id", "leads.lead_id"],
            name=op.f("fk_outcomes_team_id_leads"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outcomes")),
        sa.UniqueConstraint("team_id", "lead_id", "outcome", name=op.f("uq_outcomes_team_id")),
    )  # fmt: skip


def downgrade() -> None:
    op.drop_table("outcomes")
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.drop_column("first_data")
