"""Live events over a real WebSocket client against a running server, on both backends."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from leadscore.app import create_app
from leadscore.live.events import model_status

from .conftest import COLD, Deployment, ServerThread, batch_lead, hot_data, lead

Headers = Callable[[str], dict[str, str]]
PATH = "/api/v1/ml/ws/live-scores"


def open_ws(
    server: ServerThread,
    headers: dict[str, str] | None = None,
    subprotocols: list[str] | None = None,
    **query: str,
) -> ClientConnection:
    url = f"ws://127.0.0.1:{server.port}{PATH}" + (f"?{urlencode(query)}" if query else "")
    return connect(
        url,
        additional_headers=headers,
        subprotocols=subprotocols,  # type: ignore[arg-type]
        open_timeout=10,
    )


def receive(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(ws.recv(timeout=timeout))
    return message


def wait_for(
    ws: ClientConnection,
    event_type: str,
    timeout: float = 5.0,
    where: Callable[[dict[str, Any]], bool] = lambda _m: True,
) -> dict[str, Any]:
    """The next message of this type (and predicate), skipping heartbeats and other events."""
    deadline = time.monotonic() + timeout
    while True:
        message = receive(ws, max(0.01, deadline - time.monotonic()))
        if message["event_type"] == event_type and where(message):
            return message


def nothing_more(ws: ClientConnection, event_type: str, seconds: float = 0.5) -> bool:
    """True when no message of this type arrives within `seconds`."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = receive(ws, left)
        except TimeoutError:
            return True
        if message["event_type"] == event_type:
            return False
    return True


def subscribe(ws: ClientConnection, events: list[str], **filters: Any) -> dict[str, Any]:
    request: dict[str, Any] = {"type": "subscribe", "events": events}
    if filters:
        request["filters"] = filters
    ws.send(json.dumps(request))
    return wait_for(ws, "subscription_updated")


def token_for(client: httpx.Client, key: str) -> str:
    response = client.post("/api/v1/auth/token", json={"api_key": key})
    assert response.status_code == 200
    token: str = response.json()["access_token"]
    return token


@pytest.fixture
def agent_ws(server: ServerThread, as_role: Headers) -> Iterator[ClientConnection]:
    with open_ws(server, as_role("acme-agent")) as ws:
        assert receive(ws)["event_type"] == "connection_established"
        yield ws


# --- authentication -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        ({}, {}),
        ({"Authorization": "Bearer not-a-jwt"}, {}),
        ({"X-API-Key": "lsk_nope"}, {}),
        ({}, {"token": "not-a-jwt"}),
    ],
    ids=["none", "bad-bearer", "bad-key", "bad-query-token"],
)
def test_missing_or_bad_credentials_are_refused_with_4401(
    server: ServerThread, headers: dict[str, str], query: dict[str, str]
) -> None:
    with open_ws(server, headers, **query) as ws, pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=5)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4401
    assert closed.value.rcvd.reason


def test_token_by_header_subprotocol_or_query(
    server: ServerThread, client: httpx.Client, as_role: Headers
) -> None:
    token = token_for(client, as_role("acme-viewer")["X-API-Key"])
    ways = [
        {"headers": {"Authorization": f"Bearer {token}"}},
        {"subprotocols": ["bearer", token]},  # what a browser can do
        {"token": token},
    ]
    for way in ways:
        with open_ws(server, **way) as ws:  # type: ignore[arg-type]
            hello = receive(ws)
            assert hello["event_type"] == "connection_established"
            assert hello["data"]["team"] == "acme"
            assert hello["data"]["role"] == "viewer"
            if "subprotocols" in way:
                assert ws.subprotocol == "bearer"


# --- protocol -------------------------------------------------------------------------------


def test_envelope_ping_status_and_bad_messages_keep_the_connection(
    agent_ws: ClientConnection,
) -> None:
    ws = agent_ws
    ws.send(json.dumps({"type": "ping", "id": 7}))
    pong = wait_for(ws, "pong")
    assert set(pong) == {"event_type", "event_id", "timestamp", "data"}
    assert pong["data"]["id"] == 7
    for bad, code in [
        ("{not json", "invalid_json"),
        (json.dumps({"type": "dance"}), "invalid_message"),
        (json.dumps(["subscribe"]), "invalid_message"),
        (json.dumps({"type": "subscribe", "events": ["lead_scored", "pong"]}), "invalid_message"),
        (json.dumps({"type": "subscribe", "filters": {"min_score": 120}}), "invalid_message"),
        (json.dumps({"type": "subscribe", "filters": {"classification": ["lukewarm"]}}),
         "invalid_message"),
    ]:  # fmt: skip
        ws.send(bad)
        error = wait_for(ws, "error")
        assert error["data"]["code"] == code, bad
    ws.send(b"\x00binary")
    assert wait_for(ws, "error")["data"]["code"] == "invalid_message"
    ws.send(json.dumps({"type": "get_status"}))
    status = wait_for(ws, "status")["data"]
    assert status["state"] == "open"
    assert status["subscriptions"]["events"] == []  # the bad subscribes changed nothing
    assert status["messages_received"] >= 9


def test_subscribe_filters_and_unsubscribe(
    agent_ws: ClientConnection, client: httpx.Client, as_role: Headers
) -> None:
    ws = agent_ws
    updated = subscribe(ws, ["lead_scored"], min_score=50, classification=["hot", "warm"])
    assert updated["data"]["events"] == ["lead_scored"]
    assert updated["data"]["filters"] == {"min_score": 50.0, "classification": ["hot", "warm"]}
    headers = as_role("acme-agent")
    cold = client.post("/api/v1/ml/score", json=lead("live_cold", **COLD), headers=headers).json()
    hot = client.post(
        "/api/v1/ml/score", json=lead("live_hot", **hot_data(), source="Zillow"), headers=headers
    ).json()
    assert cold["ml_score"] < 50 <= hot["ml_score"]
    event = wait_for(ws, "lead_scored")
    assert event["data"]["lead_id"] == "live_hot"  # the cold lead was filtered out
    data = event["data"]
    assert data["ml_score"] == hot["ml_score"]
    assert data["classification"] == hot["classification"]
    assert data["confidence"] == hot["ml_confidence"]
    assert data["name"] == "Sarah Chen"
    assert data["model_version"] == hot["model_version"]
    assert data["expected_commission"] == hot["commission"]["expected_commission"]
    assert [r["feature"] for r in data["reasons"]] == [r["feature"] for r in hot["reasons"][:3]]
    assert data["change"] is None  # its first score
    assert data["source"] == "Zillow"
    asked = hot["qualification"]["ask_next"]
    assert data["top_question"] == (
        {"field": asked[0]["field"], "question": asked[0]["question"]} if asked else None
    )
    changed = hot_data() | {"location_preference": "78701", "financing": "cash"}
    warmer = client.post("/api/v1/ml/score", json=lead("live_hot", **changed), headers=headers)
    assert warmer.json()["ml_score"] >= 50  # still passes the filter
    again = wait_for(ws, "lead_scored")["data"]
    assert again["change"]["points"] == pytest.approx(warmer.json()["ml_score"] - hot["ml_score"])
    assert again["change"]["from_score"] == hot["ml_score"]
    ws.send(json.dumps({"type": "unsubscribe", "events": ["lead_scored"]}))
    assert wait_for(ws, "subscription_updated")["data"]["events"] == []
    client.post("/api/v1/ml/score", json=lead("live_hot_2", **hot_data()), headers=headers)
    assert nothing_more(ws, "lead_scored")


def test_escalation_event_says_why(
    agent_ws: ClientConnection, client: httpx.Client, as_role: Headers
) -> None:
    ws = agent_ws
    subscribe(ws, ["escalation"])
    headers = as_role("acme-agent")
    unsure = None
    for views in (15, 30, 5, 60):  # moderately engaged leads are the ones the model is unsure of
        body = lead(
            f"live_esc_{views}", **(hot_data() | {"web_activity": {"properties_viewed": views}})
        )
        body["lead_data"]["interaction_history"] = hot_data()["interaction_history"][:1]
        scored = client.post("/api/v1/ml/score", json=body, headers=headers).json()
        if scored["escalation_recommended"]:
            unsure = scored
            break
    assert unsure is not None, "no lead was escalated"
    event = wait_for(ws, "escalation")["data"]
    assert event["lead_id"] == unsure["lead_id"]
    assert event["confidence"] == unsure["ml_confidence"] < event["threshold"]
    assert "below the review threshold" in event["reason"]


def test_batch_progress_arrives_in_order(
    agent_ws: ClientConnection, client: httpx.Client, as_role: Headers
) -> None:
    ws = agent_ws
    subscribe(ws, ["batch_processing"])
    leads = [batch_lead(f"live_batch_{i}") for i in range(60)] + [{"lead_id": "broken"}]
    response = client.post(
        "/api/v1/ml/batch-score", json={"leads": leads}, headers=as_role("acme-agent")
    )
    assert response.status_code == 200
    batch_id = response.json()["batch_id"]
    progress = []
    while not progress or progress[-1]["status"] != "completed":
        progress.append(wait_for(ws, "batch_processing")["data"])
    assert {p["batch_id"] for p in progress} == {batch_id}
    assert [p["status"] for p in progress] == ["started"] + ["in_progress"] * 2 + ["completed"], (
        progress
    )
    assert [p["completed"] for p in progress] == [0, 26, 51, 61]  # the broken lead counts at once
    assert [p["progress_percent"] for p in progress][-1] == 100.0
    assert all(p["total"] == 61 for p in progress)


def test_model_status_reaches_every_team(
    server: ServerThread, as_role: Headers, agent_ws: ClientConnection
) -> None:
    subscribe(agent_ws, ["model_status"])
    with open_ws(server, as_role("globex-viewer")) as other:
        receive(other)
        subscribe(other, ["model_status"])
        event = model_status("promoted", "v-test", {"by": "tests"})
        server.call(server.services.hub.broadcast_message(event))
        for ws in (agent_ws, other):
            data = wait_for(ws, "model_status")["data"]
            assert data == {
                "status": "promoted",
                "model_version": "v-test",
                "detail": {"by": "tests"},
            }


def test_teams_are_isolated_and_viewers_get_no_personal_data(
    server: ServerThread, client: httpx.Client, as_role: Headers
) -> None:
    with (
        open_ws(server, as_role("acme-viewer")) as viewer,
        open_ws(server, as_role("globex-admin")) as stranger,
    ):
        for ws in (viewer, stranger):
            receive(ws)
            subscribe(ws, ["lead_scored", "escalation", "batch_processing"])
        client.post("/api/v1/ml/score", json=lead("live_private"), headers=as_role("acme-agent"))
        seen = wait_for(viewer, "lead_scored")["data"]
        assert seen["lead_id"] == "live_private"
        assert seen["name"] is None  # viewers see scores, not who the lead is
        assert nothing_more(stranger, "lead_scored", 0.8)


def published(server: ServerThread) -> int:
    """Events this worker has handed to the bus (after everything emitted was flushed)."""
    return int(server.call(_flushed(server)))


async def _flushed(server: ServerThread) -> int:
    await server.services.events.flush()
    return server.services.events.published


def test_events_are_built_only_while_someone_listens(
    server: ServerThread, client: httpx.Client, as_role: Headers
) -> None:
    deadline = time.monotonic() + 10
    while not server.services.events.audience.certain:  # a new worker first hears the others
        assert time.monotonic() < deadline
        time.sleep(0.05)
    agent = as_role("acme-agent")
    before = published(server)
    client.post("/api/v1/ml/score", json=lead("quiet_1", **hot_data()), headers=agent)
    client.post("/api/v1/ml/batch-score", json={"leads": [batch_lead("quiet_2")]}, headers=agent)
    assert published(server) == before  # nobody listens: nothing built, nothing sent
    with open_ws(server, as_role("globex-admin")) as other_team:
        receive(other_team)
        subscribe(other_team, ["lead_scored"])
        client.post("/api/v1/ml/score", json=lead("quiet_3"), headers=agent)
        assert published(server) == before  # listeners of another team do not count
        with open_ws(server, as_role("acme-viewer")) as ws:
            receive(ws)
            subscribe(ws, ["lead_scored"])
            client.post("/api/v1/ml/score", json=lead("heard_1"), headers=agent)
            assert wait_for(ws, "lead_scored")["data"]["lead_id"] == "heard_1"
            assert published(server) == before + 1  # lead_scored only: nobody wants the rest
    client.post("/api/v1/ml/score", json=lead("quiet_4"), headers=agent)
    assert published(server) == before + 1  # the last listener left


def test_events_reach_clients_through_plain_asgi_too(
    deployment: Deployment, as_role: Headers
) -> None:
    """Under a server without the frames extension the hub sends each event through ASGI."""
    server = ServerThread(create_app(deployment.settings), ws="websockets-sansio").start()
    try:
        with (
            open_ws(server, as_role("acme-agent")) as ws,
            httpx.Client(base_url=server.url, timeout=30) as http,
        ):
            receive(ws)
            subscribe(ws, ["lead_scored", "batch_processing"])
            leads = [batch_lead(f"asgi_{i}") for i in range(30)]
            response = http.post(
                "/api/v1/ml/batch-score", json={"leads": leads}, headers=as_role("acme-agent")
            )
            assert response.status_code == 200
            seen = [wait_for(ws, "lead_scored")["data"]["lead_id"] for _ in leads]
            assert seen == [f"asgi_{i}" for i in range(30)]
            ws.send(json.dumps({"type": "get_status"}))
            assert wait_for(ws, "status")["data"]["direct_writes"] is False
    finally:
        server.stop()


# --- heartbeat, slow clients, admin endpoints ------------------------------------------------


def test_heartbeat_pings_and_idle_clients_are_closed(
    deployment: Deployment, as_role: Headers
) -> None:
    quick = deployment.start(ws_heartbeat_seconds=0.3, ws_idle_timeout_seconds=1.5)
    try:
        with (
            open_ws(quick, as_role("acme-agent")) as talkative,
            open_ws(quick, as_role("acme-agent")) as silent,
        ):
            receive(talkative)
            receive(silent)
            started = time.monotonic()
            while time.monotonic() - started < 2.5:
                message = receive(talkative)
                if message["event_type"] == "ping":
                    talkative.send(json.dumps({"type": "pong"}))
            heard = []
            with pytest.raises(ConnectionClosed) as closed:
                heard.extend(receive(silent)["event_type"] for _ in range(100))
            assert set(heard) == {"ping"}  # pinged, never answered
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 4408
            talkative.send(json.dumps({"type": "ping"}))
            assert wait_for(talkative, "pong")  # answering pings keeps a client open
    finally:
        quick.stop()


def test_a_stalled_client_does_not_delay_a_healthy_one(
    deployment: Deployment, as_role: Headers, deployment_keys: dict[str, str]
) -> None:
    server = deployment.start(ws_queue_size=150)  # one batch of events fits
    try:
        key = deployment_keys["acme-agent"]
        stalled = socket.socket()
        stalled.setsockopt(
            socket.SOL_SOCKET, socket.SO_RCVBUF, 4096
        )  # before connect: a tiny window
        stalled.connect(("127.0.0.1", server.port))
        stalled.sendall(
            f"GET {PATH} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            f"X-API-Key: {key}\r\n\r\n".encode()
        )
        handshake = b""
        while b"\r\n\r\n" not in handshake:
            handshake += stalled.recv(1024)
        assert handshake.startswith(b"HTTP/1.1 101")
        subscribe_frame = json.dumps({"type": "subscribe", "events": ["lead_scored"]}).encode()
        mask = b"\x00\x00\x00\x00"  # a client frame must be masked; a zero mask keeps the bytes
        stalled.sendall(bytes([0x81, 0x80 | len(subscribe_frame)]) + mask + subscribe_frame)
        # From here the stalled client reads nothing: its socket buffers fill, then its queue.
        time.sleep(0.3)
        with (
            open_ws(server, as_role("acme-agent")) as healthy,
            httpx.Client(base_url=server.url, timeout=30) as http,
        ):
            receive(healthy)
            subscribe(healthy, ["lead_scored"])
            headers = {"X-API-Key": key}
            admin = {"X-API-Key": deployment_keys["acme-admin"]}
            lags = []
            slow: list[dict[str, Any]] = []
            # Loopback send buffers grow to 4 MiB: it takes thousands of events to fill them.
            for b in range(150):
                leads = [batch_lead(f"stall_{b}_{i}") for i in range(100)]
                sent = time.monotonic()
                response = http.post(
                    "/api/v1/ml/batch-score", json={"leads": leads}, headers=headers
                )
                assert response.json()["succeeded"] == 100
                for i in range(100):
                    event = wait_for(healthy, "lead_scored", timeout=10)
                    assert event["data"]["lead_id"] == f"stall_{b}_{i}"  # nothing dropped, in order
                lags.append(time.monotonic() - sent)
                if b % 10 == 9:
                    listed = http.get("/api/v1/ml/ws/connections", headers=admin).json()
                    slow = [c for c in listed["connections"] if c["dropped"] > 0]
                    if slow:
                        break
            assert len(slow) == 1, "the stalled client never filled its queue"
            assert slow[0]["queue_depth"] <= 150
            assert max(lags) < 3.0, max(lags)  # the healthy client kept up the whole time
            metrics = http.get("/api/v1/ml/ws/metrics", headers=admin).json()
            assert metrics["dropped"] >= slow[0]["dropped"]
    finally:
        stalled.close()
        server.stop()


@pytest.fixture
def deployment_keys(deployment: Deployment) -> dict[str, str]:
    return deployment.keys


def test_admin_endpoints_show_connections_and_metrics(
    server: ServerThread, client: httpx.Client, as_role: Headers, agent_ws: ClientConnection
) -> None:
    subscribe(agent_ws, ["lead_scored", "escalation"], min_score=10)
    client.post(
        "/api/v1/ml/score", json=lead("live_admin", **hot_data()), headers=as_role("acme-agent")
    )
    wait_for(agent_ws, "lead_scored")
    for who, status in [("acme-agent", 403), ("acme-viewer", 403)]:
        assert client.get("/api/v1/ml/ws/metrics", headers=as_role(who)).status_code == status
        assert client.get("/api/v1/ml/ws/connections", headers=as_role(who)).status_code == status
    assert client.get("/api/v1/ml/ws/metrics").status_code == 401
    admin = as_role("acme-admin")
    metrics = client.get("/api/v1/ml/ws/metrics", headers=admin).json()
    assert metrics["connections"] >= 1
    assert metrics["messages_out"] >= 1
    assert metrics["messages_in"] >= 1
    assert metrics["subscriptions"]["lead_scored"] >= 1
    assert metrics["fanout_latency_ms"]["p99"] is not None
    listed = client.get("/api/v1/ml/ws/connections", headers=admin).json()["connections"]
    mine = [c for c in listed if c["subscriptions"]["filters"]["min_score"] == 10.0]
    assert mine
    assert (mine[0]["role"], mine[0]["team"]) == ("agent", "acme")
    assert {"id", "connected_at", "last_heartbeat", "queue_depth"} <= set(mine[0])
    assert mine[0]["direct_writes"] is True  # uvicorn with the frames extension
