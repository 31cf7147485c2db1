"""The inbox worker and the outbox sender on a real database, their collaborators replaced:
what a step does when the database fails under it or a connection's secrets do not open."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadscore.auth import repository as auth_repo
from leadscore.auth.principal import Principal
from leadscore.core.db import transaction
from leadscore.core.ratelimit import MemoryRateLimiter
from leadscore.core.tables import CrmConnectionRow, CrmInboxRow, CrmOutboxRow
from leadscore.crm import repository as repo
from leadscore.crm.connections import Connection
from leadscore.crm.inbox import (
    FLOOD_BATCH,
    LEASE_SECONDS,
    MAX_ATTEMPTS,
    YIELD_MAX_SECONDS,
    Activity,
    InboxWorker,
)
from leadscore.crm.outbox import OutboxSender
from leadscore.crm.providers.base import Delivery
from leadscore.crm.providers.gohighlevel import GoHighLevel
from leadscore.crm.schemas import Options, WriteBack
from leadscore.crm.secrets import SecretUnreadableError
from leadscore.crm.sync import Applied
from tests.crm.conftest import example


class Connections:
    """The connections the rows belong to; the `sealed` ones' secrets do not open."""

    def __init__(self, *connections: Connection, sealed: tuple[int, ...] = ()) -> None:
        self.connections = {c.id: c for c in connections}
        self.sealed = sealed

    async def by_id(self, connection_id: int) -> Connection | None:
        if connection_id in self.sealed:
            raise SecretUnreadableError("sealed with a key no longer configured")
        return self.connections.get(connection_id)


class Teams:
    async def team_principal(self, team_id: int) -> Principal:
        return Principal(0, team_id, "acme", "system")


class Sync:
    """Fails as a lost database connection does, `failures` times, then applies."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.applied: list[str] = []

    async def apply(
        self, session: AsyncSession, principal: Principal, connection: Connection,
        provider: Any, changes: list[Any],
    ) -> Applied:  # fmt: skip
        if self.failures:
            self.failures -= 1
            raise ConnectionResetError("the database closed the connection")
        self.applied.extend(change.contact_id for change in changes)
        return Applied()


class Receiver:
    """What the worker reads of this worker's receiver."""

    def __init__(self) -> None:
        self.activity = Activity()
        self.pending = 0


def _worker(
    sessions: async_sessionmaker[AsyncSession],
    connections: Connections,
    sync: Sync,
    http: httpx.AsyncClient,
    receiver: Receiver | None = None,
) -> InboxWorker:
    """A worker on the real database, the rest replaced."""
    return InboxWorker(
        sessions, connections, Teams(), sync,  # type: ignore[arg-type]
        {"gohighlevel": GoHighLevel()}, http, receiver,  # type: ignore[arg-type]
    )  # fmt: skip


@contextlib.asynccontextmanager
async def _listening(
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[tuple[InboxWorker, Receiver]]:
    """A worker beside its receiver, two webhooks of one connection pending."""
    connection = await _seed(sessions, 2)
    receiver = Receiver()
    async with httpx.AsyncClient() as http:
        yield _worker(sessions, Connections(connection), Sync(failures=0), http, receiver), receiver


async def _seed(
    sessions: async_sessionmaker[AsyncSession], count: int, team_name: str = "acme"
) -> Connection:
    now = datetime.now(UTC)
    async with transaction(sessions) as session:
        team = await auth_repo.create_team(session, team_name, now)
        row = CrmConnectionRow(
            team_id=team.id, provider="gohighlevel", account_id=f"loc-{team_name}", name=None,
            api_base=None, credentials=None, signing_secret=None, write_back={},
            field_mapping={}, options={}, created_at=now, updated_at=now,
        )  # fmt: skip
        session.add(row)
        await session.flush()
        for i in range(count):
            body = orjson.dumps(example("ContactCreate", locationId="loc1", id=f"c{i}"))
            session.add(CrmInboxRow(
                provider="gohighlevel", event_id=f"wh-{team_name}-{i}", connection_id=row.id,
                team_id=team.id, event_type="ContactCreate", body=body, status="pending",
                attempts=0, lease_until=None, error=None, received_at=now, processed_at=None,
            ))  # fmt: skip
    return Connection(
        id=row.id, team_id=team.id, provider="gohighlevel", account_id="loc1", api_base=None,
        credentials={}, signing_secret=None, write_back=WriteBack(), field_mapping={},
        options=Options(),
    )  # fmt: skip


async def _inbox(sessions: async_sessionmaker[AsyncSession]) -> list[CrmInboxRow]:
    async with sessions() as session:
        return list((await session.scalars(select(CrmInboxRow).order_by(CrmInboxRow.id))).all())


@pytest.mark.parametrize("count", [1, 3])  # applied alone; applied together
async def test_webhooks_taken_when_the_database_fails_are_given_back_for_the_next_step(
    sessions: async_sessionmaker[AsyncSession], count: int
) -> None:
    connection = await _seed(sessions, count)
    sync = Sync(failures=1)
    async with httpx.AsyncClient() as http:
        worker = _worker(sessions, Connections(connection), sync, http)
        with pytest.raises(ConnectionResetError):
            await worker.step()
        rows = await _inbox(sessions)
        assert [(r.status, r.lease_until, r.attempts) for r in rows] == [
            ("pending", None, 1)
        ] * count
        await worker.step()  # at once: no lease of 30 s to wait for
    rows = await _inbox(sessions)
    assert [(r.status, r.attempts) for r in rows] == [("done", 2)] * count
    assert sync.applied == [f"c{i}" for i in range(count)]


async def test_a_release_gives_back_only_its_own_lease_and_never_a_finished_webhook(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await _seed(sessions, 3)
    now = datetime.now(UTC)
    ours = now + timedelta(seconds=LEASE_SECONDS)
    async with transaction(sessions) as session:
        taken = await repo.claim_webhooks(session, now, ours, 3)
    first, second, third = (row.id for row in taken)
    later = now + timedelta(seconds=2 * LEASE_SECONDS)
    async with transaction(sessions) as session:
        assert await repo.finish_webhook(session, first, "done", None, now)
        # Our lease expired meanwhile and another worker took the third one.
        await session.execute(
            update(CrmInboxRow).where(CrmInboxRow.id == third).values(lease_until=later)
        )
    async with transaction(sessions) as session:
        await repo.release_webhooks(session, [first, second, third], ours)
    leases = {row.id: (row.status, row.lease_until) for row in await _inbox(sessions)}
    assert leases[first] == ("done", None)
    assert leases[second] == ("pending", None)
    assert leases[third][0] == "pending"
    assert leases[third][1] is not None
    assert leases[third][1].replace(tzinfo=UTC) == later.replace(tzinfo=UTC)


async def test_the_worker_waits_while_webhooks_arrive_and_applies_them_in_the_pause(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with _listening(sessions) as (worker, receiver):
        with receiver.activity.receiving():  # a webhook being acknowledged
            step = asyncio.create_task(worker.step())
            await asyncio.sleep(YIELD_MAX_SECONDS / 3)
            assert not step.done()
            assert [(r.status, r.attempts) for r in await _inbox(sessions)] == [("pending", 0)] * 2
        await asyncio.wait_for(step, 5)
    assert [r.status for r in await _inbox(sessions)] == ["done"] * 2
    assert receiver.pending == 2  # counted before the batch was taken


async def test_under_a_steady_flood_the_worker_still_applies_a_small_batch(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with _listening(sessions) as (worker, receiver):
        with receiver.activity.receiving():  # never a pause
            started = time.monotonic()
            more = await asyncio.wait_for(worker.step(), YIELD_MAX_SECONDS + 5)
            waited = time.monotonic() - started
        assert waited >= YIELD_MAX_SECONDS
        assert more  # the rest waits for the next step
        statuses = [r.status for r in await _inbox(sessions)]
        assert statuses == ["done"] * FLOOD_BATCH + ["pending"] * (2 - FLOOD_BATCH)
        await asyncio.wait_for(worker.step(), 5)  # the flood is over: the rest at once
    assert [r.status for r in await _inbox(sessions)] == ["done"] * 2


async def test_a_connection_whose_secrets_do_not_open_holds_back_only_its_own_webhooks(
    sessions: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
) -> None:
    sealed = await _seed(sessions, 2, "globex")  # stored before the key was changed
    connection = await _seed(sessions, 2)
    sync = Sync(failures=0)
    async with httpx.AsyncClient() as http:
        worker = _worker(sessions, Connections(sealed, connection, sealed=(sealed.id,)), sync, http)
        with caplog.at_level(logging.WARNING, logger="leadscore.crm.inbox"):
            await worker.step()
    rows = {(r.connection_id, r.event_id): r.status for r in await _inbox(sessions)}
    assert [s for (c, _), s in sorted(rows.items()) if c == connection.id] == ["done"] * 2
    assert [s for (c, _), s in sorted(rows.items()) if c == sealed.id] == ["pending"] * 2
    assert sync.applied == ["c0", "c1"]
    # An operator's fix (the old key), said once per webhook and attempt, without a traceback.
    waiting = [r for r in caplog.records if "waits for its connection's secrets" in r.message]
    assert len(waiting) == 2
    assert not any(r.exc_info for r in caplog.records)


async def test_a_webhook_whose_secrets_never_open_fails_on_its_last_attempt(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    sealed = await _seed(sessions, 1, "globex")
    async with transaction(sessions) as session:  # every attempt but the last one spent
        await session.execute(update(CrmInboxRow).values(attempts=MAX_ATTEMPTS - 1))
    async with httpx.AsyncClient() as http:
        worker = _worker(sessions, Connections(sealed, sealed=(sealed.id,)), Sync(0), http)
        await worker.step()
    [row] = await _inbox(sessions)
    assert (row.status, row.attempts) == ("failed", MAX_ATTEMPTS)
    assert row.error is not None
    assert "SecretUnreadableError" in row.error


class Contacts:
    """A CRM whose contacts API takes every write-back."""

    name = "gohighlevel"
    rate_limit = (100, 1.0)
    requests_per_write_back = 1

    def __init__(self) -> None:
        self.written: list[str] = []

    async def write_back(
        self, connection: Connection, contact_id: str, payload: dict[str, Any], http: Any
    ) -> Delivery:
        self.written.append(contact_id)
        return Delivery("sent")


async def test_a_write_back_whose_secrets_do_not_open_fails_visibly_and_the_others_are_sent(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    sealed = await _seed(sessions, 0, "globex")
    connection = await _seed(sessions, 0)
    now = datetime.now(UTC)
    async with transaction(sessions) as session:
        for owner, contact in ((sealed, "s1"), (connection, "c1")):
            session.add(CrmOutboxRow(
                team_id=owner.team_id, connection_id=owner.id, contact_id=contact,
                lead_id=f"ghl-{contact}", payload={"ml_score": 50}, status="pending",
                attempts=0, next_attempt_at=now, lease_until=None, last_error=None,
                created_at=now, sent_at=None,
            ))  # fmt: skip
    crm = Contacts()
    async with httpx.AsyncClient() as http:
        sender = OutboxSender(
            sessions, Connections(sealed, connection, sealed=(sealed.id,)),  # type: ignore[arg-type]
            {"gohighlevel": crm}, http, MemoryRateLimiter(),  # type: ignore[dict-item]
            base_seconds=1.0, max_seconds=60.0, max_attempts=5,
        )  # fmt: skip
        await sender.step()
    async with sessions() as session:
        rows = {r.contact_id: r for r in await session.scalars(select(CrmOutboxRow))}
    assert crm.written == ["c1"]
    assert rows["c1"].status == "sent"
    assert rows["s1"].status == "failed"
    assert rows["s1"].last_error == "sealed with a key no longer configured"
