"""`leadscore teams`: a team's own settings."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError

from leadscore.auth.schemas import TeamSettingsOut, TeamSettingsPatch
from leadscore.auth.service import TeamAdmin
from leadscore.cli.keys import with_team_admin
from leadscore.core.errors import InvalidInputError
from leadscore.core.schemas import validation_detail

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

teams_app = typer.Typer(no_args_is_help=True, help="Team settings.")


@teams_app.command("set")
def teams_set(
    team: Annotated[str, typer.Option(help="The team's name.")],
    commission_rate: Annotated[float | None, typer.Option(help="0–1, e.g. 0.03.")] = None,
    hot: Annotated[float | None, typer.Option(help="Hot from this score (0–100).")] = None,
    warm: Annotated[float | None, typer.Option(help="Warm from this score (0–100).")] = None,
    escalation_confidence: Annotated[
        float | None, typer.Option(help="Escalate below this confidence (0–1).")
    ] = None,
) -> None:
    """Change a team's settings (the options given); prints them. Applies within 30 s."""
    given: dict[str, Any] = {
        name: value
        for name, value in (
            ("commission_rate", commission_rate), ("hot_threshold", hot),
            ("warm_threshold", warm), ("escalation_confidence", escalation_confidence),
        )
        if value is not None
    }  # fmt: skip
    try:
        patch = TeamSettingsPatch(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"{p['field']}: {p['message']}" for p in validation_detail(exc.errors())
        )
        raise InvalidInputError(problems) from exc

    async def update(admin: TeamAdmin, session: AsyncSession) -> TeamSettingsOut:
        return await admin.update_team_settings(session, await admin.team_id(session, team), patch)

    typer.echo(json.dumps(with_team_admin(update).model_dump(), indent=2))
