"""What /health and a WebSocket handshake answer while PostgreSQL is stopped: on real processes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from .conftest import Dependencies, Deployment, serve

HEALTH = "/api/v1/ml/health"
LIVE = "/api/v1/ml/ws/live-scores"
#: Every answer during an outage within this (the 503 handler's bound).
MAX_SECONDS = 2.0


def test_health_during_a_database_outage_is_the_503_of_every_route_plus_the_report(
    deployment: Deployment, dependencies: Dependencies, tmp_path: Path
) -> None:
    agent = {"X-API-Key": deployment.keys["acme-agent"]}
    with serve(deployment, tmp_path / "server.log") as server:
        healthy = httpx.get(server.url + HEALTH)
        dependencies.stop_postgres()
        try:
            started = time.monotonic()
            down = httpx.get(server.url + HEALTH, timeout=10)
            seconds = time.monotonic() - started
            route = httpx.get(server.url + "/api/v1/ml/model/status", headers=agent, timeout=10)
        finally:
            dependencies.start_postgres()
        back = httpx.get(server.url + HEALTH)
    assert healthy.status_code == 200
    assert "error" not in healthy.json()
    assert "retry-after" not in healthy.headers
    assert down.status_code == 503, down.text
    assert seconds < MAX_SECONDS
    body = down.json()
    # The report monitors read: status per dependency, the failing one named.
    assert body["status"] == "unhealthy"
    assert body["checks"]["database"]["status"] == "error"
    assert body["checks"]["model"]["status"] == "ok"
    # ... and the error every other route answers, with the same Retry-After.
    assert route.status_code == 503, route.text
    assert body["error"] == route.json()["error"] == "database_unavailable"
    assert body["detail"] == route.json()["detail"]
    assert int(down.headers["retry-after"]) == int(route.headers["retry-after"]) >= 1
    assert back.status_code == 200
    assert back.json()["status"] == "healthy"


def _handshake(url: str, key: str) -> tuple[float, int | None, str, dict[str, object] | None]:
    """Open the live socket with `key`: how long it took, the close code and reason if it was
    closed, else the first event."""
    started = time.monotonic()
    ws_url = url.replace("http://", "ws://") + LIVE
    try:
        with connect(ws_url, additional_headers={"X-API-Key": key}, open_timeout=10) as ws:
            first = json.loads(ws.recv(timeout=10))
            return time.monotonic() - started, None, "", first
    except ConnectionClosed as closed:
        frame = closed.rcvd  # None: cut without a close frame
        seconds = time.monotonic() - started
        return seconds, None if frame is None else frame.code, str(frame and frame.reason), None


def test_a_websocket_handshake_that_needs_the_stopped_database_is_closed_with_1013(
    deployment: Deployment, dependencies: Dependencies, tmp_path: Path
) -> None:
    # A key no worker has cached: authenticating it needs the database.
    fresh = deployment.keys["spare-agent"]
    with serve(deployment, tmp_path / "server.log") as server:
        dependencies.stop_postgres()
        try:
            refused = [_handshake(server.url, fresh) for _ in range(4)]  # both workers
        finally:
            dependencies.start_postgres()
        _, code, reason, event = _handshake(server.url, fresh)
        log = server.log.read_text()
    for took, closed_with, why, first in refused:
        assert first is None, first
        assert (closed_with, why) == (1013, "the database is unreachable; retry shortly")
        assert took < MAX_SECONDS
    assert "Traceback" not in log, log[-3000:]
    # Once it is back, the same key connects.
    assert code is None, (code, reason)
    assert event is not None
    assert event["event_type"] == "connection_established"
