"""`leadscore db`: the database schema."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from leadscore.core.config import StoreSettings

if TYPE_CHECKING:
    pass


db_app = typer.Typer(no_args_is_help=True, help="Database schema.")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every migration to the configured database."""
    from leadscore.core.migrate import upgrade

    settings = StoreSettings()
    upgrade(settings.resolved_database_url)
    typer.echo("database schema is current")
