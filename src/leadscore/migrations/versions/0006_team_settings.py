"""team settings: class and escalation thresholds (null = the server default)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 09:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

COLUMNS = ("hot_threshold", "warm_threshold", "escalation_confidence")


def upgrade() -> None:
    with op.batch_alter_table("teams") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("teams") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
