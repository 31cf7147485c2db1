"""Every command group, added to the `leadscore` command."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    pass
from leadscore.cli.crm import crm_app
from leadscore.cli.db import db_app
from leadscore.cli.keys import keys_app
from leadscore.cli.models import models_app, retrain
from leadscore.cli.reports import export, report
from leadscore.cli.serve import demo, serve
from leadscore.cli.teams import teams_app


def register(app: typer.Typer) -> None:
    """Add the server commands to the `leadscore` command."""
    app.command()(serve)
    app.command()(demo)
    app.add_typer(db_app, name="db")
    app.add_typer(keys_app, name="keys")
    app.add_typer(teams_app, name="teams")
    app.add_typer(models_app, name="models")
    app.add_typer(crm_app, name="crm")
    app.command()(retrain)
    app.command()(export)
    app.command()(report)
