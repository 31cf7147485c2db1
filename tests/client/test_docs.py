"""docs/client.md runs as written: its examples are doctested against a real server."""

from __future__ import annotations

import doctest
from pathlib import Path

from ..api.conftest import Deployment, ServerThread

DOC = Path(__file__).resolve().parents[2] / "docs" / "client.md"


def test_the_client_guide_runs_against_a_live_server(
    server: ServerThread, deployment: Deployment
) -> None:
    globs = {"BASE_URL": server.url, "API_KEY": deployment.keys["acme-agent"]}
    result = doctest.testfile(
        str(DOC),
        module_relative=False,
        globs=globs,
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
        report=True,
        verbose=False,
    )
    assert result.attempted > 40
    assert result.failed == 0
