"""CRM connections, contacts, inbox and outbox; the qualification queue (escalations)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 18:03:07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "crm_connections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("account_id", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=True),
        sa.Column("api_base", sa.String(length=500), nullable=True),
        sa.Column("credentials", sa.LargeBinary(), nullable=True),
        sa.Column("signing_secret", sa.LargeBinary(), nullable=True),
        sa.Column("write_back", sa.JSON(), nullable=False),
        sa.Column("field_mapping", sa.JSON(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["teams.id"],
            name=op.f("fk_crm_connections_team_id_teams"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_connections")),
        sa.UniqueConstraint("provider", "account_id", name=op.f("uq_crm_connections_provider")),
    )
    with op.batch_alter_table("crm_connections", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_crm_connections_team_id"), ["team_id"], unique=False)

    op.create_table(
        "crm_contacts",
        sa.Column("connection_id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.String(length=100), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("lead_id", sa.String(length=100), nullable=False),
        sa.Column("written_score", sa.Float(), nullable=True),
        sa.Column("written_class", sa.String(length=8), nullable=True),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["crm_connections.id"],
            name=op.f("fk_crm_contacts_connection_id_crm_connections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("connection_id", "contact_id", name=op.f("pk_crm_contacts")),
    )
    with op.batch_alter_table("crm_contacts", schema=None) as batch_op:
        batch_op.create_index("ix_crm_contacts_team_lead", ["team_id", "lead_id"], unique=False)

    op.create_table(
        "crm_inbox",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("connection_id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("event_type", sa.String(length=60), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.String(length=1000), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["crm_connections.id"],
            name=op.f("fk_crm_inbox_connection_id_crm_connections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_inbox")),
        sa.UniqueConstraint("provider", "event_id", name=op.f("uq_crm_inbox_provider")),
    )
    with op.batch_alter_table("crm_inbox", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_crm_inbox_connection_id"), ["connection_id"], unique=False
        )
        batch_op.create_index("ix_crm_inbox_status_id", ["status", "id"], unique=False)

    op.create_table(
        "crm_outbox",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("connection_id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.String(length=100), nullable=False),
        sa.Column("lead_id", sa.String(length=100), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=1000), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["crm_connections.id"],
            name=op.f("fk_crm_outbox_connection_id_crm_connections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_outbox")),
    )
    with op.batch_alter_table("crm_outbox", schema=None) as batch_op:
        batch_op.create_index(
            "ix_crm_outbox_contact", ["connection_id", "contact_id", "status"], unique=False
        )
        batch_op.create_index(
            "ix_crm_outbox_status_due", ["status", "next_attempt_at"], unique=False
        )
        batch_op.create_index(
            "ix_crm_outbox_team_status", ["team_id", "status", "id"], unique=False
        )

    op.create_table(
        "escalations",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("lead_id", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("ml_score", sa.Float(), nullable=False),
        sa.Column("ml_confidence", sa.Float(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_by", sa.String(length=200), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.String(length=200), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answers", sa.JSON(), nullable=True),
        sa.Column("notes", sa.String(length=4000), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("llm_attempts", sa.Integer(), nullable=False),
        sa.Column("llm_next_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("llm_state", sa.String(length=16), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id", "lead_id"],
            ["leads.team_id", "leads.lead_id"],
            name=op.f("fk_escalations_team_id_leads"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_escalations")),
    )
    with op.batch_alter_table("escalations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_escalations_team_status", ["team_id", "status", "id"], unique=False
        )
        batch_op.create_index(
            "uq_escalations_open_lead",
            ["team_id", "lead_id"],
            unique=True,
            sqlite_where=sa.text("status != 'resolved'"),
            postgresql_where=sa.text("status != 'resolved'"),
        )


def downgrade() -> None:

    with op.batch_alter_table("escalations", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_escalations_open_lead",
            sqlite_where=sa.text("status != 'resolved'"),
            postgresql_where=sa.text("status != 'resolved'"),
        )
        batch_op.drop_index("ix_escalations_team_status")

    op.drop_table("escalations")
    with op.batch_alter_table("crm_outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_crm_outbox_team_status")
        batch_op.drop_index("ix_crm_outbox_status_due")
        batch_op.drop_index("ix_crm_outbox_contact")

    op.drop_table("crm_outbox")
    with op.batch_alter_table("crm_inbox", schema=None) as batch_op:
        batch_op.drop_index("ix_crm_inbox_status_id")
        batch_op.drop_index(batch_op.f("ix_crm_inbox_connection_id"))

    op.drop_table("crm_inbox")
    with op.batch_alter_table("crm_contacts", schema=None) as batch_op:
        batch_op.drop_index("ix_crm_contacts_team_lead")

    op.drop_table("crm_contacts")
    with op.batch_alter_table("crm_connections", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_crm_connections_team_id"))

    op.drop_table("crm_connections")
