"""nginx with the shipped config in front of two replicas on PostgreSQL and Redis."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import threading
import time
from pathlib import Path

import httpx
from websockets.sync.client import connect

from ..api.conftest import Deployment, ServeProcess, lead, serve_process
from ..api.test_live import PATH, receive, wait_for
from .conftest import REPLICA_ENV, running_nginx
from .proxy import Nginx

SCORE = "/api/v1/ml/score"
STATUS = "/api/v1/ml/model/status"


def agent(shared: Deployment) -> dict[str, str]:
    return {"X-API-Key": shared.keys["acme-agent"]}


def answering_pid(url: str, headers: dict[str, str]) -> int:
    """The replica process that answered, over a new connection (so nginx picks again)."""
    response = httpx.get(f"{url}{STATUS}", headers=headers)
    assert response.status_code == 200, response.text
    pid: int = response.json()["worker_pid"]
    return pid


def test_scores_through_nginx_are_served_by_both_replicas(
    nginx: Nginx, replicas: list[ServeProcess], shared: Deployment
) -> None:
    headers = agent(shared)
    for i in range(10):
        scored = httpx.post(f"{nginx.url}{SCORE}", json=lead(f"proxied_{i}"), headers=headers)
        assert scored.status_code == 200, scored.text
        latest = httpx.get(f"{nginx.url}{SCORE}/proxied_{i}", headers=headers)
        assert latest.status_code == 200  # whichever replica answers has the score at once
        assert latest.json()["ml_score"] == scored.json()["ml_score"]
    pids = {answering_pid(nginx.url, headers) for _ in range(8)}
    assert pids == {r.process.pid for r in replicas}  # round robin over both replicas


def test_the_request_id_passes_through_and_is_logged(nginx: Nginx, shared: Deployment) -> None:
    headers = agent(shared)
    given = httpx.get(
        f"{nginx.url}{SCORE}/proxied_0", headers=headers | {"X-Request-ID": "crm-42.a"}
    )
    assert given.headers["x-request-id"] == "crm-42.a"
    made = httpx.get(f"{nginx.url}/api/v1/ml/health")
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    # Not an id (spaces, far too long): replaced by nginx's own rather than passed on.
    odd = httpx.get(f"{nginx.url}/api/v1/ml/health", headers={"X-Request-ID": "a b" * 100})
    assert re.fullmatch(r"[0-9a-f]{32}", odd.headers["x-request-id"])
    assert len(given.headers.get_list("x-request-id")) == 1
    deadline = time.monotonic() + 5
    while not any("request_id=crm-42.a" in line for line in nginx.log_lines()):
        assert time.monotonic() < deadline, nginx.log_lines()[-5:]
        time.sleep(0.05)
    [line] = [line for line in nginx.log_lines() if "request_id=crm-42.a" in line]
    assert re.search(r"upstream=127\.0\.0\.1:\d+ upstream_status=200 ", line), line


def test_live_events_reach_websocket_clients_through_nginx(
    nginx: Nginx, replicas: list[ServeProcess], shared: Deployment
) -> None:
    headers = agent(shared)
    url = nginx.url.replace("http://", "ws://") + PATH
    with contextlib.ExitStack() as stack:
        clients = []
        workers: set[str] = set()
        while len(workers) < 2:  # nginx alternates: both replicas hold a client within a few
            assert len(clients) < 10, "every WebSocket landed on one replica"
            ws = stack.enter_context(connect(url, additional_headers=headers, open_timeout=10))
            hello = receive(ws, 10)
            assert hello["event_type"] == "connection_established"
            workers.add(hello["data"]["worker"])
            ws.send(json.dumps({"type": "subscribe", "events": ["lead_scored"]}))
            wait_for(ws, "subscription_updated")
            clients.append(ws)
        scored = httpx.post(f"{nginx.url}{SCORE}", json=lead("live_through_nginx"), headers=headers)
        assert scored.status_code == 200, scored.text
        for ws in clients:  # on both replicas: one of them made the score, Redis carried it
            event = wait_for(
                ws, "lead_scored", 10, lambda m: m["data"]["lead_id"] == "live_through_nginx"
            )
            assert event["data"]["ml_score"] == scored.json()["ml_score"]


def test_body_limits_follow_the_routes_and_answer_in_the_api_format(
    nginx: Nginx, shared: Deployment
) -> None:
    headers = agent(shared) | {"content-type": "application/json"}
    too_big = httpx.post(f"{nginx.url}{SCORE}", content=b" " * (2 << 20), headers=headers)
    assert too_big.status_code == 413
    assert too_big.json()["error"] == "payload_too_large"
    assert "proxy" in too_big.json()["detail"]  # refused by nginx, before any replica
    # 3 MiB is over the 1 MiB limit of every other route but within the leads upload's 20 MiB:
    # nginx passes it on and the replica itself judges the file (here: too many rows).
    upload = httpx.post(
        f"{nginx.url}/api/v1/ml/leads/upload",
        files={"file": ("leads.csv", io.BytesIO(b"no,lead,id\n" + b"x,y,z\n" * (3 << 19)))},
        headers=agent(shared),
        timeout=60,
    )
    assert upload.status_code == 413, upload.text
    assert upload.json()["detail"].startswith("leads.csv: more than 10,000 leads")


def test_json_is_compressed_and_metrics_stay_internal(
    nginx: Nginx, replicas: list[ServeProcess]
) -> None:
    schema = httpx.get(f"{nginx.url}/openapi.json", headers={"Accept-Encoding": "gzip"})
    assert schema.status_code == 200
    assert schema.headers["content-encoding"] == "gzip"
    assert "paths" in schema.json()
    assert httpx.get(f"{nginx.url}/metrics").status_code == 404
    assert httpx.get(f"{replicas[0].url}/metrics").status_code == 200  # Prometheus scrapes it


def test_a_killed_replica_leaves_the_service_answering(
    replicas: list[ServeProcess], shared: Deployment, nginx_path: str, tmp_path: Path
) -> None:
    headers = agent(shared)
    survivor = replicas[0]
    with (
        serve_process(shared, 1, **REPLICA_ENV) as doomed,
        running_nginx(tmp_path / "nginx", [survivor, doomed], nginx_path) as proxy,
    ):
        assert httpx.post(f"{proxy.url}{SCORE}", json=lead("failover"), headers=headers).is_success
        pids = {answering_pid(proxy.url, headers) for _ in range(6)}
        assert pids == {survivor.process.pid, doomed.process.pid}
        # Reads on kept-alive connections run while the replica dies: nginx retries each one
        # that hits the dead replica on the other (idempotent), so none of them fails.
        statuses: list[int] = []
        stop = threading.Event()

        def read_all_along() -> None:
            with httpx.Client(base_url=proxy.url, headers=headers) as client:
                while not stop.is_set():
                    statuses.append(client.get(f"{SCORE}/failover").status_code)

        reader = threading.Thread(target=read_all_along)
        reader.start()
        try:
            while len(statuses) < 20:
                time.sleep(0.01)
            os.killpg(doomed.process.pid, signal.SIGKILL)
            doomed.process.wait()
            seen = len(statuses)
            while len(statuses) < seen + 40:
                time.sleep(0.01)
        finally:
            stop.set()
            reader.join()
        assert set(statuses) == {200}, f"{len(statuses) - statuses.count(200)} failed reads"
        dead = doomed.url.removeprefix("http://")
        alive = survivor.url.removeprefix("http://")
        retried = [line for line in proxy.log_lines() if f"upstream={dead}, {alive} " in line]
        assert retried, "no read ever reached the dead replica: the failover went untested"
        # Writes after the kill: each one lands on the survivor, first try or retried there.
        for i in range(20):
            scored = httpx.post(f"{proxy.url}{SCORE}", json=lead(f"after_{i}"), headers=headers)
            assert scored.status_code == 200, scored.text
            assert answering_pid(proxy.url, headers) == survivor.process.pid
