"""Running the service for real: settings safety, `leadscore serve` with several workers."""

from __future__ import annotations

import contextlib
import copy
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import select
from websockets.sync.client import connect

from leadscore.core.config import DEMO_JWT_SECRET, ServiceSettings
from leadscore.models import repository as repo
from leadscore.scoring.schemas import EXAMPLE_LEAD

from .conftest import (
    SECRET,
    Deployment,
    deploy,
    free_port,
    serve_workers,
    wait_until_served,
    worker_env,
)
from .test_auth_admin import (
    CACHE_SECONDS,
    KEYS,
    RECHECK_SECONDS,
    bearer,
    close_code,
    new_key,
    token_of,
)
from .test_live import PATH, receive


@pytest.mark.parametrize("secret", [None, "short", DEMO_JWT_SECRET])
def test_settings_refuse_unsafe_secrets_outside_demo(secret: str | None) -> None:
    with pytest.raises(ValidationError, match="LEADSCORE_JWT_SECRET"):
        ServiceSettings(jwt_secret=secret)  # type: ignore[arg-type]


def test_demo_mode_runs_with_its_own_secret() -> None:
    assert ServiceSettings(demo=True).secret == DEMO_JWT_SECRET


@pytest.mark.parametrize(
    ("value", "origins"),
    [
        ("https://crm.example.com", ["https://crm.example.com"]),
        ("https://a.example, https://b.example,", ["https://a.example", "https://b.example"]),
        ('["https://a.example", "https://b.example"]', ["https://a.example", "https://b.example"]),
        ("", []),
    ],
)
def test_cors_origins_read_as_a_comma_separated_or_json_list(
    value: str, origins: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEADSCORE_CORS_ORIGINS", value)
    assert ServiceSettings(demo=True).cors_origins == origins


def test_a_broken_cors_setting_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "LEADSCORE_HOME": str(tmp_path), "LEADSCORE_JWT_SECRET": SECRET,
           "LEADSCORE_CORS_ORIGINS": '["https://a.example"'}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "leadscore", "serve", "--port", str(free_port())],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith("error: configuration: cors_origins"), result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Deployment:
    """The embedded default: SQLite file and in-process cache."""
    return deploy("sqlite-memory", tmp_path_factory.mktemp("embedded"), model_dir)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Deployment:
    """The grown-up deployment: PostgreSQL and Redis shared by workers."""
    return deploy("postgres-redis", tmp_path_factory.mktemp("shared"), model_dir)


def test_workers_without_redis_are_refused(embedded: Deployment) -> None:
    deployment = embedded
    result = subprocess.run(
        [sys.executable, "-m", "leadscore", "serve", "--workers", "2", "--port", str(free_port())],
        env=worker_env(deployment),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "needs Redis" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unsafe_secret_stops_serve_with_one_line(embedded: Deployment) -> None:
    deployment = embedded
    result = subprocess.run(
        [sys.executable, "-m", "leadscore", "serve", "--port", str(free_port())],
        env=worker_env(deployment, LEADSCORE_JWT_SECRET="short"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: configuration")
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.fixture
def two_workers(shared: Deployment) -> Iterator[str]:
    with serve_workers(shared, 2) as url:
        yield url


def test_two_workers_share_scores_and_metrics(two_workers: str, shared: Deployment) -> None:
    headers = {"X-API-Key": shared.keys["acme-agent"]}
    pids: set[int] = set()
    n = 30
    for i in range(n):
        body = copy.deepcopy(EXAMPLE_LEAD) | {"lead_id": f"multi_{i}"}
        # A fresh connection per request, so the kernel spreads them over both workers.
        scored = httpx.post(f"{two_workers}/api/v1/ml/score", json=body, headers=headers)
        assert scored.status_code == 200
        latest = httpx.get(f"{two_workers}/api/v1/ml/score/multi_{i}", headers=headers)
        assert latest.status_code == 200, f"lead {i} not readable right after scoring"
        assert latest.json()["ml_score"] == scored.json()["ml_score"]
        status = httpx.get(f"{two_workers}/api/v1/ml/model/status", headers=headers).json()
        pids.add(status["worker_pid"])
    other = {"X-API-Key": shared.keys["globex-agent"]}
    for i in range(5):
        body = copy.deepcopy(EXAMPLE_LEAD) | {"lead_id": f"multi_other_{i}"}
        assert httpx.post(f"{two_workers}/api/v1/ml/score", json=body, headers=other).is_success
    # Each team sees its own figures, summed over both workers, on whichever worker it asks.
    for _ in range(4):
        performance = httpx.get(
            f"{two_workers}/api/v1/ml/metrics/performance", headers=headers
        ).json()
        assert performance["predictions"] == n
        theirs = httpx.get(f"{two_workers}/api/v1/ml/metrics/performance", headers=other).json()
        assert theirs["predictions"] == 5
        status = httpx.get(f"{two_workers}/api/v1/ml/model/status", headers=other).json()
        assert status["traffic"]["predictions"] == 5
    text = httpx.get(f"{two_workers}/metrics").text
    total = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("leadscore_scores_total{")
    )
    assert total == n + 5  # Prometheus: every team's scores
    # Teams by id (never by name), with no per-team latency histograms (bucket cardinality).
    assert "acme" not in text
    assert "globex" not in text
    assert "leadscore_team_" not in text
    assert len(pids) == 2, "requests never reached the second worker"


def test_home_directory_holds_the_sqlite_file(embedded: Deployment) -> None:
    assert (Path(embedded.settings.home) / "leadscore.db").is_file()


def test_redis_outage_degrades_but_keeps_scoring(embedded: Deployment) -> None:
    port = free_port()
    dead = f"redis://127.0.0.1:{port}/0"
    server = embedded.start(redis_url=dead)
    try:
        with httpx.Client(base_url=server.url) as http:
            health = http.get("/api/v1/ml/health")
            body = copy.deepcopy(EXAMPLE_LEAD) | {"lead_id": "outage_1"}
            headers = {"X-API-Key": embedded.keys["acme-agent"]}
            first = http.post("/api/v1/ml/score", json=body, headers=headers)
            second = http.post("/api/v1/ml/score", json=body, headers=headers)
            history = http.get("/api/v1/ml/score/outage_1/history", headers=headers)
    finally:
        server.stop()
    assert health.status_code == 200
    assert health.json()["status"] == "degraded"
    assert health.json()["checks"]["cache"]["status"] == "error"
    assert health.json()["checks"]["cache"]["detail"].startswith("cache check failed")
    assert all(text not in health.text for text in ("127.0.0.1", str(port)))  # public: no address
    assert first.status_code == second.status_code == 200
    assert second.json()["cache_hit"] is False  # no cache, no fake hit
    assert len(history.json()["scores"]) == 2


def test_database_outage_makes_health_unhealthy(embedded: Deployment) -> None:
    from leadscore.core.db import create_engine, session_factory

    server = embedded.start()
    port = free_port()
    dead = create_engine(f"postgresql+asyncpg://nobody:nothing@127.0.0.1:{port}/none")
    working = server.services.sessions
    try:
        server.services.sessions = session_factory(dead)
        with httpx.Client(base_url=server.url) as http:
            down = http.get("/api/v1/ml/health")
        server.services.sessions = working
        with httpx.Client(base_url=server.url) as http:
            back = http.get("/api/v1/ml/health")
    finally:
        server.services.sessions = working
        server.stop()
    assert down.status_code == 503
    assert down.json()["status"] == "unhealthy"
    assert down.json()["checks"]["database"]["status"] == "error"
    assert down.json()["checks"]["database"]["detail"].startswith("database check failed")
    assert all(text not in down.text for text in ("127.0.0.1", str(port), "nobody"))
    assert back.json()["status"] == "healthy"


def test_workers_starting_together_register_the_model_once(shared: Deployment) -> None:
    """Two lifespans racing to record the same model version must both start."""
    import asyncio as aio

    from leadscore.core.db import create_engine, session_factory
    from leadscore.core.tables import ModelVersionRow

    async def race() -> int:
        engine = create_engine(shared.settings.resolved_database_url)
        sessions = session_factory(engine)
        try:

            async def register() -> None:
                async with sessions() as session, session.begin():
                    await repo.register_model(session, "race" * 4, "/m", {}, datetime.now(UTC))

            await aio.gather(*(register() for _ in range(4)))
            async with sessions() as session:
                rows = await session.execute(
                    select(ModelVersionRow).where(ModelVersionRow.version == "race" * 4)
                )
                return len(rows.scalars().all())
        finally:
            await engine.dispose()

    assert aio.run(race()) == 1


def test_a_score_on_one_worker_reaches_clients_on_the_other(
    two_workers: str, shared: Deployment
) -> None:
    import contextlib
    import json

    from websockets.sync.client import connect

    headers = {"X-API-Key": shared.keys["acme-agent"]}
    url = two_workers.replace("http://", "ws://") + "/api/v1/ml/ws/live-scores"
    with contextlib.ExitStack() as stack:
        clients = []
        on_worker: list[str] = []
        workers: set[str] = set()
        while len(workers) < 2 or len(clients) < 4:  # the kernel picks the accepting worker
            assert len(clients) < 60, "every connection landed on one worker"
            ws = stack.enter_context(connect(url, additional_headers=headers, open_timeout=10))
            hello = json.loads(ws.recv(timeout=5))
            assert hello["event_type"] == "connection_established"
            workers.add(hello["data"]["worker"])
            ws.send(json.dumps({"type": "subscribe", "events": ["lead_scored"]}))
            reply = json.loads(ws.recv(timeout=5))
            while reply["event_type"] == "ping":  # the heartbeat may tick at any moment
                reply = json.loads(ws.recv(timeout=5))
            assert reply["event_type"] == "subscription_updated"
            clients.append(ws)
            on_worker.append(hello["data"]["worker"])
            time.sleep(0.05)
        admin = {"X-API-Key": shared.keys["acme-admin"]}
        deadline = time.monotonic() + 10
        while True:  # each worker shares its connections every second
            listed = httpx.get(f"{two_workers}/api/v1/ml/ws/connections", headers=admin).json()
            if listed["count"] == len(clients) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert {c["worker"] for c in listed["connections"]} == workers
        lead_ids = []
        for i in range(12):
            body = copy.deepcopy(EXAMPLE_LEAD) | {"lead_id": f"cross_{i}"}
            assert httpx.post(
                f"{two_workers}/api/v1/ml/score", json=body, headers=headers
            ).status_code == 200  # fmt: skip
            lead_ids.append(f"cross_{i}")
        for ws, worker in zip(clients, on_worker, strict=True):
            seen: list[str] = []
            while len(seen) < len(lead_ids):
                try:
                    message = json.loads(ws.recv(timeout=5))
                except TimeoutError:
                    state = httpx.get(f"{two_workers}/api/v1/ml/ws/metrics", headers=admin).json()
                    pytest.fail(f"client on {worker} saw only {seen}; hub metrics: {state}")
                if message["event_type"] != "ping":  # a heartbeat may come in between
                    seen.append(message["data"]["lead_id"])
            # Clients sit on both workers, so half of them saw scores made by the other one.
            assert sorted(seen) == sorted(lead_ids)
        deadline = time.monotonic() + 10
        while True:  # each worker re-shares its state every second: a late one reappears
            metrics = httpx.get(f"{two_workers}/api/v1/ml/ws/metrics", headers=admin).json()
            if metrics["workers"] == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert metrics["workers"] == 2, [w["worker"] for w in metrics["per_worker"]]
        assert metrics["connections"] == len(clients)


def test_promotion_and_rollback_reach_both_workers_and_the_cache(
    two_workers: str, shared: Deployment, other_model_dir: Path
) -> None:
    agent = {"X-API-Key": shared.keys["acme-agent"]}
    admin = {"X-API-Key": shared.keys["acme-admin"]}
    lead = copy.deepcopy(EXAMPLE_LEAD) | {"lead_id": "lifecycle_1"}
    first = httpx.post(f"{two_workers}/api/v1/ml/score", json=lead, headers=agent).json()
    champion = first["model_version"]
    again = httpx.post(f"{two_workers}/api/v1/ml/score", json=lead, headers=agent).json()
    assert again["cache_hit"] is True
    registered = subprocess.run(
        [sys.executable, "-m", "leadscore", "models", "register", str(other_model_dir)],
        env=worker_env(shared), capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert registered != champion
    models = httpx.get(f"{two_workers}/api/v1/ml/models", headers=admin).json()
    aliases = {m["version"]: m["aliases"] for m in models}
    assert aliases[champion] == ["champion"]
    assert aliases[registered] == ["challenger"]
    promote = f"{two_workers}/api/v1/ml/models/{registered}/promote"
    assert httpx.post(promote, json={}, headers=agent).status_code == 403
    other_team = {"X-API-Key": shared.keys["globex-admin"]}
    forbidden = httpx.post(promote, json={"force": True}, headers=other_team)
    assert forbidden.status_code == 403  # the global model is the operating team's to change
    refused = httpx.post(promote, headers=admin)  # no body: not forced
    assert refused.status_code == 409, refused.text  # no gate evaluation: refused unless forced
    forced = httpx.post(promote, json={"force": True, "reason": "tests"}, headers=admin)
    assert forced.status_code == 200, forced.text
    assert (forced.json()["from_version"], forced.json()["to_version"]) == (champion, registered)
    wait_until_served(two_workers, agent, lead, registered)
    rescored = httpx.post(f"{two_workers}/api/v1/ml/score", json=lead, headers=agent).json()
    assert rescored["model_version"] == registered
    # No body: acme runs the global model and has none of its own, so the global scope.
    back = httpx.post(f"{two_workers}/api/v1/ml/models/rollback", headers=admin)
    assert back.status_code == 200, back.text
    assert (back.json()["scope"], back.json()["to_version"]) == ("global", champion)
    wait_until_served(two_workers, agent, lead, champion)
    history = httpx.get(f"{two_workers}/api/v1/ml/models/{champion}", headers=admin).json()
    assert [c["action"] for c in history["history"]][:2] == ["rollback", "promote"]
    assert history["history"][1]["forced"] is True
    again = httpx.post(
        f"{two_workers}/api/v1/ml/models/rollback", json={"team": False}, headers=admin
    )
    assert again.status_code == 409  # nothing earlier than the first champion


def test_a_key_revoked_on_one_worker_stops_on_every_worker(shared: Deployment) -> None:
    """Two workers on PostgreSQL + Redis: the key's sockets close and its token is refused on
    both within the key cache window."""
    deployment = shared

    def as_role(who: str) -> dict[str, str]:
        return {"X-API-Key": shared.keys[who]}

    quick = {"LEADSCORE_KEY_CACHE_SECONDS": str(CACHE_SECONDS),
             "LEADSCORE_WS_RECHECK_SECONDS": str(RECHECK_SECONDS)}  # fmt: skip
    with serve_workers(deployment, 2, **quick) as url:

        def each_worker(headers: dict[str, str]) -> set[int]:
            """Status codes of 12 requests, each on a new connection (both workers answer)."""
            return {httpx.get(f"{url}/api/v1/ml/model/status", headers=headers).status_code
                    for _ in range(12)}  # fmt: skip

        with httpx.Client(base_url=url, timeout=30) as client:
            created = new_key(client, as_role)
            token = token_of(client, created["key"])
        assert each_worker(bearer(token)) == {200}  # both workers now trust the key
        ws_url = f"ws://{url.removeprefix('http://')}{PATH}"
        with contextlib.ExitStack() as stack:
            sockets = [
                stack.enter_context(connect(ws_url, additional_headers=bearer(token)))
                for _ in range(4)
            ]
            for ws in sockets:
                assert receive(ws)["event_type"] == "connection_established"
            revoked = httpx.delete(f"{url}{KEYS}/{created['id']}", headers=as_role("acme-admin"))
            assert revoked.status_code == 200
            started = time.monotonic()
            for ws in sockets:
                assert close_code(ws, timeout=RECHECK_SECONDS + 10) == (4403, "key revoked")
            while each_worker(bearer(token)) != {401}:
                assert time.monotonic() - started < CACHE_SECONDS + 5, "a worker still accepts it"
                time.sleep(0.1)
