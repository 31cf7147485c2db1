"""`leadscore models` and `leadscore retrain`: the model registry from the shell."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from leadscore.core.config import StoreSettings
from leadscore.core.errors import LeadScoreError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from leadscore.models.registry import Registry


T = TypeVar("T")


models_app = typer.Typer(no_args_is_help=True, help="The model registry: versions and aliases.")


Use = Callable[["Registry", "async_sessionmaker[AsyncSession]"], Awaitable[T]]


async def _with_registry(settings: StoreSettings, use: Use[T]) -> T:
    """Run one registry command against the configured database."""
    from leadscore.core.db import create_engine, session_factory
    from leadscore.models.registry import Registry

    engine = create_engine(settings.resolved_database_url)
    try:
        return await use(Registry(settings.home / "models"), session_factory(engine))
    finally:
        await engine.dispose()


def _run(use: Use[T]) -> T:
    """A command with the registry and the database's sessions; domain errors exit 2."""
    from leadscore.core.migrate import upgrade

    settings = StoreSettings()
    upgrade(settings.resolved_database_url)
    try:
        return asyncio.run(_with_registry(settings, use))
    except LeadScoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def _registry(use: Callable[[Registry, AsyncSession], Awaitable[T]]) -> T:
    """A registry command as one unit of work: committed when it succeeds, else nothing."""
    from leadscore.core.db import transaction

    async def once(registry: Registry, sessions: async_sessionmaker[AsyncSession]) -> T:
        async with transaction(sessions) as session:
            return await use(registry, session)

    return _run(once)


def _print(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


@models_app.command("list")
def models_list() -> None:
    """Every registered version with its aliases, newest first."""
    _print(_registry(lambda r, s: r.list(s)))


@models_app.command("show")
def models_show(version: str) -> None:
    """One version: card and its scope's promotion history."""
    _print(_registry(lambda r, s: r.show(s, version)))


@models_app.command("register")
def models_register(
    directory: Annotated[Path, typer.Argument(exists=True, file_okay=False)],
    team: Annotated[
        str | None, typer.Option(help="The team this model is for (else global).")
    ] = None,
    challenger: Annotated[bool, typer.Option(help="Make it its scope's challenger.")] = True,
) -> None:
    """Store a model trained elsewhere (`leadscore train`) in the registry; prints its version."""
    from leadscore.engine.model import LeadModel

    model = LeadModel.load(directory)

    async def register(registry: Registry, session: AsyncSession) -> str:
        team_id = None
        if team is not None:
            team_id = await registry.team_id(session, team)
        await registry.register(
            session, model, directory, team_id=team_id, trained_by="leadscore models register",
            as_challenger=challenger,
        )  # fmt: skip
        return model.version_

    typer.echo(_registry(register))


@models_app.command("promote")
def models_promote(
    version: str,
    force: Annotated[bool, typer.Option(help="Skip the gate (recorded with the reason).")] = False,
    reason: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Make a version its scope's champion; workers serve it within seconds."""
    detail = {"forced": True, "reason": reason} if force else None
    _print(_registry(lambda r, s: r.promote(s, version, actor="cli", force=force, detail=detail)))


@models_app.command("rollback")
def models_rollback(
    team: Annotated[str | None, typer.Option(help="Roll back this team's champion.")] = None,
) -> None:
    """Serve the previous champion again."""

    async def rollback(registry: Registry, session: AsyncSession) -> dict[str, Any]:
        team_id = None if team is None else await registry.team_id(session, team)
        return await registry.rollback(session, team_id, actor="cli")

    _print(_registry(rollback))


@models_app.command("trial")
def models_trial(
    mode: Annotated[str, typer.Argument(help="shadow, split or off.")],
    share: Annotated[
        float, typer.Option(min=0.001, max=0.999, help="split: the challenger's share of leads.")
    ] = 0.1,
    team: Annotated[str | None, typer.Option(help="This team's trial (else global).")] = None,
) -> None:
    """Try the scope's challenger on live traffic (workers follow within seconds), or stop."""
    if mode not in ("shadow", "split", "off"):
        raise typer.BadParameter("mode must be shadow, split or off")

    async def trial(registry: Registry, session: AsyncSession) -> dict[str, Any]:
        team_id = None if team is None else await registry.team_id(session, team)
        return await registry.set_trial(session, team_id, mode, share, actor="cli")

    _print(_registry(trial))


@models_app.command("compare")
def models_compare(
    team: Annotated[str, typer.Option(help="The team whose leads and outcomes to compare on.")],
    champion: Annotated[str | None, typer.Option(help="Default: what serves the team.")] = None,
    challenger: Annotated[str | None, typer.Option(help="Default: its challenger.")] = None,
) -> None:
    """Champion and challenger on the team's same leads with outcomes: AUC, Brier, intervals."""

    async def compare(registry: Registry, session: AsyncSession) -> dict[str, Any]:
        from leadscore.models.compare import compare_versions

        team_id = await registry.team_id(session, team)
        pair = await registry.trial_pair(session, team_id, champion, challenger)
        return await compare_versions(session, team_id, *pair)

    _print(_registry(compare))


def retrain(
    team: Annotated[str, typer.Option(help="The team whose outcomes to learn from.")],
    promote: Annotated[bool, typer.Option(help="Promote when the gate passes.")] = False,
    data: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="The team's CRM export, with outcomes."),
    ] = None,
    mapping: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="YAML column mapping for that export."),
    ] = None,
) -> None:
    """Train a team model on its outcomes (and its CRM history), gate it, register it."""
    from leadscore.engine.mapping import load_mapping
    from leadscore.models.training import CrmExport

    if mapping is not None and data is None:
        raise typer.BadParameter("--mapping maps the columns of --data: give both")
    export = None if data is None else CrmExport(
        data, str(data), load_mapping(mapping) if mapping else None
    )  # fmt: skip

    async def run(registry: Registry, sessions: async_sessionmaker[AsyncSession]) -> dict[str, Any]:
        from leadscore.core.db import transaction
        from leadscore.models.training import RetrainService

        settings = StoreSettings()
        service = RetrainService(sessions, registry, settings.resolved_database_url,
                                 settings.home / "models" / "trained",
                                 num_threads=settings.num_threads)  # fmt: skip
        async with transaction(sessions) as session:
            team_id = await registry.team_id(session, team)
        # A training job commits its own steps (its lease, its progress), like the server's.
        return await service.retrain(team_id, actor="cli", promote=promote, export=export)

    _print(_run(run))
