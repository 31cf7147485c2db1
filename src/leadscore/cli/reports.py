"""`leadscore export` and `leadscore report`: the leads list as a file, the broker's PDF."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, TypeVar, cast

import typer

from leadscore.core.errors import InvalidInputError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from leadscore.auth.principal import Principal
    from leadscore.deps import Services
    from leadscore.reports.exports import Format

T = TypeVar("T")


def _in_service(team: str, use: Callable[[Services, Principal], Awaitable[T]]) -> T:
    """Run `use` with the components a worker has (started and stopped around it), acting
    for the named team: the command reads exactly what the API would answer."""
    from leadscore.app import create_app
    from leadscore.auth.principal import Principal
    from leadscore.auth.service import team_id_by_name
    from leadscore.core.db import transaction
    from leadscore.core.migrate import upgrade

    app = create_app()
    upgrade(app.state.settings.resolved_database_url)

    async def run() -> T:
        async with app.router.lifespan_context(app):
            services: Services = app.state.services
            async with transaction(services.sessions) as session:
                team_id = await team_id_by_name(session, team)
            principal = Principal(key_id=0, team_id=team_id, team_name=team, role="admin")
            return await use(services, principal)

    return asyncio.run(run())


def _aware(value: str | None, name: str) -> datetime | None:
    """An ISO 8601 instant with its zone, as the API takes it."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInputError(f"--{name}: not an ISO 8601 instant: {value!r}") from exc
    if moment.tzinfo is None:
        raise InvalidInputError(f"--{name}: give a zone, e.g. {value}Z")
    return moment


def export(
    team: Annotated[str, typer.Option(help="The team's name.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The file to write.")],
    format: Annotated[
        Literal["csv", "xlsx", "jsonl", "parquet"] | None,
        typer.Option(help="Default: from the output's extension."),
    ] = None,
    classification: Annotated[
        Literal["hot", "warm", "cold"] | None, typer.Option(help="Only this class.")
    ] = None,
    qualification: Annotated[
        Literal["needed", "not_needed"] | None, typer.Option(help="Qualification needed or not.")
    ] = None,
    min_score: Annotated[float | None, typer.Option(min=0, max=100)] = None,
    source: Annotated[str | None, typer.Option(help="Case-insensitive.")] = None,
    scored_since: Annotated[str | None, typer.Option(help="ISO 8601 with zone.")] = None,
    q: Annotated[str | None, typer.Option(help="In the name or email.")] = None,
    sort: Annotated[
        Literal["score", "expected_commission", "scored_at", "change"], typer.Option()
    ] = "score",
) -> None:
    """Write the team's leads (the list's filters and order) as CSV, XLSX, JSONL or Parquet."""
    from leadscore.scoring.repository import LeadFilter

    chosen = format or output.suffix.lstrip(".").lower()
    if chosen not in ("csv", "xlsx", "jsonl", "parquet"):
        raise typer.BadParameter("give --format csv, xlsx, jsonl or parquet", param_hint="--format")
    keep = LeadFilter(
        classification=classification,
        qualification_needed=None if qualification is None else qualification == "needed",
        min_score=min_score,
        source=source,
        scored_since=_aware(scored_since, "scored-since"),
        q=q or None,
    )
    fmt = cast("Format", chosen)
    rows = _in_service(team, lambda s, p: s.reports.write_file(p, keep, sort, fmt, output))
    typer.echo(f"{rows} leads written to {output}")


def report(
    team: Annotated[str, typer.Option(help="The team's name.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The PDF to write.")] = Path(
        "report.pdf"
    ),
    since: Annotated[
        str | None, typer.Option(help="ISO 8601 with zone; default 30 days ago.")
    ] = None,
    paper: Annotated[Literal["a4", "letter"], typer.Option()] = "a4",
) -> None:
    """Write the broker's PDF report: pipeline, leads to call, conversion, queue, model health."""
    start = _aware(since, "since")

    async def draw(services: Services, principal: Principal) -> bytes:
        from leadscore.core.db import transaction

        session: AsyncSession
        async with transaction(services.sessions) as session:
            return await services.reports.report(session, principal, start, paper)

    body = _in_service(team, draw)
    output.write_bytes(body)
    typer.echo(f"report written to {output} ({len(body):,} bytes)")
