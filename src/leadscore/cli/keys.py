"""`leadscore keys`: a team's API keys."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from leadscore.auth import repository as repo
from leadscore.core.config import ServiceSettings

if TYPE_CHECKING:
    pass


ROLES = ("admin", "agent", "viewer")


keys_app = typer.Typer(no_args_is_help=True, help="API keys.")


async def create_key(settings: ServiceSettings, team: str, role: str, name: str) -> str:
    from leadscore.core.db import create_engine, session_factory

    engine = create_engine(settings.resolved_database_url)
    try:
        async with session_factory(engine)() as session, session.begin():
            now = datetime.now(UTC)
            found = await repo.team_by_name(session, team)
            owner = found or await repo.create_team(session, team, now)
            return await repo.create_api_key(session, owner, role, name, now)
    finally:
        await engine.dispose()


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
    settings = ServiceSettings()
    upgrade(settings.resolved_database_url)
    typer.echo(asyncio.run(create_key(settings, team, role, name)))
