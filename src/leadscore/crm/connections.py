"""A team's CRM connections: created by its admins, read by the webhook routes and workers."""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadscore.auth.principal import Principal
from leadscore.core.errors import LeadScoreError, NotFoundError
from leadscore.core.tables import CrmConnectionRow
from leadscore.crm import repository as repo
from leadscore.crm.schemas import (
    DEFAULT_API_BASE,
    ConnectionCreated,
    ConnectionIn,
    ConnectionOut,
    ConnectionPatch,
    Options,
    WriteBack,
    check_credentials,
)
from leadscore.crm.secrets import SecretBox, SecretUnreadableError

log = logging.getLogger(__name__)

#: How long a worker trusts a connection it read (a change elsewhere applies within it).
CACHE_SECONDS: Final = 5.0


class ConnectionConflictError(LeadScoreError):
    """That CRM account is connected already (to this team or another)."""

    status_code = 409
    code = "conflict"


class InvalidCredentialsError(LeadScoreError):
    """Credentials that are not the provider's."""

    status_code = 422
    code = "validation_error"


@dataclass(frozen=True)
class Connection:
    """A connection as the webhook routes and the workers use it, its secrets opened."""

    id: int
    team_id: int
    provider: str
    account_id: str
    api_base: str | None
    credentials: dict[str, str]
    signing_secret: str | None
    write_back: WriteBack
    field_mapping: dict[str, str]
    options: Options


def webhook_path(row: CrmConnectionRow) -> str:
    """The URL path this connection's CRM posts to."""
    if row.provider == "webhook":
        return f"/api/v1/crm/webhook/{row.id}"
    return f"/api/v1/crm/{row.provider}/webhook"


def _out(row: CrmConnectionRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "provider": row.provider,
        "account_id": row.account_id,
        "name": row.name,
        "api_base": row.api_base,
        "write_back": WriteBack.model_validate(row.write_back),
        "field_mapping": row.field_mapping,
        "options": Options.model_validate(row.options),
        "has_credentials": row.credentials is not None,
        "webhook_path": webhook_path(row),
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


class ConnectionService:
    """Connections per team; secrets sealed with the server's key and never shown again."""

    def __init__(self, box: SecretBox, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.box = box
        self.sessions = sessions
        self._cache: dict[tuple[str, str] | int, tuple[float, Connection]] = {}

    async def create(
        self, session: AsyncSession, principal: Principal, body: ConnectionIn
    ) -> ConnectionCreated:
        """Connect a CRM account to the caller's team."""
        now = datetime.now(UTC)
        signing = secrets.token_urlsafe(32) if body.provider == "webhook" else None
        row = CrmConnectionRow(
            team_id=principal.team_id,
            provider=body.provider,
            account_id=body.account_id or secrets.token_hex(10),
            name=body.name,
            api_base=(body.api_base or DEFAULT_API_BASE[body.provider] or None),
            credentials=self.box.seal(body.credentials) if body.credentials else None,
            signing_secret=self.box.seal({"secret": signing}) if signing else None,
            write_back=body.write_back.model_dump(mode="json"),
            field_mapping=body.field_mapping,
            options=body.options.model_dump(mode="json"),
            created_at=now,
            updated_at=now,
        )
        try:
            async with session.begin_nested():
                await repo.add_connection(session, row)
        except IntegrityError as exc:
            raise ConnectionConflictError(
                f"{body.provider} account {row.account_id!r} is connected already"
            ) from exc
        return ConnectionCreated(**_out(row), signing_secret=signing)

    async def all(self, session: AsyncSession, principal: Principal) -> list[ConnectionOut]:
        """The caller's team's connections."""
        return [
            ConnectionOut(**_out(row)) for row in await repo.connections(session, principal.team_id)
        ]

    async def of_teams(
        self, session: AsyncSession, team_id: int | None
    ) -> list[tuple[int, ConnectionOut]]:
        """One team's connections (or every team's) with their team, for the command line."""
        return [
            (row.team_id, ConnectionOut(**_out(row)))
            for row in await repo.connections(session, team_id)
        ]

    async def _row(
        self, session: AsyncSession, principal: Principal, connection_id: int
    ) -> CrmConnectionRow:
        row = await repo.connection(session, connection_id, principal.team_id)
        if row is None:
            raise NotFoundError(f"no CRM connection {connection_id} in your team")
        return row

    async def get(
        self, session: AsyncSession, principal: Principal, connection_id: int
    ) -> ConnectionOut:
        """One of the team's connections."""
        return ConnectionOut(**_out(await self._row(session, principal, connection_id)))

    async def update(
        self, session: AsyncSession, principal: Principal, connection_id: int, body: ConnectionPatch
    ) -> ConnectionOut:
        """Change what the body gives; credentials are replaced whole."""
        row = await self._row(session, principal, connection_id)
        if body.credentials is not None:
            try:
                check_credentials(row.provider, body.credentials)
            except ValueError as exc:
                raise InvalidCredentialsError(str(exc)) from exc
            row.credentials = self.box.seal(body.credentials) if body.credentials else None
        if body.name is not None:
            row.name = body.name
        if body.api_base is not None:
            row.api_base = body.api_base
        if body.write_back is not None:
            row.write_back = body.write_back.model_dump(mode="json")
        if body.field_mapping is not None:
            row.field_mapping = body.field_mapping
        if body.options is not None:
            row.options = body.options.model_dump(mode="json")
        row.updated_at = datetime.now(UTC)
        await session.flush()
        self.forget(row)
        return ConnectionOut(**_out(row))

    async def delete(self, session: AsyncSession, principal: Principal, connection_id: int) -> None:
        """Disconnect: its webhooks are refused, its queued write-backs dropped."""
        await self._delete(session, await self._row(session, principal, connection_id))

    async def remove(
        self, session: AsyncSession, connection_id: int, team_id: int | None
    ) -> tuple[int, ConnectionOut]:
        """Disconnect a connection (of this team, when given); what it was, with its team."""
        row = await repo.connection(session, connection_id, team_id)
        if row is None:
            raise NotFoundError(
                f"no CRM connection {connection_id}{'' if team_id is None else ' in that team'}"
            )
        removed = (row.team_id, ConnectionOut(**_out(row)))
        await self._delete(session, row)
        return removed

    async def _delete(self, session: AsyncSession, row: CrmConnectionRow) -> None:
        self.forget(row)
        await repo.delete_connection(session, row)

    def forget(self, row: CrmConnectionRow) -> None:
        """This worker rereads the connection next time (it changed here just now)."""
        self._cache.pop((row.provider, row.account_id), None)
        self._cache.pop(row.id, None)

    def opened(self, row: CrmConnectionRow) -> Connection:
        """The connection with its secrets decrypted."""
        signing = self.box.open(row.signing_secret)["secret"] if row.signing_secret else None
        return Connection(
            id=row.id,
            team_id=row.team_id,
            provider=row.provider,
            account_id=row.account_id,
            api_base=row.api_base,
            credentials=self.box.open(row.credentials) if row.credentials else {},
            signing_secret=signing,
            write_back=WriteBack.model_validate(row.write_back),
            field_mapping=dict(row.field_mapping),
            options=Options.model_validate(row.options),
        )

    def _remember(self, key: tuple[str, str] | int, value: Connection) -> Connection:
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (time.monotonic() + CACHE_SECONDS, value)
        return value

    def _cached(self, key: tuple[str, str] | int) -> Connection | None:
        hit = self._cache.get(key)
        return hit[1] if hit is not None and hit[0] > time.monotonic() else None

    async def by_account(self, provider: str, account_id: str) -> Connection | None:
        """The connection of a provider account (cached briefly; unknown ones are not)."""
        hit = self._cached((provider, account_id))
        if hit is not None:
            return hit
        async with self.sessions() as session:
            row = await repo.connection_by_account(session, provider, account_id)
        return None if row is None else self._remember((provider, account_id), self.opened(row))

    async def by_id(self, connection_id: int) -> Connection | None:
        """A connection by id, for its generic webhook route and the workers (cached briefly)."""
        hit = self._cached(connection_id)
        if hit is not None:
            return hit
        async with self.sessions() as session:
            row = await repo.connection(session, connection_id)
        return None if row is None else self._remember(connection_id, self.opened(row))

    async def of_provider(self, provider: str) -> list[Connection]:
        """Every connection of one provider (Follow Up Boss webhooks are told apart by key)."""
        async with self.sessions() as session:
            rows = await repo.connections(session, provider=provider)
        opened: list[Connection] = []
        for row in rows:
            try:
                opened.append(self.opened(row))
            except SecretUnreadableError as exc:  # one bad connection must not refuse the rest
                log.warning("CRM connection %d left out: %s", row.id, exc)
        return opened
