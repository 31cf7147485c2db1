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
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from pydantic import SecretStr

from leadscore.core.timestamps import iso_z
from leadscore.crm.secrets import new_key
from tests.api.conftest import Deployment, ServerThread, deploy, free_port, hot_data
from tests.fakes.followupboss import LoopbackServer, ScoreReceiver

from .test_followupboss import wait_for

_lead_ids = itertools.count(1)


@pytest.fixture(scope="module", params=["sqlite-memory", "postgres-redis"])
def generic_deployment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, model_dir: Path
) -> Deployment:
    return deploy(request.param, tmp_path_factory.mktemp(request.param), model_dir)


@pytest.fixture(scope="module")
def generic_server(generic_deployment: Deployment) -> Iterator[ServerThread]:
    running = generic_deployment.start(
        secret_key=SecretStr(new_key()), crm_poll_seconds=0.2, crm_retry_base_seconds=0.2,
        crm_retry_max_seconds=1.0,
    )  # fmt: skip
    yield running
    running.stop()


@pytest.fixture
def api(generic_server: ServerThread, generic_deployment: Deployment) -> Iterator[httpx.Client]:
    """acme's admin on the server."""
    headers = {"X-API-Key": generic_deployment.keys["acme-admin"]}
    with httpx.Client(base_url=generic_server.url, headers=headers, timeout=30) as http:
        yield http


@pytest.fixture
def receiver() -> Iterator[tuple[ScoreReceiver, LoopbackServer]]:
    fake = ScoreReceiver()
    server = LoopbackServer(fake.app(), free_port()).start()
    yield fake, server
    server.stop()


def connect(api: httpx.Client, **extra: Any) -> dict[str, Any]:
    response = api.post("/api/v1/crm/connections", json={"provider": "webhook"} | extra)
    assert response.status_code == 201, response.text
    connection: dict[str, Any] = response.json()
    assert connection["signing_secret"]
    assert connection["webhook_path"] == f"/api/v1/crm/webhook/{connection['id']}"
    return connection


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post(
    api: httpx.Client, connection: dict[str, Any], body: bytes, signature: str | None = None,
    **headers: str,
) -> httpx.Response:  # fmt: skip
    """Post as Zapier would: no key, the body signed with the connection's secret."""
    signature = signature or sign(connection["signing_secret"], body)
    return httpx.post(
        f"{api.base_url}{connection['webhook_path']}", content=body,
        headers={"X-LeadScore-Signature": signature, "Content-Type": "application/json"}
        | headers,
    )  # fmt: skip


def new_lead_id() -> str:
    return f"zap-{next(_lead_ids)}"


def score_of(api: httpx.Client, lead_id: str) -> dict[str, Any] | None:
    response = api.get(f"/api/v1/ml/score/{lead_id}")
    return response.json() if response.status_code == 200 else None


def inbox(api: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    response = api.get("/api/v1/crm/inbox", params={"limit": 500} | params)
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()
    return entries


def test_a_signed_lead_is_scored_and_its_score_posted_back_signed(
    api: httpx.Client, receiver: tuple[ScoreReceiver, LoopbackServer]
) -> None:
    fake, server = receiver
    connection = connect(api, api_base=f"{server.url}/scores")
    lead_id = new_lead_id()
    data = {"name": "Sam", "source": "zapier", **hot_data()}
    body = orjson.dumps({"lead_id": lead_id, "event_id": f"evt-{lead_id}", "lead_data": data})

    answer = post(api, connection, body)

    assert answer.status_code == 200, answer.text
    assert answer.json() == {"status": "accepted", "event_id": f"evt-{lead_id}"}
    score = wait_for(lambda: score_of(api, lead_id), what="the score")  # the id as given
    assert score["classification"] == "hot"
    detail = api.get(f"/api/v1/ml/leads/{lead_id}").json()["lead_data"]
    assert detail["name"] == "Sam"
    assert len(detail["interaction_history"]) == 6
    posted = wait_for(lambda: fake.posts, what="the write-back")[0]
    assert posted["headers"]["x-leadscore-signature"] == sign(
        connection["signing_secret"], posted["body"]
    )
    sent = orjson.loads(posted["body"])
    assert sent["lead_id"] == lead_id
    assert sent["ml_score"] == pytest.approx(score["ml_score"])
    assert sent["classification"] == "hot"


def test_without_a_url_nothing_is_written_back(api: httpx.Client) -> None:
    connection = connect(api)
    lead_id = new_lead_id()
    body = orjson.dumps({"lead_id": lead_id, "lead_data": {"name": "No URL"}})

    assert post(api, connection, body).status_code == 200

    wait_for(lambda: score_of(api, lead_id), what="the score")
    time.sleep(0.6)  # a few sender passes
    outbox = api.get("/api/v1/crm/outbox").json()
    assert not [row for row in outbox if row["lead_id"] == lead_id]


def test_a_bad_or_missing_signature_is_refused(api: httpx.Client) -> None:
    connection = connect(api)
    other = connect(api)
    body = orjson.dumps({"lead_id": new_lead_id(), "lead_data": {}})
    before = len(inbox(api))

    wrong_secret = post(api, connection, body, sign(other["signing_secret"], body))
    tampered = post(api, connection, body + b" ", sign(connection["signing_secret"], body))
    missing = httpx.post(f"{api.base_url}{connection['webhook_path']}", content=body)

    assert [r.status_code for r in (wrong_secret, tampered, missing)] == [401, 401, 401]
    assert wrong_secret.json()["error"] == "invalid_signature"
    assert len(inbox(api)) == before


def test_an_unknown_connection_is_404(api: httpx.Client) -> None:
    connection = connect(api)
    body = orjson.dumps({"lead_id": new_lead_id(), "lead_data": {}})
    signature = sign(connection["signing_secret"], body)
    fub = api.post("/api/v1/crm/connections", json={
        "provider": "followupboss", "account_id": f"acct-{connection['id']}",
        "credentials": {"api_key": "k", "system": "s", "system_key": "x"},
    })  # fmt: skip
    assert fub.status_code == 201, fub.text

    signed = {"X-LeadScore-Signature": signature}
    unknown = httpx.post(f"{api.base_url}/api/v1/crm/webhook/{2**31 - 1}", content=body,
                         headers=signed)  # fmt: skip
    not_generic = httpx.post(f"{api.base_url}/api/v1/crm/webhook/{fub.json()['id']}",
                             content=body, headers=signed)  # fmt: skip

    assert unknown.status_code == 404
    assert unknown.json()["error"] == "unknown_account"
    assert not_generic.status_code == 404


def test_an_invalid_lead_is_422_and_recorded_for_the_admin(api: httpx.Client) -> None:
    connection = connect(api)
    body = orjson.dumps({"lead_id": "has spaces!", "event_id": "bad-1",
                         "lead_data": {"bedrooms": -2}})  # fmt: skip

    answer = post(api, connection, body)

    assert answer.status_code == 422
    assert answer.json()["error"] == "malformed_webhook"
    rejected = [e for e in inbox(api, status="rejected") if e["connection_id"] == connection["id"]]
    assert [e["event_id"] for e in rejected] == [f"{connection['id']}:bad-1"]
    assert "lead_id" in rejected[0]["error"]
    assert "bedrooms" in rejected[0]["error"]
    again = post(api, connection, body)
    assert again.status_code == 422
    assert len([e for e in inbox(api) if e["connection_id"] == connection["id"]]) == 1


def test_a_repeated_event_id_has_one_effect(api: httpx.Client) -> None:
    connection = connect(api)
    other = connect(api)
    lead_id = new_lead_id()
    body = orjson.dumps({"lead_id": lead_id, "lead_data": {"name": "Once"}})

    first = post(api, connection, body, **{"X-LeadScore-Event-Id": "zap-run-1"})
    wait_for(lambda: score_of(api, lead_id), what="the score")
    again = post(api, connection, body, **{"X-LeadScore-Event-Id": "zap-run-1"})
    # The same event id from another connection is another event.
    elsewhere = post(api, other, body, **{"X-LeadScore-Event-Id": "zap-run-1"})

    assert first.json() == {"status": "accepted", "event_id": "zap-run-1"}
    assert again.json() == {"status": "duplicate", "event_id": "zap-run-1"}
    assert elsewhere.json()["status"] == "accepted"
    wait_for(lambda: all(e["status"] == "done" for e in inbox(api)
                         if e["connection_id"] in (connection["id"], other["id"])))  # fmt: skip
    mine = [e for e in inbox(api) if e["connection_id"] == connection["id"]]
    assert len(mine) == 1
    # Without an event id the body is the event: the same body again is a repeat.
    anonymous = orjson.dumps({"lead_id": new_lead_id()})
    digest_first = post(api, other, anonymous)
    digest_again = post(api, other, anonymous)
    assert digest_first.json()["event_id"].startswith("sha256:")
    assert digest_again.json() == {"status": "duplicate",
                                   "event_id": digest_first.json()["event_id"]}  # fmt: skip


def test_an_outcome_with_the_lead_is_recorded(api: httpx.Client) -> None:
    connection = connect(api)
    lead_id = new_lead_id()
    won_at = datetime.now(UTC) - timedelta(hours=1)
    body = orjson.dumps({"lead_id": lead_id, "lead_data": {"name": "Won"},
                         "outcome": {"status": "won", "value": 450000,
                                     "occurred_at": iso_z(won_at)}})  # fmt: skip

    assert post(api, connection, body).status_code == 200

    wait_for(lambda: all(e["status"] == "done" for e in inbox(api)
                         if e["connection_id"] == connection["id"]))  # fmt: skip
    entry = next(e for e in inbox(api) if e["connection_id"] == connection["id"])
    assert entry["error"] is None
    # Converted, and closed at the deal's value, are on record: the same again changes nothing.
    again = api.post("/api/v1/ml/outcomes", json=[
        {"lead_id": lead_id, "outcome": "converted", "occurred_at": iso_z(won_at)},
        {"lead_id": lead_id, "outcome": "closed", "occurred_at": iso_z(won_at),
         "sale_price": 450000},
    ])  # fmt: skip
    assert again.status_code == 200, again.text
    assert [r["status"] for r in again.json()["results"]] == ["unchanged", "unchanged"]
