"""The inbox worker on a real database, its collaborators replaced: what a step does with the
webhooks it took when the database fails under it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadscore.auth import repository as auth_repo
from leadscore.auth.principal import Principal
from leadscore.core.db import transaction
from leadscore.core.tables import CrmConnectionRow, CrmInboxRow
from leadscore.crm import repository as repo
from leadscore.crm.connections import Connection
from leadscore.crm.inbox import LEASE_SECONDS, InboxWorker
from leadscore.crm.providers.gohighlevel import GoHighLevel
from leadscore.crm.schemas import Options, WriteBack
from leadscore.crm.sync import Applied
from tests.crm.conftest import example


class Connections:
    """The one connection the rows belong to."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    async def by_id(self, connection_id: int) -> Connection | None:
        return self.connection if connection_id == self.connection.id else None


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


async def _seed(sessions: async_sessionmaker[AsyncSession], count: int) -> Connection:
    now = datetime.now(UTC)
    async with transaction(sessions) as session:
        team = await auth_repo.create_team(session, "acme", now)
        row = CrmConnectionRow(
            team_id=team.id, provider="gohighlevel", account_id="loc1", name=None,
            api_base=None, credentials=None, signing_secret=None, write_back={},
            field_mapping={}, options={}, created_at=now, updated_at=now,
        )  # fmt: skip
        session.add(row)
        await session.flush()
        for i in range(count):
            body = orjson.dumps(example("ContactCreate", locationId="loc1", id=f"c{i}"))
            session.add(CrmInboxRow(
                provider="gohighlevel", event_id=f"wh-{i}", connection_id=row.id,
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
        worker = InboxWorker(
            sessions, Connections(connection), Teams(), sync,  # type: ignore[arg-type]
            {"gohighlevel": GoHighLevel()}, http,
        )  # fmt: skip
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
            CrmInboxRow.__table__.update().where(CrmInboxRow.id == third).values(lease_until=later)
        )
    async with transaction(sessions) as session:
        await repo.release_webhooks(session, [first, second, third], ours)
    leases = {row.id: (row.status, row.lease_until) for row in await _inbox(sessions)}
    assert leases[first] == ("done", None)
    assert leases[second] == ("pending", None)
    assert leases[third][0] == "pending"
    assert leases[third][1] is not None
    assert leases[third][1].replace(tzinfo=UTC) == later.replace(tzinfo=UTC)
