"""The `leadscore` command: one module per command group, assembled when it runs."""

from __future__ import annotations

import typer

from leadscore.core.config import Settings
from leadscore.core.errors import LeadScoreError


def main() -> None:
    """Entry point: domain errors become one line on stderr and exit code 2, never a traceback."""
    from pydantic import ValidationError

    from leadscore.cli.commands import register
    from leadscore.cli.engine import app, pin_threads

    register(app)
    try:
        pin_threads(Settings())
        app()
    except LeadScoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        typer.echo(f"error: configuration{': ' + where if where else ''}: {message}", err=True)
        raise SystemExit(2) from exc
