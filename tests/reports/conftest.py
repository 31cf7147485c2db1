"""The API fixtures (a real server per backend) and the leads the report tests score."""

from __future__ import annotations

from ..api.conftest import as_role, client, deployment, server

__all__ = ["as_role", "client", "deployment", "server"]
