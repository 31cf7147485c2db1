"""The CRM domain as the routes and the app see it: connections, the receiver, both queues."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from leadscore.auth.principal import Principal
from leadscore.core.db import after_commit
from leadscore.crm import repository as repo
from leadscore.crm.connections import ConnectionService
from leadscore.crm.inbox import InboxWorker, WebhookReceiver
from leadscore.crm.outbox import OutboxSender
from leadscore.crm.schemas import InboxEntry, OutboxEntry


@dataclass
class CrmService:
    """What a worker runs of the CRM loop."""

    connections: ConnectionService
    receiver: WebhookReceiver
    inbox_worker: InboxWorker
    sender: OutboxSender
    wake_sender: Callable[[], None]

    async def inbox(
        self, session: AsyncSession, principal: Principal, status: str | None, limit: int
    ) -> list[InboxEntry]:
        """The team's latest webhooks."""
        rows = await repo.inbox(session, principal.team_id, status, limit)
        return [InboxEntry.model_validate(row, from_attributes=True) for row in rows]

    async def outbox(
        self, session: AsyncSession, principal: Principal, status: str | None, limit: int
    ) -> list[OutboxEntry]:
        """The team's latest write-backs."""
        rows = await repo.outbox(session, principal.team_id, status, limit)
        return [OutboxEntry.model_validate(row, from_attributes=True) for row in rows]

    async def backlog(self, session: AsyncSession) -> dict[str, tuple[int, datetime | None]]:
        """Every team's waiting webhooks (inbox) and write-backs (outbox): count, oldest."""
        return await repo.backlog(session)

    async def retry(
        self, session: AsyncSession, principal: Principal, ids: Sequence[int] | None
    ) -> int:
        """Queue failed write-backs again; the sender takes them once committed."""
        count = await repo.retry_write_backs(session, principal.team_id, ids, datetime.now(UTC))
        if count:
            after_commit(session, self.wake_sender)
        return count

    async def conversation(
        self, session: AsyncSession, team_id: int, lead_id: str
    ) -> list[dict[str, Any]]:
        """The lead's recent CRM messages, oldest first (for a qualifier to read)."""
        messages: list[dict[str, Any]] = []
        for contact, _ in await repo.contacts_of_leads(session, [(team_id, lead_id)]):
            messages += contact.state.get("messages") or []
        return sorted(messages, key=lambda m: str(m.get("at")))
