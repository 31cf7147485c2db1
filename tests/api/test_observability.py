"""Logs and metrics of real servers: one JSON access line per request with its id, route
template and team; ids travelling into webhook work; no secret or personal data in any line;
Prometheus counters summed over two workers; the Grafana dashboard asks only for families the
service exposes."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import hmac
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from websockets.sync.client import connect

from leadscore.crm.secrets import new_key
from leadscore.scoring.schemas import EXAMPLE_LEAD

from .conftest import Deployment, deploy, free_port, serve_workers, worker_env

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "dashboards" / "leadscore.json"
SCORE = "/api/v1/ml/score"
#: Personal data in the lead and webhook bodies below: none of it may reach a log line.
NAME, EMAIL, PHONE = "Sarah Quimby-Chen", "sarah.quimby@example.com", "+1-555-0199"
PERSONAL = {"name": NAME, "email": EMAIL, "phone": PHONE}


def personal_lead(lead_id: str) -> dict[str, Any]:
    body = copy.deepcopy(EXAMPLE_LEAD) | {"lead_id": lead_id}
    body["lead_data"].update(PERSONAL)
    return body


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Deployment:
    return deploy("sqlite-memory", tmp_path_factory.mktemp("observed"), model_dir)


@contextlib.contextmanager
def served(deployment: Deployment, log: Path, **extra: str) -> Iterator[str]:
    """`leadscore serve` (one worker) writing its standard error to `log`; stopped on exit."""
    port = free_port()
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "leadscore", "serve", "--port", str(port)],
            env=worker_env(deployment, **extra), stdout=subprocess.DEVNULL, stderr=sink,
            start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/api/v1/ml/health", timeout=2).status_code == 200:
                    break
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_for(check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"not true within {timeout} s"
        time.sleep(0.1)
    return result


def test_json_access_lines_carry_ids_and_no_secrets_or_personal_data(
    embedded: Deployment, tmp_path: Path
) -> None:
    log = tmp_path / "server.log"
    agent = {"X-API-Key": embedded.keys["acme-agent"]}
    admin = {"X-API-Key": embedded.keys["acme-admin"]}
    secrets: list[str] = [*embedded.keys.values()]
    env = {"LEADSCORE_LOG_FORMAT": "json", "LEADSCORE_SECRET_KEY": new_key()}
    with served(embedded, log, **env) as url, httpx.Client(base_url=url, timeout=30) as http:
        kept = http.post(SCORE, json=personal_lead("obs_1"),
                         headers=agent | {"X-Request-ID": "crm-sync.42:a"})  # fmt: skip
        replaced = http.post(SCORE, json=personal_lead("obs_2"),
                             headers=agent | {"X-Request-ID": 'x" forged=1'})  # fmt: skip
        fresh = http.get(f"{SCORE}/obs_1", headers=agent)
        token = http.post("/api/v1/auth/token", headers=agent).json()["access_token"]
        secrets.append(token)
        bearer = {"Authorization": f"Bearer {token}"}
        status = http.get("/api/v1/ml/model/status", headers=bearer)
        invalid = http.post(SCORE, json={"lead_id": "bad id", "lead_data": PERSONAL},
                            headers=agent)  # fmt: skip
        connection = http.post("/api/v1/crm/connections", json={"provider": "webhook"},
                               headers=admin).json()  # fmt: skip
        secrets.append(connection["signing_secret"])
        body = orjson.dumps({"lead_id": "obs_hook", "event_id": "evt-obs-1",
                             "lead_data": PERSONAL | {"source": "zapier"}})  # fmt: skip
        signature = hmac.new(connection["signing_secret"].encode(), body,
                             hashlib.sha256).hexdigest()  # fmt: skip
        hook = http.post(connection["webhook_path"], content=body,
                         headers={"X-LeadScore-Signature": signature,
                                  "Content-Type": "application/json"})  # fmt: skip
        wait_for(lambda: http.get(f"{SCORE}/obs_hook", headers=agent).status_code == 200)
    with sqlite3.connect(Path(embedded.settings.home) / "leadscore.db") as db:
        team = {"id": db.execute("SELECT id FROM teams WHERE name = 'acme'").fetchone()[0]}
    text = log.read_text()
    lines = [json.loads(line) for line in text.splitlines()]  # every line is JSON
    access = [line for line in lines if line["logger"] == "leadscore.access"]

    assert kept.status_code == replaced.status_code == fresh.status_code == 200
    assert status.status_code == 200
    assert invalid.status_code == 422
    assert hook.status_code == 200
    assert kept.headers["x-request-id"] == "crm-sync.42:a"
    assert re.fullmatch(r"[0-9a-f]{32}", replaced.headers["x-request-id"])
    by_id = {line["request_id"]: line for line in access}
    first = by_id["crm-sync.42:a"]
    assert (first["route"], first["method"], first["status"]) == (SCORE, "POST", 200)
    assert first["team"] == team["id"]
    assert first["ms"] > 0
    assert first["level"] == "info"
    read = by_id[fresh.headers["x-request-id"]]
    assert read["route"] == "/api/v1/ml/score/{lead_id}"  # the template, not the lead's path
    assert by_id[invalid.headers["x-request-id"]]["status"] == 422
    assert by_id[status.headers["x-request-id"]]["team"] == team["id"]
    assert len(access) == len({line["request_id"] for line in access})  # one line per request
    # The delivery's id on its access line and on the worker's line that applied it.
    received = by_id[hook.headers["x-request-id"]]
    assert received["webhook"].endswith("evt-obs-1")  # as stored: scoped by its connection
    assert received["route"] == "/api/v1/crm/webhook/{connection_id}"
    applied = [line for line in lines if line["msg"] == "webhook applied"]
    assert [line["webhook"] for line in applied] == [received["webhook"]]
    assert applied[0]["team"] == team["id"]
    assert not any(line["logger"] == "uvicorn.access" for line in lines)
    for value in [*secrets, NAME, EMAIL, PHONE, "Quimby", "555-0199"]:
        assert value not in text, value


def test_console_lines_are_for_a_person(embedded: Deployment, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    agent = {"X-API-Key": embedded.keys["acme-agent"]}
    with served(embedded, log, LEADSCORE_LOG_FORMAT="console") as url:
        answer = httpx.post(f"{url}{SCORE}", json=personal_lead("obs_console"), headers=agent)
    line = next(line for line in log.read_text().splitlines() if f" {SCORE} " in line)
    assert answer.status_code == 200
    assert re.match(r"\d\d:\d\d:\d\d\.\d{3} INFO +leadscore\.access: POST /api/v1/ml/score 200 ",
                    line), line  # fmt: skip
    assert f"request_id={answer.headers['x-request-id']}" in line
    assert "{" not in line  # not JSON


def test_the_access_log_can_be_switched_off(embedded: Deployment, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    agent = {"X-API-Key": embedded.keys["acme-agent"]}
    with served(embedded, log, LEADSCORE_ACCESS_LOG="false") as url:
        answer = httpx.post(f"{url}{SCORE}", json=personal_lead("obs_quiet"), headers=agent)
        metrics = httpx.get(f"{url}/metrics").text
    assert answer.status_code == 200
    assert "leadscore.access" not in log.read_text()
    assert 'route="/api/v1/ml/score"' in metrics  # the latency is still measured


def samples(text: str, family: str) -> list[tuple[dict[str, str], float]]:
    """The samples of one family (name as written, e.g. `leadscore_scores_total`)."""
    found = []
    for line in text.splitlines():
        match = re.fullmatch(rf"{family}(?:\{{(.*)\}})? (\S+)", line)
        if match:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
            found.append((labels, float(match.group(2))))
    return found


def total(text: str, family: str, **labels: str) -> float:
    return sum(v for have, v in samples(text, family) if labels.items() <= have.items())


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Deployment:
    return deploy("postgres-redis", tmp_path_factory.mktemp("observed-shared"), model_dir)


def test_two_workers_add_up_requests_scores_and_sockets(shared: Deployment) -> None:
    agent = {"X-API-Key": shared.keys["acme-agent"]}
    admin = {"X-API-Key": shared.keys["acme-admin"]}
    with serve_workers(shared, 2) as url:
        pids = set()
        n = 24
        for i in range(n):  # a new connection each: the kernel spreads them over both workers
            assert httpx.post(f"{url}{SCORE}", json=personal_lead(f"two_{i}"),
                              headers=agent).status_code == 200  # fmt: skip
            assert httpx.get(f"{url}{SCORE}/two_{i}", headers=agent).status_code == 200
            pids.add(httpx.get(f"{url}/api/v1/ml/model/status", headers=admin).json()["worker_pid"])
        assert httpx.get(f"{url}{SCORE}/nobody", headers=agent).status_code == 404
        ws_url = url.replace("http://", "ws://") + "/api/v1/ml/ws/live-scores"
        with contextlib.ExitStack() as stack:
            workers = set()
            sockets = 0
            while len(workers) < 2 or sockets < 4:
                assert sockets < 60, "every connection landed on one worker"
                ws = stack.enter_context(connect(ws_url, additional_headers=agent))
                workers.add(json.loads(ws.recv(timeout=5))["data"]["worker"])
                sockets += 1
            during = httpx.get(f"{url}/metrics").text

        def closed() -> str | None:
            text = httpx.get(f"{url}/metrics").text
            return text if total(text, "leadscore_ws_connections") == 0 else None

        after = wait_for(closed)
    assert len(pids) == 2, "requests never reached the second worker"
    duration = "leadscore_http_request_duration_seconds_count"
    assert total(during, duration, route=SCORE, method="POST", status="2xx") == n
    assert total(during, duration, route="/api/v1/ml/score/{lead_id}", status="2xx") == n
    assert total(during, duration, route="/api/v1/ml/score/{lead_id}", status="4xx") == 1
    assert not [s for s in samples(during, duration) if "two_" in s[0]["route"]]
    assert total(during, "leadscore_scores_total") == n
    teams = {labels["team"] for labels, _ in samples(during, "leadscore_scores_total")}
    assert len(teams) == 1
    assert teams.pop().isdigit()  # a team id, never a name
    assert total(during, "leadscore_ws_connections") == sockets  # live sum over both workers
    assert total(after, "leadscore_ws_connections") == 0
    assert total(after, "leadscore_crm_queue_depth", queue="inbox") == 0
    info = samples(after, "leadscore_model_info")
    assert [(s[0]["team"], s[0]["alias"]) for s in info] == [("global", "champion")]


def test_every_dashboard_query_asks_for_an_exposed_family(embedded: Deployment) -> None:
    running = embedded.start()
    try:
        with httpx.Client(base_url=running.url, timeout=30) as http:
            exposition = http.get("/metrics").text
    finally:
        running.stop()
    families = set(re.findall(r"^# TYPE (\w+) (\w+)$", exposition, re.MULTILINE))
    names = set()
    for family, kind in families:
        names.add(family)
        if kind == "counter":
            names |= {f"{family}_total", f"{family}_created"}
        if kind == "histogram":
            names |= {f"{family}_bucket", f"{family}_count", f"{family}_sum"}
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for row in dashboard["panels"] for p in [row, *row.get("panels", [])]]
    queried = [(p["title"], t["expr"]) for p in panels for t in p.get("targets", [])]
    queried += [(v["name"], v["definition"]) for v in dashboard["templating"]["list"]
                if v["type"] == "query"]  # fmt: skip
    assert len(queried) >= 10
    for title, expr in queried:
        used = set(re.findall(r"\b(leadscore_\w+)", expr))
        assert used, (title, expr)
        assert used <= names, (title, sorted(used - names))
    covered = {m for _, expr in queried for m in re.findall(r"\b(leadscore_\w+)", expr)}
    for family in ("leadscore_http_request_duration_seconds_bucket", "leadscore_scores_total",
                   "leadscore_ws_connections", "leadscore_ws_dropped_frames_total",
                   "leadscore_crm_queue_depth", "leadscore_crm_queue_oldest_seconds",
                   "leadscore_training_jobs_finished_total", "leadscore_model_info"):  # fmt: skip
        assert family in covered, family
