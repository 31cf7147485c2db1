"""The qualification queue over real HTTP on both backends: a lead that needs qualifying enters
once, is claimed, resolved with answers that re-score it, and its outcome becomes a label."""

from __future__ import annotations

import json
import re
import uuid
from base64 import urlsafe_b64encode
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from websockets.sync.client import ClientConnection, connect

from leadscore.core.tables import OutcomeRow
from leadscore.core.timestamps import iso_z

from ..api.conftest import ServerThread
from .conftest import ANSWERS, answered, unsure_lead

Headers = Callable[[str], dict[str, str]]
QUEUE = "/api/v1/ml/escalations"


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def score(client: httpx.Client, headers: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/api/v1/ml/score", json=body, headers=headers)
    assert response.status_code == 200, response.text
    scored: dict[str, Any] = response.json()
    return scored


def queue(
    client: httpx.Client, headers: dict[str, str], lead_id: str | None = None, **params: Any
) -> list[dict[str, Any]]:
    """The queue's entries (of one lead when given), every page."""
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = params | ({"cursor": cursor} if cursor else {})
        response = client.get(QUEUE, params=query, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        found += page["escalations"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    return [e for e in found if lead_id is None or e["lead_id"] == lead_id]


def outcomes_of(server: ServerThread, team_lead: str) -> list[tuple[str, str]]:
    async def read() -> list[tuple[str, str]]:
        async with server.services.sessions() as session:
            rows = await session.execute(
                select(OutcomeRow.lead_id, OutcomeRow.outcome).where(
                    OutcomeRow.lead_id == team_lead
                )
            )
            return [(r.lead_id, r.outcome) for r in rows]

    result: list[tuple[str, str]] = server.call(read())
    return result


def test_a_thin_lead_is_queued_once_claimed_resolved_and_rescored(
    client: httpx.Client, as_role: Headers, server: ServerThread
) -> None:
    agent, viewer = as_role("acme-agent"), as_role("acme-viewer")
    body = unsure_lead(new_id("qual"))
    lead_id = body["lead_id"]
    first = score(client, agent, body)
    assert first["qualification"]["needed"]
    assert first["escalation_recommended"]
    score(client, agent, body)  # scored twice: still one entry while it is open
    [entry] = queue(client, viewer, lead_id, status="open")  # any role reads the queue
    assert entry["status"] == "open"
    assert entry["name"] == "Pat Doe"
    assert entry["ml_score_at_open"] == first["ml_score"]
    assert entry["ml_confidence_at_open"] == first["ml_confidence"]
    assert entry["reasons"] == first["qualification"]["reasons"]
    assert entry["ask_next"] == first["qualification"]["ask_next"] != []
    assert entry["qualification_needed"] is True
    assert entry["claimed_by"] is None

    escalation = entry["id"]
    assert client.post(f"{QUEUE}/{escalation}/claim", headers=viewer).status_code == 403
    other_team = as_role("globex-agent")
    assert client.post(f"{QUEUE}/{escalation}/claim", headers=other_team).status_code == 404
    assert queue(client, other_team, lead_id) == []
    claimed = client.post(f"{QUEUE}/{escalation}/claim", headers=agent)
    assert claimed.status_code == 200, claimed.text
    assert claimed.json()["status"] == "claimed"
    assert claimed.json()["claimed_by"].endswith("(agent)")
    again = client.post(f"{QUEUE}/{escalation}/claim", headers=as_role("acme-admin"))
    assert again.status_code == 409
    assert again.json()["error"] == "conflict"
    [listed] = queue(client, agent, lead_id)  # the default lists open and claimed
    assert listed["status"] == "claimed"

    resolve = f"{QUEUE}/{escalation}/resolve"
    later = iso_z(datetime.now(UTC) + timedelta(days=2))
    for bad, field in [
        ({}, "body"),
        ({"notes": "called, no answer"}, "body"),
        ({"pre_approved": "maybe"}, "pre_approved"),
        ({"timeline": "x" * 300}, "timeline"),
        ({"budget": "500k-750k", "colour": "blue"}, "colour"),
        ({"financing": "cash", "outcome": {"outcome": "won", "occurred_at": later}},
         "outcome.outcome"),
    ]:  # fmt: skip
        refused = client.post(resolve, json=bad, headers=agent)
        assert refused.status_code == 422, (bad, refused.text)
        assert field in [d["field"] for d in refused.json()["detail"]], refused.json()
    future = client.post(
        resolve, json=ANSWERS | {"outcome": {"outcome": "converted", "occurred_at": later}},
        headers=agent,
    )  # fmt: skip
    assert future.status_code == 422, future.text
    assert "outcome" in future.json()["detail"]
    [unchanged] = queue(client, agent, lead_id)
    assert unchanged["status"] == "claimed"
    assert unchanged["answers"] is None
    assert outcomes_of(server, lead_id) == []
    assert client.post(resolve, json=ANSWERS, headers=other_team).status_code == 404

    converted_at = iso_z(datetime.now(UTC) - timedelta(hours=1))
    done = client.post(
        resolve,
        json=ANSWERS | {"notes": "Pre-approved with First Bank",
                        "outcome": {"outcome": "converted", "occurred_at": converted_at}},
        headers=agent,
    )  # fmt: skip
    assert done.status_code == 200, done.text
    resolved = done.json()
    assert resolved["status"] == "resolved"
    assert resolved["resolved_by"].endswith("(agent)")
    assert resolved["answers"] == ANSWERS
    assert resolved["outcome"] == "converted"
    assert resolved["notes"] == "Pre-approved with First Bank"
    new = resolved["score"]
    assert new["ml_score"] > first["ml_score"]
    assert new["ml_confidence"] > first["ml_confidence"]
    assert new["qualification"]["needed"] is False  # the answers made the model confident
    assert resolved["ml_score"] == new["ml_score"]
    assert resolved["qualification_needed"] is False

    latest = client.get(f"/api/v1/ml/score/{lead_id}", headers=viewer).json()
    assert latest["ml_score"] == new["ml_score"]
    data = client.get(f"/api/v1/ml/leads/{lead_id}", headers=viewer).json()["lead_data"]
    assert (data["pre_approved"], data["timeline"], data["budget_range"], data["financing"]) == (
        True, "1-3 months", "500k-750k", "cash",
    )  # fmt: skip
    web = {k: v for k, v in data["web_activity"].items() if v is not None}
    assert web == body["lead_data"]["web_activity"]  # merged, not replaced
    assert outcomes_of(server, lead_id) == [(lead_id, "converted")]
    assert client.post(resolve, json=ANSWERS, headers=agent).status_code == 409
    assert queue(client, agent, lead_id) == []
    [closed] = queue(client, agent, lead_id, status="resolved")
    assert closed["id"] == escalation


def test_a_confident_rescore_resolves_an_open_entry_but_not_a_claimed_one(
    client: httpx.Client, as_role: Headers
) -> None:
    agent = as_role("acme-agent")
    open_lead, claimed_lead = unsure_lead(new_id("auto")), unsure_lead(new_id("kept"))
    score(client, agent, open_lead)
    score(client, agent, claimed_lead)
    [kept] = queue(client, agent, claimed_lead["lead_id"])
    assert client.post(f"{QUEUE}/{kept['id']}/claim", headers=agent).status_code == 200
    for body in (open_lead, claimed_lead):
        assert score(client, agent, answered(body))["qualification"]["needed"] is False
    [auto] = queue(client, agent, open_lead["lead_id"], status="resolved")
    assert auto["resolved_by"] == "rescored"
    assert auto["answers"] is None
    assert queue(client, agent, open_lead["lead_id"]) == []
    [still] = queue(client, agent, claimed_lead["lead_id"])  # stays with its person
    assert still["status"] == "claimed"
    assert still["resolved_by"] is None
    # Once resolved, a lead that needs qualifying again enters the queue again.
    score(client, agent, open_lead)
    [reopened] = queue(client, agent, open_lead["lead_id"], status="open")
    assert reopened["id"] > auto["id"]


def test_the_queue_pages_with_a_cursor_and_refuses_a_foreign_one(
    client: httpx.Client, as_role: Headers
) -> None:
    headers = as_role("globex-agent")
    ids = [new_id("page") for _ in range(5)]
    for lead_id in ids:
        score(client, headers, unsure_lead(lead_id))
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2, "status": "open"}
        if cursor:
            params["cursor"] = cursor
        page = client.get(QUEUE, params=params, headers=headers).json()
        assert len(page["escalations"]) <= 2
        seen += [e["lead_id"] for e in page["escalations"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [s for s in seen if s in ids] == ids  # oldest first, each once
    assert pages >= 3
    first = client.get(QUEUE, params={"limit": 1, "status": "open"}, headers=headers).json()
    foreign = client.get(
        QUEUE, params={"status": "claimed", "cursor": first["next_cursor"]}, headers=headers
    )
    assert foreign.status_code == 422
    assert foreign.json()["error"] == "invalid_cursor"
    for forged in ("not-a-cursor", json.dumps(["open", 10**20]), json.dumps(["open", "7"])):
        cursor = forged if forged.startswith("not") else urlsafe_b64encode(forged.encode()).decode()
        refused = client.get(QUEUE, params={"status": "open", "cursor": cursor}, headers=headers)
        assert refused.status_code == 422, refused.text
    assert client.get(QUEUE, params={"status": "done"}, headers=headers).status_code == 422
    assert client.post(f"{QUEUE}/999999999/claim", headers=headers).status_code == 404
    assert client.post(f"{QUEUE}/0/claim", headers=headers).status_code == 422


@pytest.fixture
def agent_ws(server: ServerThread, as_role: Headers) -> Iterator[ClientConnection]:
    url = f"ws://127.0.0.1:{server.port}/api/v1/ml/ws/live-scores"
    with connect(url, additional_headers=as_role("acme-agent"), open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=5))["event_type"] == "connection_established"
        yield ws


def documented_fields(event_type: str) -> set[str]:
    """The fields docs/websocket.md lists for an event: its row's names before the first '.'."""
    docs = Path(__file__).resolve().parents[2] / "docs" / "websocket.md"
    [row] = [ln for ln in docs.read_text().splitlines() if ln.startswith(f"| `{event_type}` |")]
    fields = row.split("|")[2].split(". ")[0]
    return set(re.findall(r"`([a-z_]+)`", fields))


def next_escalation(ws: ClientConnection, status: str, lead_id: str) -> dict[str, Any]:
    while True:
        message = json.loads(ws.recv(timeout=10))
        data = message["data"]
        if (
            message["event_type"] == "escalation"
            and data["status"] == status
            and data["lead_id"] == lead_id
        ):
            return dict(data)


def test_each_change_of_the_queue_is_an_escalation_event(
    agent_ws: ClientConnection, client: httpx.Client, as_role: Headers
) -> None:
    ws = agent_ws
    ws.send(json.dumps({"type": "subscribe", "events": ["escalation"]}))
    while json.loads(ws.recv(timeout=5))["event_type"] != "subscription_updated":
        pass
    agent = as_role("acme-agent")
    body = unsure_lead(new_id("event"))
    lead_id = body["lead_id"]
    scored = score(client, agent, body)
    recommended = next_escalation(ws, "recommended", lead_id)
    assert recommended["escalation_id"] is None
    assert recommended["threshold"] is not None
    opened = next_escalation(ws, "open", lead_id)
    [entry] = queue(client, agent, lead_id)
    assert opened["escalation_id"] == entry["id"]
    assert opened["ml_score"] == scored["ml_score"]
    assert opened["name"] == "Pat Doe"
    assert opened["reasons"] == scored["qualification"]["reasons"]
    client.post(f"{QUEUE}/{entry['id']}/claim", headers=agent)
    claimed = next_escalation(ws, "claimed", lead_id)
    assert claimed["by"].endswith("(agent)")
    assert claimed["escalation_id"] == entry["id"]
    resolved = client.post(f"{QUEUE}/{entry['id']}/resolve", json=ANSWERS, headers=agent).json()
    done = next_escalation(ws, "resolved", lead_id)
    for data in (recommended, opened, claimed, done):
        assert set(data) == documented_fields("escalation")
    assert done["ml_score"] == resolved["score"]["ml_score"]
    assert done["by"] == claimed["by"]
