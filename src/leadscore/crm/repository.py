"""Queries of CRM connections, contacts, the inbox and the outbox."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Insert, delete, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from leadscore.core.tables import (
    CrmConnectionRow,
    CrmContactRow,
    CrmInboxRow,
    CrmOutboxRow,
)


def _insert(session: AsyncSession) -> Any:
    """The dialect's INSERT, for ON CONFLICT."""
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


# Connections


async def add_connection(session: AsyncSession, row: CrmConnectionRow) -> CrmConnectionRow:
    """Insert a connection and read back its id."""
    session.add(row)
    await session.flush()
    return row


async def connection(
    session: AsyncSession, connection_id: int, team_id: int | None = None
) -> CrmConnectionRow | None:
    """One connection by id (of this team, when given)."""
    query = select(CrmConnectionRow).where(CrmConnectionRow.id == connection_id)
    if team_id is not None:
        query = query.where(CrmConnectionRow.team_id == team_id)
    return (await session.execute(query)).scalar_one_or_none()


async def connection_by_account(
    session: AsyncSession, provider: str, account_id: str
) -> CrmConnectionRow | None:
    """The connection a webhook of this provider account belongs to."""
    result = await session.execute(
        select(CrmConnectionRow).where(
            CrmConnectionRow.provider == provider, CrmConnectionRow.account_id == account_id
        )
    )
    return result.scalar_one_or_none()


async def connections(
    session: AsyncSession, team_id: int | None = None, provider: str | None = None
) -> list[CrmConnectionRow]:
    """A team's connections (or every team's), oldest first."""
    query = select(CrmConnectionRow).order_by(CrmConnectionRow.id)
    if team_id is not None:
        query = query.where(CrmConnectionRow.team_id == team_id)
    if provider is not None:
        query = query.where(CrmConnectionRow.provider == provider)
    return list((await session.execute(query)).scalars())


async def delete_connection(session: AsyncSession, row: CrmConnectionRow) -> None:
    """Remove a connection with its contacts, inbox and outbox rows."""
    for table in (CrmOutboxRow, CrmInboxRow, CrmContactRow):
        await session.execute(delete(table).where(table.connection_id == row.id))
    await session.delete(row)


# Contacts


async def contact(
    session: AsyncSession, connection_id: int, contact_id: str
) -> CrmContactRow | None:
    """A contact's link to its lead, with what was last written back."""
    return await session.get(CrmContactRow, (connection_id, contact_id))


async def contacts_of_leads(
    session: AsyncSession, keys: Sequence[tuple[int, str]]
) -> list[tuple[CrmContactRow, CrmConnectionRow]]:
    """The CRM contacts (with their connection) of these (team, lead) pairs."""
    if not keys:
        return []
    result = await session.execute(
        select(CrmContactRow, CrmConnectionRow)
        .join(CrmConnectionRow, CrmConnectionRow.id == CrmContactRow.connection_id)
        .where(tuple_(CrmContactRow.team_id, CrmContactRow.lead_id).in_(list(keys)))
    )
    return [(row[0], row[1]) for row in result]


async def delete_contact(session: AsyncSession, connection_id: int, contact_id: str) -> None:
    """Forget a contact (deleted in its CRM) and cancel what waits to be written to it."""
    await session.execute(
        update(CrmOutboxRow)
        .where(
            CrmOutboxRow.connection_id == connection_id,
            CrmOutboxRow.contact_id == contact_id,
            CrmOutboxRow.status == "pending",
        )
        .values(status="cancelled")
    )
    await session.execute(
        delete(CrmContactRow).where(
            CrmContactRow.connection_id == connection_id, CrmContactRow.contact_id == contact_id
        )
    )


# Inbox


def _store_webhooks(insert: Any) -> Insert:
    """One cached statement for any number of rows (executemany): a hot path, no ORM work."""
    table = CrmInboxRow.__table__
    statement: Insert = (
        insert(table)
        .on_conflict_do_nothing(index_elements=[table.c.provider, table.c.event_id])
        .returning(table.c.provider, table.c.event_id)
    )
    return statement


def _unique(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return list({(r["provider"], r["event_id"]): r for r in reversed(rows)}.values())


async def store_webhooks(
    session: AsyncSession, rows: Sequence[dict[str, Any]]
) -> set[tuple[str, str]]:
    """Insert received webhooks in one statement; the (provider, event id) of those that are
    new (a repeat of a stored event is skipped)."""
    result = await session.execute(_store_webhooks(_insert(session)), _unique(rows))
    return {(row[0], row[1]) for row in result}


def store_webhooks_sqlite(
    connection: Connection, rows: Sequence[dict[str, Any]]
) -> set[tuple[str, str]]:
    """`store_webhooks` on a synchronous SQLite connection (`core.db.SqliteThread`)."""
    result = connection.execute(_store_webhooks(sqlite_insert), _unique(rows))
    return {(row[0], row[1]) for row in result}


async def pending_count(session: AsyncSession) -> int:
    """Webhooks waiting to be processed, every team's."""
    result = await session.execute(
        select(func.count()).select_from(CrmInboxRow).where(CrmInboxRow.status == "pending")
    )
    return int(result.scalar_one())


async def backlog(session: AsyncSession) -> dict[str, tuple[int, datetime | None]]:
    """Every team's waiting webhooks and write-backs: how many, and when the oldest came."""
    inbox = await session.execute(
        select(func.count(), func.min(CrmInboxRow.received_at)).where(
            CrmInboxRow.status == "pending"
        )
    )
    outbox = await session.execute(
        select(func.count(), func.min(CrmOutboxRow.created_at)).where(
            CrmOutboxRow.status == "pending"
        )
    )
    return {
        name: (int(count), oldest)
        for name, (count, oldest) in (("inbox", inbox.one()), ("outbox", outbox.one()))
    }


def _webhook_due(now: datetime) -> ColumnElement[bool]:
    return (CrmInboxRow.status == "pending") & (
        (CrmInboxRow.lease_until.is_(None)) | (CrmInboxRow.lease_until < now)
    )


async def any_webhook_due(session: AsyncSession, now: datetime) -> bool:
    """Whether a claim would take something: a read, so an idle worker takes no write lock."""
    result = await session.execute(select(CrmInboxRow.id).where(_webhook_due(now)).limit(1))
    return result.first() is not None


async def claim_webhooks(
    session: AsyncSession, now: datetime, lease_until: datetime, limit: int
) -> list[CrmInboxRow]:
    """Take up to `limit` pending webhooks no other worker holds, oldest first, until
    `lease_until`: one statement, so two workers never take the same one."""
    free = (
        select(CrmInboxRow.id)
        .where(_webhook_due(now))
        .order_by(CrmInboxRow.id)
        .limit(limit)
        .scalar_subquery()
    )
    result = await session.execute(
        update(CrmInboxRow)
        .where(CrmInboxRow.id.in_(free), _webhook_due(now))
        .values(lease_until=lease_until, attempts=CrmInboxRow.attempts + 1)
        .returning(CrmInboxRow)
        .execution_options(synchronize_session=False)
    )
    return sorted(result.scalars(), key=lambda row: row.id)


async def release_webhooks(
    session: AsyncSession, ids: Sequence[int], lease_until: datetime
) -> None:
    """Give back webhooks still pending under this lease (not under a later one): the next
    step takes them again instead of waiting for the lease to expire."""
    await session.execute(
        update(CrmInboxRow)
        .where(
            CrmInboxRow.id.in_(ids),
            CrmInboxRow.status == "pending",
            CrmInboxRow.lease_until == lease_until,
        )
        .values(lease_until=None)
        .execution_options(synchronize_session=False)
    )


async def finish_webhook(
    session: AsyncSession, row_id: int, status: str, error: str | None, now: datetime
) -> bool:
    """Mark a webhook processed (done, ignored, failed); False if another worker did first."""
    result = await session.execute(
        update(CrmInboxRow)
        .where(CrmInboxRow.id == row_id, CrmInboxRow.status == "pending")
        .values(status=status, error=error, processed_at=now, lease_until=None)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def inbox(
    session: AsyncSession, team_id: int, status: str | None, limit: int
) -> list[CrmInboxRow]:
    """A team's latest webhooks, newest first."""
    query = select(CrmInboxRow).where(CrmInboxRow.team_id == team_id)
    if status is not None:
        query = query.where(CrmInboxRow.status == status)
    result = await session.execute(query.order_by(CrmInboxRow.id.desc()).limit(limit))
    return list(result.scalars())


# Outbox


async def enqueue_write_back(session: AsyncSession, row: CrmOutboxRow) -> None:
    """Queue a write-back; an older one still waiting for the same contact is superseded."""
    await session.execute(
        update(CrmOutboxRow)
        .where(
            CrmOutboxRow.connection_id == row.connection_id,
            CrmOutboxRow.contact_id == row.contact_id,
            CrmOutboxRow.status == "pending",
        )
        .values(status="superseded", lease_until=None)
        .execution_options(synchronize_session=False)
    )
    session.add(row)


def _write_back_due(now: datetime) -> ColumnElement[bool]:
    return (
        (CrmOutboxRow.status == "pending")
        & (CrmOutboxRow.next_attempt_at <= now)
        & ((CrmOutboxRow.lease_until.is_(None)) | (CrmOutboxRow.lease_until < now))
    )


async def any_write_back_due(session: AsyncSession, now: datetime) -> bool:
    """Whether a claim would take something: a read, so an idle sender takes no write lock."""
    result = await session.execute(select(CrmOutboxRow.id).where(_write_back_due(now)).limit(1))
    return result.first() is not None


async def claim_write_backs(
    session: AsyncSession, now: datetime, lease_until: datetime, limit: int
) -> list[CrmOutboxRow]:
    """Take up to `limit` due write-backs no other worker holds, oldest first."""
    due = _write_back_due(now)
    free = (
        select(CrmOutboxRow.id).where(due).order_by(CrmOutboxRow.id).limit(limit).scalar_subquery()
    )
    result = await session.execute(
        update(CrmOutboxRow)
        .where(CrmOutboxRow.id.in_(free), due)
        .values(lease_until=lease_until)
        .returning(CrmOutboxRow)
        .execution_options(synchronize_session=False)
    )
    return sorted(result.scalars(), key=lambda row: row.id)


async def settle_write_back(session: AsyncSession, row_id: int, **values: Any) -> None:
    """Record how a delivery went (sent, retry later, failed) and release it."""
    await session.execute(
        update(CrmOutboxRow)
        .where(CrmOutboxRow.id == row_id)
        .values(lease_until=None, **values)
        .execution_options(synchronize_session=False)
    )


async def outbox(
    session: AsyncSession, team_id: int, status: str | None, limit: int
) -> list[CrmOutboxRow]:
    """A team's latest write-backs, newest first."""
    query = select(CrmOutboxRow).where(CrmOutboxRow.team_id == team_id)
    if status is not None:
        query = query.where(CrmOutboxRow.status == status)
    result = await session.execute(query.order_by(CrmOutboxRow.id.desc()).limit(limit))
    return list(result.scalars())


async def retry_write_backs(
    session: AsyncSession, team_id: int, ids: Sequence[int] | None, now: datetime
) -> int:
    """Put failed write-backs (these, or all of the team's) back in the queue, now."""
    query = update(CrmOutboxRow).where(
        CrmOutboxRow.team_id == team_id, CrmOutboxRow.status == "failed"
    )
    if ids is not None:
        query = query.where(CrmOutboxRow.id.in_(list(ids)))
    result = await session.execute(
        query.values(
            status="pending", attempts=0, next_attempt_at=now, lease_until=None
        ).execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
