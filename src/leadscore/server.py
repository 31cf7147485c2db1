"""CLI commands that run or administer the API server: serve, demo, db, keys."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from leadscore.config import ServiceSettings
from leadscore.errors import ConfigurationError, LeadScoreError

if TYPE_CHECKING:
    from leadscore.services.registry import Registry

T = TypeVar("T")

ROLES = ("admin", "agent", "viewer")


def uvicorn_options() -> dict[str, Any]:
    """How `serve` and `demo` run uvicorn.

    No X-Forwarded-* rewriting: nothing here uses the client address, and that middleware
    costs every request. Live events are small JSON sent to many clients: compressing each
    copy costs more CPU than it saves on a LAN; the sans-I/O WebSocket implementation frames
    without extra tasks, and our subclass lets the hub write many frames per system call.
    """
    from leadscore.api.wsproto import LiveWebSocketProtocol

    return {
        "loop": "uvloop",
        "http": "httptools",
        "log_level": "warning",
        "access_log": False,
        "proxy_headers": False,
        "ws": LiveWebSocketProtocol,
        "ws_per_message_deflate": False,
        # A client that never lets go must not hold a shutdown forever: after this, open
        # connections are cut and the lifespan still drains the score writer.
        "timeout_graceful_shutdown": 20,
    }


db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
keys_app = typer.Typer(no_args_is_help=True, help="API keys.")
models_app = typer.Typer(no_args_is_help=True, help="The model registry: versions and aliases.")


def register(app: typer.Typer) -> None:
    """Add the server commands to the `leadscore` command."""
    app.command()(serve)
    app.command()(demo)
    app.add_typer(db_app, name="db")
    app.add_typer(keys_app, name="keys")
    app.add_typer(models_app, name="models")
    app.command()(retrain)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every migration to the configured database."""
    from leadscore.store.migrate import upgrade

    settings = ServiceSettings()
    upgrade(settings.resolved_database_url)
    typer.echo("database schema is current")


async def create_key(settings: ServiceSettings, team: str, role: str, name: str) -> str:
    from leadscore.store import repositories as repo
    from leadscore.store.db import create_engine, session_factory

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
    from leadscore.store.migrate import upgrade

    if role not in ROLES:
        raise typer.BadParameter(f"role must be one of {', '.join(ROLES)}")
    settings = ServiceSettings()
    upgrade(settings.resolved_database_url)
    typer.echo(asyncio.run(create_key(settings, team, role, name)))


async def _with_registry(settings: ServiceSettings, use: Callable[[Registry], Awaitable[T]]) -> T:
    """Run one registry operation against the configured database."""
    from leadscore.services.registry import Registry
    from leadscore.store.db import create_engine, session_factory

    engine = create_engine(settings.resolved_database_url)
    try:
        return await use(Registry(session_factory(engine), settings.home / "models"))
    finally:
        await engine.dispose()


def _registry(use: Callable[[Registry], Awaitable[T]]) -> T:
    from leadscore.store.migrate import upgrade

    settings = ServiceSettings()
    upgrade(settings.resolved_database_url)
    try:
        return asyncio.run(_with_registry(settings, use))
    except LeadScoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def _print(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


@models_app.command("list")
def models_list() -> None:
    """Every registered version with its aliases, newest first."""
    _print(_registry(lambda r: r.list()))


@models_app.command("show")
def models_show(version: str) -> None:
    """One version: card and its scope's promotion history."""
    _print(_registry(lambda r: r.show(version)))


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

    async def register(registry: Registry) -> str:
        team_id = None
        if team is not None:
            team_id = await registry.team_id(team)
        await registry.register(
            model, directory, team_id=team_id, trained_by="leadscore models register",
            as_challenger=challenger,
        )  # fmt: skip
        return model.version

    typer.echo(_registry(register))


@models_app.command("promote")
def models_promote(
    version: str,
    force: Annotated[bool, typer.Option(help="Skip the gate (recorded with the reason).")] = False,
    reason: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Make a version its scope's champion; workers serve it within seconds."""
    detail = {"forced": True, "reason": reason} if force else None
    _print(_registry(lambda r: r.promote(version, actor="cli", force=force, detail=detail)))


@models_app.command("rollback")
def models_rollback(
    team: Annotated[str | None, typer.Option(help="Roll back this team's champion.")] = None,
) -> None:
    """Serve the previous champion again."""

    async def rollback(registry: Registry) -> dict[str, Any]:
        team_id = None if team is None else await registry.team_id(team)
        return await registry.rollback(team_id, actor="cli")

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

    async def trial(registry: Registry) -> dict[str, Any]:
        team_id = None if team is None else await registry.team_id(team)
        return await registry.set_trial(team_id, mode, share, actor="cli")

    _print(_registry(trial))


@models_app.command("compare")
def models_compare(
    team: Annotated[str, typer.Option(help="The team whose leads and outcomes to compare on.")],
    champion: Annotated[str | None, typer.Option(help="Default: what serves the team.")] = None,
    challenger: Annotated[str | None, typer.Option(help="Default: its challenger.")] = None,
) -> None:
    """Champion and challenger on the team's same leads with outcomes: AUC, Brier, intervals."""

    async def compare(registry: Registry) -> dict[str, Any]:
        from leadscore.services.compare import compare_versions

        team_id = await registry.team_id(team)
        pair = await registry.trial_pair(team_id, champion, challenger)
        return await compare_versions(registry.sessions, team_id, *pair)

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
    from leadscore.engine.mapping import load_mapping, load_training_frame

    if mapping is not None and data is None:
        raise typer.BadParameter("--mapping maps the columns of --data: give both")
    export = None if data is None else load_training_frame(
        data, load_mapping(mapping) if mapping else None
    )  # fmt: skip

    async def run(registry: Registry) -> dict[str, Any]:
        from leadscore.services.training import RetrainService

        settings = ServiceSettings()
        service = RetrainService(registry, settings.resolved_database_url,
                                 settings.home / "models" / "trained",
                                 num_threads=settings.num_threads)  # fmt: skip
        team_id = await registry.team_id(team)
        return await service.retrain(team_id, actor="cli", promote=promote, export=export)

    _print(_registry(run))


def _prepare(settings: ServiceSettings, workers: int) -> None:
    """What must happen once, before any worker starts: migrations, the model, metrics dir."""
    from leadscore.engine.defaults import load_or_build_default
    from leadscore.services.metrics import MULTIPROC_ENV
    from leadscore.store.migrate import upgrade

    if workers > 1 and not settings.redis_url:
        raise ConfigurationError(
            "--workers > 1 needs Redis (LEADSCORE_REDIS_URL): workers share the cache, "
            "the latest scores and the rate limits through it"
        )
    upgrade(settings.resolved_database_url)
    if settings.model_dir is None:
        load_or_build_default(settings.home, settings.num_threads)
    if workers > 1:
        os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="leadscore-metrics-")
        # Each worker is single-threaded: two workers on two cores must not fight.
        os.environ["OMP_NUM_THREADS"] = "1"


def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64)] = 1,
) -> None:
    """Run the API (uvicorn with uvloop and httptools)."""
    import uvicorn

    settings = ServiceSettings()
    _prepare(settings, workers)
    uvicorn.run(
        "leadscore.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        **uvicorn_options(),
    )


async def _demo(settings: ServiceSettings, host: str, port: int, leads: int) -> None:
    import httpx
    import uvicorn

    from leadscore.api.app import create_app
    from leadscore.engine.io import frame_to_leads
    from leadscore.engine.synthetic import generate

    key = await create_key(settings, "demo", "admin", "demo")
    config = uvicorn.Config(create_app(settings), host=host, port=port, **uvicorn_options())
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()
            return
        await asyncio.sleep(0.05)
    url = f"http://{host}:{port}"
    now = datetime.now(UTC)
    # Leads that arrived over the last month, scored as of now (their future is ignored).
    frame = generate(leads, seed=7, start=now - timedelta(days=30), days=30).drop("as_of")
    demo_leads = [lead.model_dump(mode="json", exclude_none=True) for lead in frame_to_leads(frame)]
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": key}) as client:
        token = (await client.post("/api/v1/auth/token")).json()["access_token"]
        scored: list[dict[str, Any]] = []
        for start in range(0, len(demo_leads), 100):
            response = await client.post(
                "/api/v1/ml/batch-score", json={"leads": demo_leads[start : start + 100]}
            )
            response.raise_for_status()
            scored += [r for r in response.json()["results"] if r]
    scored.sort(key=lambda r: -r["ml_score"])
    typer.echo(f"LeadScore demo running at {url}  (API docs: {url}/docs)")
    typer.echo(f"admin API key : {key}")
    typer.echo(f"bearer token  : {token}")
    classes = {
        c: sum(1 for r in scored if r["classification"] == c) for c in ("hot", "warm", "cold")
    }
    typer.echo(f"scored {len(scored)} demo leads: {classes}")
    for result in scored[:3]:
        typer.echo(f"  {result['lead_id']}  {result['ml_score']:.1f} {result['classification']}")
        for reason in result["reasons"][:3]:
            typer.echo(f"      {reason['text']}")
    typer.echo("ready — Ctrl-C to stop")
    await serving


def demo(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    leads: Annotated[int, typer.Option(min=1, max=10_000)] = 300,
) -> None:
    """The embedded demo: SQLite, in-process cache, built-in model, a demo team and key."""
    settings = ServiceSettings(demo=True)
    _prepare(settings, 1)
    asyncio.run(_demo(settings, host, port, leads))
