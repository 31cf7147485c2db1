"""`leadscore crm`: a team's CRM connections, as its admins manage them over HTTP."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError

from leadscore.cli.keys import in_store
from leadscore.core.errors import InvalidInputError
from leadscore.core.schemas import validation_detail
from leadscore.crm.schemas import ConnectionCreated, ConnectionIn, ConnectionOut

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from leadscore.core.config import StoreSettings
    from leadscore.crm.connections import ConnectionService

crm_app = typer.Typer(no_args_is_help=True, help="CRM connections (GoHighLevel, Follow Up Boss).")

LIST_COLUMNS = ("id", "team", "provider", "account_id", "name", "api_base", "credentials",
                "webhook_path", "created_at")  # fmt: skip


def _service(
    settings: StoreSettings, sessions: async_sessionmaker[AsyncSession]
) -> ConnectionService:
    from leadscore.crm.connections import ConnectionService
    from leadscore.crm.secrets import box_for

    return ConnectionService(box_for(settings), sessions)


def _mapping(pairs: list[str]) -> dict[str, str]:
    """`SRC=TARGET` options as the field mapping."""
    mapping: dict[str, str] = {}
    for pair in pairs:
        source, sep, target = pair.partition("=")
        if not sep or not source.strip() or not target.strip():
            raise InvalidInputError(
                f"--map {pair!r}: write it SRC=TARGET, e.g. Kq3lTimeline0=timeline"
            )
        mapping[source.strip()] = target.strip()
    return mapping


def _body(provider: str, given: dict[str, Any]) -> ConnectionIn:
    """The options as the same body POST /crm/connections takes, validated the same way."""
    try:
        return ConnectionIn.model_validate({"provider": provider, **given})
    except ValidationError as exc:
        problems = "; ".join(
            f"{p['field']}: {p['message'].removeprefix('Value error, ')}"
            for p in validation_detail(exc.errors(), root="connection")
        )
        raise InvalidInputError(problems) from exc


def _shown(connection: ConnectionOut, team: str) -> dict[str, Any]:
    shown = {"team": team, **connection.model_dump(mode="json")}
    if shown.get("signing_secret") is None:
        shown.pop("signing_secret", None)
    return shown


@crm_app.command("keygen")
def crm_keygen() -> None:
    """Print a new key for LEADSCORE_SECRET_KEY (put it first, keep old keys after it)."""
    from leadscore.crm.secrets import new_key

    typer.echo(new_key())


@crm_app.command("add")
def crm_add(
    team: Annotated[str, typer.Option(help="The team's name (it must exist).")],
    provider: Annotated[str, typer.Option(help="gohighlevel, followupboss or webhook.")],
    account_id: Annotated[
        str | None, typer.Option(help="GoHighLevel locationId; Follow Up Boss account.")
    ] = None,
    name: Annotated[str | None, typer.Option(help="A label for people.")] = None,
    token: Annotated[str | None, typer.Option(help="GoHighLevel: the API token.")] = None,
    api_key: Annotated[str | None, typer.Option(help="Follow Up Boss: the API key.")] = None,
    system: Annotated[
        str | None, typer.Option(help="Follow Up Boss: the registered system name.")
    ] = None,
    system_key: Annotated[str | None, typer.Option(help="Follow Up Boss: the system key.")] = None,
    api_base: Annotated[
        str | None, typer.Option(help="Where the CRM's API answers (default: the provider's).")
    ] = None,
    score_field: Annotated[
        str | None, typer.Option(help="The custom field the score is written to.")
    ] = None,
    tag_hot: Annotated[str | None, typer.Option(help="Tag of a hot lead.")] = None,
    tag_warm: Annotated[str | None, typer.Option(help="Tag of a warm lead.")] = None,
    tag_cold: Annotated[str | None, typer.Option(help="Tag of a cold lead.")] = None,
    threshold: Annotated[
        float | None, typer.Option(help="Write back when the score moves this much (points).")
    ] = None,
    mapping: Annotated[
        list[str] | None,
        typer.Option(
            "--map",
            help="SRC=TARGET: a CRM custom field to a lead field or "
            "attributes.<name> (repeatable).",
        ),
    ] = None,
) -> None:
    """Connect a CRM account to a team; prints it (a generic webhook's secret this once)."""
    credentials = {
        key: value
        for key, value in (("token", token), ("api_key", api_key), ("system", system),
                           ("system_key", system_key))
        if value is not None
    }  # fmt: skip
    tags = {cls: tag for cls, tag in (("hot", tag_hot), ("warm", tag_warm), ("cold", tag_cold))
            if tag is not None}  # fmt: skip
    write_back: dict[str, Any] = {"class_tags": tags}
    if score_field is not None:
        write_back["score_field"] = score_field
    if threshold is not None:
        write_back["threshold_points"] = threshold
    given: dict[str, Any] = {"account_id": account_id, "name": name, "api_base": api_base,
                             "credentials": credentials or None, "write_back": write_back,
                             "field_mapping": _mapping(mapping or [])}  # fmt: skip
    body = _body(provider, {k: v for k, v in given.items() if v is not None})

    async def add(
        settings: StoreSettings, sessions: async_sessionmaker[AsyncSession], session: AsyncSession
    ) -> ConnectionCreated:
        from leadscore.auth.principal import Principal
        from leadscore.auth.service import TeamAdmin

        service = _service(settings, sessions)
        team_id = await TeamAdmin(settings).team_id(session, team)
        return await service.create(session, Principal(0, team_id, team, "admin"), body)

    created = in_store(add)
    typer.echo(json.dumps(_shown(created, team), indent=2))
    if created.signing_secret is not None:
        typer.echo("signing_secret is shown this once: sign webhook bodies with it", err=True)


@crm_app.command("list")
def crm_list(
    team: Annotated[str | None, typer.Option(help="Only this team's connections.")] = None,
) -> None:
    """Every connection (or one team's), without secrets: only whether credentials are set."""

    async def listed(
        settings: StoreSettings, sessions: async_sessionmaker[AsyncSession], session: AsyncSession
    ) -> list[str]:
        from leadscore.auth.service import TeamAdmin

        admin = TeamAdmin(settings)
        team_id = None if team is None else await admin.team_id(session, team)
        names: dict[int, str] = {}
        rows = []
        for owner, connection in await _service(settings, sessions).of_teams(session, team_id):
            if owner not in names:
                names[owner] = (await admin.team_settings(session, owner)).team
            rows.append("\t".join([
                str(connection.id), names[owner], connection.provider, connection.account_id,
                connection.name or "", connection.api_base or "",
                "set" if connection.has_credentials else "none", connection.webhook_path,
                connection.created_at.isoformat(),
            ]))  # fmt: skip
        return rows

    rows = in_store(listed)
    typer.echo("\t".join(LIST_COLUMNS))
    for row in rows:
        typer.echo(row)


@crm_app.command("remove")
def crm_remove(
    connection_id: Annotated[int, typer.Argument(help="The connection's id (`crm list`).", min=1)],
    team: Annotated[str | None, typer.Option(help="Only if it is this team's.")] = None,
) -> None:
    """Disconnect: its webhooks are refused from now on, its waiting write-backs dropped."""

    async def remove(
        settings: StoreSettings, sessions: async_sessionmaker[AsyncSession], session: AsyncSession
    ) -> str:
        from leadscore.auth.service import TeamAdmin

        admin = TeamAdmin(settings)
        team_id = None if team is None else await admin.team_id(session, team)
        owner, connection = await _service(settings, sessions).remove(
            session, connection_id, team_id
        )
        owner_name = (await admin.team_settings(session, owner)).team
        return (
            f"connection {connection.id} ({connection.provider} {connection.account_id}, "
            f"team {owner_name}) removed"
        )

    typer.echo(in_store(remove))
