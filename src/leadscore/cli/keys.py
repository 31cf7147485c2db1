"""`leadscore keys`: a team's API keys."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from leadscore.auth import repository as repo
from leadscore.auth.service import ROLES, TeamAdmin
from leadscore.core.config import StoreSettings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

T = TypeVar("T")


keys_app = typer.Typer(no_args_is_help=True, help="API keys.")


async def create_key(settings: StoreSettings, team: str, role: str, name: str) -> str:
    from leadscore.core.db import create_engine, session_factory, transaction

    engine = create_engine(settings.resolved_database_url)
    try:
        async with transaction(session_factory(engine)) as session:
            now = datetime.now(UTC)
            found = await repo.team_by_name(session, team)
            owner = found or await repo.create_team(session, team, now)
            return await repo.create_api_key(session, owner, role, name, now)
    finally:
        await engine.dispose()


def in_store(
    use: Callable[[StoreSettings, async_sessionmaker[AsyncSession], AsyncSession], Awaitable[T]],
) -> T:
    """Run one store command against the configured (migrated) database, as one unit of work."""
    from leadscore.core.db import create_engine, session_factory, transaction
    from leadscore.core.migrate import upgrade

    settings = StoreSettings()
    upgrade(settings.resolved_database_url)

    async def run() -> T:
        engine = create_engine(settings.resolved_database_url)
        try:
            sessions = session_factory(engine)
            async with transaction(sessions) as session:
                return await use(settings, sessions, session)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def with_team_admin(use: Callable[[TeamAdmin, AsyncSession], Awaitable[T]]) -> T:
    """Run one key or team command as one unit of work."""
    return in_store(lambda settings, _sessions, session: use(TeamAdmin(settings), session))


@keys_app.command("create")
def keys_create(
    team: Annotated[str, typer.Option(help="Team name (created if new).", min=1)],
    role: Annotated[str, typer.Option(help="admin, agent or viewer.")] = "agent",
    name: Annotated[str, typer.Option(help="What the key is for.")] = "api",
) -> None:
    """Create an API key and print it once: only its hash is stored."""
    from leadscore.core.migrate import upgrade

    if role not in ROLES:
        raise typer.BadParameter(f"role must be one of {', '.join(ROLES)}")
    settings = StoreSettings()
    upgrade(settings.resolved_database_url)
    typer.echo(asyncio.run(create_key(settings, team, role, name)))


@keys_app.command("list")
def keys_list(
    team: Annotated[str | None, typer.Option(help="Only this team's keys.")] = None,
) -> None:
    """Every key (or one team's): id, team, name, role, prefix, created, revoked."""

    async def listed(admin: TeamAdmin, session: AsyncSession) -> list[str]:
        team_id = None if team is None else await admin.team_id(session, team)
        return [
            "\t".join([str(key.id), team_name, key.name, key.role, key.prefix,
                       key.created_at.isoformat(),
                       key.revoked_at.isoformat() if key.revoked_at else "active"])
            for team_name, key in await admin.list_keys(session, team_id)
        ]  # fmt: skip

    rows = with_team_admin(listed)
    typer.echo("\t".join(["id", "team", "name", "role", "prefix", "created_at", "revoked_at"]))
    for row in rows:
        typer.echo(row)


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[int, typer.Argument(help="The key's id (`keys list`).")]) -> None:
    """Revoke a key: it and its tokens stop working within 30 s on every worker."""
    key = with_team_admin(lambda admin, session: admin.revoke_key(session, key_id, None))
    assert key.revoked_at is not None
    typer.echo(f"key {key.id} ({key.name}, {key.role}) revoked at {key.revoked_at.isoformat()}")
