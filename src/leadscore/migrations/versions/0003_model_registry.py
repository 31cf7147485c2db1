"""model registry: artifacts, aliases, change history

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 11:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import leadscore.core.tables

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("artifact", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("parent_version", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("trained_by", sa.String(length=200), nullable=True))
    op.create_table(
        "model_aliases",
        sa.Column("scope", sa.String(length=32), nullable=False),
        sa.Column("alias", sa.String(length=16), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("updated_at", leadscore.core.tables.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope", "alias", name=op.f("pk_model_aliases")),
    )
    op.create_table(
        "model_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(length=32), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("from_version", sa.String(length=64), nullable=True),
        sa.Column("to_version", sa.String(length=64), nullable=False),
        sa.Column("forced", sa.Boolean(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("at", leadscore.core.tables.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_changes")),
    )
    with op.batch_alter_table("model_changes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_model_changes_scope"), ["scope"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("model_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_model_changes_scope"))
    op.drop_table("model_changes")
    op.drop_table("model_aliases")
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.drop_column("trained_by")
        batch_op.drop_column("parent_version")
        batch_op.drop_column("artifact")
