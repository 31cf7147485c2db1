"""The generic signed webhook end to end on a real server: a lead in our schema, signed with the
connection's secret, stored, scored, and its score posted (signed) to the connection's URL; on
SQLite + memory and PostgreSQL + Redis alike."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from leadscore.core.timestamps import iso_z
from tests.api.conftest import Deployment, ServerThread, free_port, hot_data
from tests.crm.conftest import wait_for
from tests.fakes.followupboss import LoopbackServer, ScoreReceiver

_lead_ids = itertools.count(1)


@pytest.fixture
def acme(crm_server: ServerThread, crm_deployment: Deployment) -> Iterator[httpx.Client]:
    """acme's admin on the server."""
    headers = {"X-API-Key": crm_deployment.keys["acme-admin"]}
    with httpx.Client(base_url=crm_server.url, headers=headers, timeout=30) as http:
        yield http


@pytest.fixture
def receiver() -> Iterator[tuple[ScoreReceiver, LoopbackServer]]:
    fake = ScoreReceiver()
    server = LoopbackServer(fake.app(), free_port()).start()
    yield fake, server
    server.stop()


def connect(acme: httpx.Client, **extra: Any) -> dict[str, Any]:
    response = acme.post("/api/v1/crm/connections", json={"provider": "webhook"} | extra)
    assert response.status_code == 201, response.text
    connection: dict[str, Any] = response.json()
    assert connection["signing_secret"]
    assert connection["webhook_path"] == f"/api/v1/crm/webhook/{connection['id']}"
    return connection


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post(
    acme: httpx.Client, connection: dict[str, Any], body: bytes, signature: str | None = None,
    **headers: str,
) -> httpx.Response:  # fmt: skip
    """Post as Zapier would: no key, the body signed with the connection's secret."""
    signature = signature or sign(connection["signing_secret"], body)
    return httpx.post(
        f"{acme.base_url}{connection['webhook_path']}", content=body,
        headers={"X-LeadScore-Signature": signature, "Content-Type": "application/json"}
        | headers,
    )  # fmt: skip


def new_lead_id() -> str:
    return f"zap-{next(_lead_ids)}"


def score_of(acme: httpx.Client, lead_id: str) -> dict[str, Any] | None:
    response = acme.get(f"/api/v1/ml/score/{lead_id}")
    return response.json() if response.status_code == 200 else None


def inbox(acme: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    response = acme.get("/api/v1/crm/inbox", params={"limit": 500} | params)
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()
    return entries


def test_a_signed_lead_is_scored_and_its_score_posted_back_signed(
    acme: httpx.Client, receiver: tuple[ScoreReceiver, LoopbackServer]
) -> None:
    fake, server = receiver
    connection = connect(acme, api_base=f"{server.url}/scores")
    lead_id = new_lead_id()
    data = {"name": "Sam", "source": "zapier", **hot_data()}
    body = orjson.dumps({"lead_id": lead_id, "event_id": f"evt-{lead_id}", "lead_data": data})

    answer = post(acme, connection, body)

    assert answer.status_code == 200, answer.text
    assert answer.json() == {"status": "accepted", "event_id": f"evt-{lead_id}"}
    score = wait_for(lambda: score_of(acme, lead_id))  # the id as given
    assert score["classification"] == "hot"
    detail = acme.get(f"/api/v1/ml/leads/{lead_id}").json()["lead_data"]
    assert detail["name"] == "Sam"
    assert len(detail["interaction_history"]) == 6
    posted = wait_for(lambda: fake.posts)[0]
    assert posted["headers"]["x-leadscore-signature"] == sign(
        connection["signing_secret"], posted["body"]
    )
    sent = orjson.loads(posted["body"])
    assert sent["lead_id"] == lead_id
    assert sent["ml_score"] == pytest.approx(score["ml_score"])
    assert sent["classification"] == "hot"


def test_without_a_url_nothing_is_written_back(acme: httpx.Client) -> None:
    connection = connect(acme)
    lead_id = new_lead_id()
    body = orjson.dumps({"lead_id": lead_id, "lead_data": {"name": "No URL"}})

    assert post(acme, connection, body).status_code == 200

    wait_for(lambda: score_of(acme, lead_id))
    time.sleep(0.6)  # a few sender passes
    outbox = acme.get("/api/v1/crm/outbox").json()
    assert not [row for row in outbox if row["lead_id"] == lead_id]


def test_a_bad_or_missing_signature_is_refused(acme: httpx.Client) -> None:
    connection = connect(acme)
    other = connect(acme)
    body = orjson.dumps({"lead_id": new_lead_id(), "lead_data": {}})
    before = len(inbox(acme))

    wrong_secret = post(acme, connection, body, sign(other["signing_secret"], body))
    tampered = post(acme, connection, body + b" ", sign(connection["signing_secret"], body))
    missing = httpx.post(f"{acme.base_url}{connection['webhook_path']}", content=body)

    assert [r.status_code for r in (wrong_secret, tampered, missing)] == [401, 401, 401]
    assert wrong_secret.json()["error"] == "invalid_signature"
    assert len(inbox(acme)) == before


def test_an_unknown_connection_is_404(acme: httpx.Client) -> None:
    connection = connect(acme)
    body = orjson.dumps({"lead_id": new_lead_id(), "lead_data": {}})
    signature = sign(connection["signing_secret"], body)
    fub = acme.post("/api/v1/crm/connections", json={
        "provider": "followupboss", "account_id": f"acct-{connection['id']}",
        "credentials": {"api_key": "k", "system": "s", "system_key": "x"},
    })  # fmt: skip
    assert fub.status_code == 201, fub.text

    signed = {"X-LeadScore-Signature": signature}
    unknown = httpx.post(f"{acme.base_url}/api/v1/crm/webhook/{2**31 - 1}", content=body,
                         headers=signed)  # fmt: skip
    not_generic = httpx.post(f"{acme.base_url}/api/v1/crm/webhook/{fub.json()['id']}",
                             content=body, headers=signed)  # fmt: skip

    assert unknown.status_code == 404
    assert unknown.json()["error"] == "unknown_account"
    assert not_generic.status_code == 404


def test_an_invalid_lead_is_422_and_recorded_for_the_admin(acme: httpx.Client) -> None:
    connection = connect(acme)
    body = orjson.dumps({"lead_id": "has spaces!", "event_id": "bad-1",
                         "lead_data": {"bedrooms": -2}})  # fmt: skip

    answer = post(acme, connection, body)

    assert answer.status_code == 422
    assert answer.json()["error"] == "malformed_webhook"
    rejected = [e for e in inbox(acme, status="rejected") if e["connection_id"] == connection["id"]]
    assert [e["event_id"] for e in rejected] == [f"{connection['id']}:bad-1"]
    assert "lead_id" in rejected[0]["error"]
    assert "bedrooms" in rejected[0]["error"]
    again = post(acme, connection, body)
    assert again.status_code == 422
    assert len([e for e in inbox(acme) if e["connection_id"] == connection["id"]]) == 1


def test_a_repeated_event_id_has_one_effect(acme: httpx.Client) -> None:
    connection = connect(acme)
    other = connect(acme)
    lead_id = new_lead_id()
    body = orjson.dumps({"lead_id": lead_id, "lead_data": {"name": "Once"}})

    first = post(acme, connection, body, **{"X-LeadScore-Event-Id": "zap-run-1"})
    wait_for(lambda: score_of(acme, lead_id))
    again = post(acme, connection, body, **{"X-LeadScore-Event-Id": "zap-run-1"})
    # The same event id from another connection is another event.
    elsewhere = post(acme, other, body, **{"X-LeadScore-Event-Id": "zap-run-1"})

    assert first.json() == {"status": "accepted", "event_id": "zap-run-1"}
    assert again.json() == {"status": "duplicate", "event_id": "zap-run-1"}
    assert elsewhere.json()["status"] == "accepted"
    wait_for(lambda: all(e["status"] == "done" for e in inbox(acme)
                         if e["connection_id"] in (connection["id"], other["id"])))  # fmt: skip
    mine = [e for e in inbox(acme) if e["connection_id"] == connection["id"]]
    assert len(mine) == 1
    # Without an event id the body is the event: the same body again is a repeat.
    anonymous = orjson.dumps({"lead_id": new_lead_id()})
    digest_first = post(acme, other, anonymous)
    digest_again = post(acme, other, anonymous)
    assert digest_first.json()["event_id"].startswith("sha256:")
    assert digest_again.json() == {"status": "duplicate",
                                   "event_id": digest_first.json()["event_id"]}  # fmt: skip


def test_an_outcome_with_the_lead_is_recorded(acme: httpx.Client) -> None:
    connection = connect(acme)
    lead_id = new_lead_id()
    won_at = datetime.now(UTC) - timedelta(hours=1)
    body = orjson.dumps({"lead_id": lead_id, "lead_data": {"name": "Won"},
                         "outcome": {"status": "won", "value": 450000,
                                     "occurred_at": iso_z(won_at)}})  # fmt: skip

    assert post(acme, connection, body).status_code == 200

    wait_for(lambda: all(e["status"] == "done" for e in inbox(acme)
                         if e["connection_id"] == connection["id"]))  # fmt: skip
    entry = next(e for e in inbox(acme) if e["connection_id"] == connection["id"])
    assert entry["error"] is None
    # Converted, and closed at the deal's value, are on record: the same again changes nothing.
    again = acme.post("/api/v1/ml/outcomes", json=[
        {"lead_id": lead_id, "outcome": "converted", "occurred_at": iso_z(won_at)},
        {"lead_id": lead_id, "outcome": "closed", "occurred_at": iso_z(won_at),
         "sale_price": 450000},
    ])  # fmt: skip
    assert again.status_code == 200, again.text
    assert [r["status"] for r in again.json()["results"]] == ["unchanged", "unchanged"]
