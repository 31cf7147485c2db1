"""GoHighLevel in and out, on a real server: signed webhooks stored then processed, leads
scored, interactions and outcomes recorded, scores written back to the fake's contacts API."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from leadscore.core.tables import CrmInboxRow, OutcomeRow
from tests.api.conftest import COLD, Deployment, ServerThread, hot_data, lead
from tests.fakes.gohighlevel import FakeGoHighLevel, Signer

from .conftest import SCORE_FIELD, TAGS, connect_ghl, example, wait_for

WEBHOOK = "/api/v1/crm/gohighlevel/webhook"


def _ids() -> tuple[str, str]:
    """A location and a contact of this test alone."""
    return f"loc{uuid.uuid4().hex[:16]}", f"c{uuid.uuid4().hex[:19]}"


@pytest.fixture
def admin(crm_deployment: Deployment) -> dict[str, str]:
    return {"X-API-Key": crm_deployment.keys["acme-admin"]}


@pytest.fixture
def fake(ghl: tuple[FakeGoHighLevel, ServerThread]) -> FakeGoHighLevel:
    ghl[0].down_until = 0.0
    ghl[0].refuse_status = None
    return ghl[0]


@pytest.fixture
def ghl_url(ghl: tuple[FakeGoHighLevel, ServerThread]) -> str:
    return ghl[1].url


def _send(
    api: httpx.Client, signer: Signer, event: dict[str, Any], **options: Any
) -> httpx.Response:
    body, headers = signer.delivery(event, **options)
    return api.post(WEBHOOK, content=body, headers=headers)


def _accept(api: httpx.Client, signer: Signer, event: dict[str, Any], **options: Any) -> None:
    response = _send(api, signer, event, **options)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "accepted"


def _scored(
    api: httpx.Client, admin: dict[str, str], lead_id: str, count: int = 1
) -> dict[str, Any]:
    """The lead's detail once it has `count` scores."""

    def ready() -> dict[str, Any] | None:
        response = api.get(f"/api/v1/ml/leads/{lead_id}", headers=admin)
        if response.status_code != 200:
            return None
        body: dict[str, Any] = response.json()
        return body if len(body["history"]) >= count else None

    result: dict[str, Any] = wait_for(ready)
    return result


def _inbox(server: ServerThread, event_id: str) -> CrmInboxRow | None:
    async def read() -> CrmInboxRow | None:
        async with server.services.sessions() as session:
            found = await session.execute(
                select(CrmInboxRow).where(CrmInboxRow.event_id == event_id)
            )
            return found.scalar_one_or_none()

    row: CrmInboxRow | None = server.call(read())
    return row


def test_contact_create_is_scored_and_its_score_written_back(
    api: httpx.Client,
    admin: dict[str, str],
    signer: Signer,
    fake: FakeGoHighLevel,
    ghl_url: str,
    crm_server: ServerThread,
) -> None:
    location, contact = _ids()
    connect_ghl(api, admin, ghl_url, location)
    event = example("ContactCreate", locationId=location, id=contact)
    answer = _send(api, signer, event, webhook_id=f"wh-{contact}")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"status": "accepted", "event_id": f"wh-{contact}"}
    lead = _scored(api, admin, f"ghl-{contact}")
    assert lead["lead_data"]["name"] == "John Deo"
    assert lead["lead_data"]["email"] == "JohnDeo@gmail.comm"
    assert lead["lead_data"]["source"] == "xyz form"
    score, classification = lead["latest"]["ml_score"], lead["latest"]["classification"]
    writes = wait_for(lambda: len(fake.writes(contact)) >= 3 and fake.writes(contact))
    put, added, removed = writes[:3]
    assert (put.method, put.path) == ("PUT", f"/contacts/{contact}")
    assert put.body == {"customFields": [{"id": SCORE_FIELD, "field_value": score}]}
    assert put.headers["authorization"] == "Bearer pit-test-token"
    assert put.headers["version"] == "2021-07-28"
    assert (added.method, added.body) == ("POST", {"tags": [TAGS[classification]]})
    assert removed.method == "DELETE"
    assert sorted(removed.body["tags"]) == sorted(t for c, t in TAGS.items() if c != classification)
    row = wait_for(
        lambda: (
            (r := _inbox(crm_server, f"wh-{contact}")) is not None and r.status != "pending" and r
        )
    )
    assert row.status == "done"
    assert row.processed_at is not None


def test_custom_fields_and_tags_fill_lead_fields_through_the_mapping(
    api: httpx.Client, admin: dict[str, str], signer: Signer, ghl_url: str
) -> None:
    location, contact = _ids()
    connect_ghl(api, admin, ghl_url, location)
    event = example(
        "ContactUpdate", locationId=location, id=contact, tags=["pre-approved", "buyer"],
        customFields=[{"id": "TimelineField0000001", "value": "1-3 months"},
                      {"id": "BudgetField00000001", "value": "$600k-$800k"},
                      {"id": "UnmappedField000001", "value": "ignored"}],
    )  # fmt: skip
    _accept(api, signer, event)
    data = _scored(api, admin, f"ghl-{contact}")["lead_data"]
    assert data["timeline"] == "1-3 months"
    assert data["budget_range"] == "$600k-$800k"
    assert data["pre_approved"] is True
    assert "ignored" not in str(data)


def test_an_inbound_message_is_an_interaction_timed_from_the_last_outbound_one(
    api: httpx.Client, admin: dict[str, str], signer: Signer, ghl_url: str
) -> None:
    location, contact = _ids()
    connect_ghl(api, admin, ghl_url, location)
    lead_id = f"ghl-{contact}"
    _accept(api, signer, example("ContactCreate", locationId=location, id=contact))
    _scored(api, admin, lead_id)
    asked = datetime.now(UTC) - timedelta(hours=3)
    outbound = example("InboundMessage.2", locationId=location, contactId=contact,
                       conversationId="conv1", dateAdded=asked.isoformat())  # fmt: skip
    assert outbound["type"] == "OutboundMessage"
    _accept(api, signer, outbound)
    reply = example(
        "InboundMessage.4", locationId=location, contactId=contact, conversationId="conv1",
        dateAdded=(asked + timedelta(hours=2)).isoformat(),
        body="<div>Is it still available? Can we see it Saturday?</div>",
    )  # fmt: skip
    _accept(api, signer, reply)
    lead = _scored(api, admin, lead_id, count=2)
    [interaction] = lead["lead_data"]["interaction_history"]
    assert interaction["type"] == "email_response"
    assert interaction["response_time_hours"] == pytest.approx(2.0, abs=0.01)
    assert interaction["questions_asked"] == 2
    assert interaction["message_length"] == len("Is it still available? Can we see it Saturday?")
    assert (
        lead["history"][0]["ml_score"] != lead["history"][1]["ml_score"]
        or lead["history"][0]["reasons"] != lead["history"][1]["reasons"]
    )


def test_an_appointment_is_an_interaction(
    api: httpx.Client, admin: dict[str, str], signer: Signer, ghl_url: str
) -> None:
    location, contact = _ids()
    connect_ghl(api, admin, ghl_url, location)
    _accept(api, signer, example("ContactCreate", locationId=location, id=contact))
    _scored(api, admin, f"ghl-{contact}")
    appointment = example("AppointmentCreate", locationId=location)
    appointment["appointment"] = appointment["appointment"] | {
        "contactId": contact,
        "dateAdded": datetime.now(UTC).isoformat(),
    }
    _accept(api, signer, appointment)
    lead = _scored(api, admin, f"ghl-{contact}", count=2)
    assert [i["type"] for i in lead["lead_data"]["interaction_history"]] == ["appointment"]


def _outcomes(server: ServerThread, lead_id: str) -> dict[str, OutcomeRow]:
    async def read() -> dict[str, OutcomeRow]:
        async with server.services.sessions() as session:
            rows = await session.execute(select(OutcomeRow).where(OutcomeRow.lead_id == lead_id))
            return {row.outcome: row for row in rows.scalars()}

    found: dict[str, OutcomeRow] = server.call(read())
    return found


def test_a_won_opportunity_records_the_conversion_and_the_sale(
    api: httpx.Client,
    admin: dict[str, str],
    signer: Signer,
    ghl_url: str,
    crm_server: ServerThread,
) -> None:
    location, contact = _ids()
    connect_ghl(api, admin, ghl_url, location)
    _accept(api, signer, example("ContactCreate", locationId=location, id=contact))
    _scored(api, admin, f"ghl-{contact}")
    won_at = datetime.now(UTC) - timedelta(minutes=5)
    won = example("OpportunityStatusUpdate", locationId=location, contactId=contact, status="won",
                  monetaryValue=450000, dateAdded=won_at.isoformat())  # fmt: skip
    _accept(api, signer, won)
    outcomes = wait_for(
        lambda: len(found := _outcomes(crm_server, f"ghl-{contact}")) == 2 and found
    )
    assert outcomes["closed"].sale_price == 450000
    assert outcomes["converted"].occurred_at == won_at
    lost = example("OpportunityStatusUpdate", locationId=location, contactId="nobody-here",
                   status="lost")  # fmt: skip
    answer = _send(api, signer, lost, webhook_id="wh-lost-unknown")
    assert answer.status_code == 200
    row = wait_for(
        lambda: (
            (r := _inbox(crm_server, "wh-lost-unknown")) is not None and r.status != "pending" and r
        )
    )
    assert row.status == "done"
    assert "skipped" in (row.error or "")


def test_an_open_opportunity_changes_nothing(
    api: httpx.Client,
    admin: dict[str, str],
    signer: Signer,
    ghl_url: str,
    crm_server: ServerThread,
) -> None:
    location, contact = _ids()
    connect_ghl(api, admin, ghl_url, location)
    _accept(api, signer, example("ContactCreate", locationId=location, id=contact))
    _scored(api, admin, f"ghl-{contact}")
    event = example("OpportunityStatusUpdate", locationId=location, contactId=contact)
    assert event["status"] == "open"
    _accept(api, signer, event, webhook_id=f"open-{contact}")
    wait_for(
        lambda: (r := _inbox(crm_server, f"open-{contact}")) is not None and r.status == "done"
    )
    assert _outcomes(crm_server, f"ghl-{contact}") == {}


def test_a_repeated_webhook_answers_200_and_changes_nothing(
    api: httpx.Client, admin: dict[str, str], signer: Signer, fake: FakeGoHighLevel, ghl_url: str
) -> None:
    location, contact = _ids()
    connect_ghl(api, admin, ghl_url, location)
    body, headers = signer.delivery(example("ContactCreate", locationId=location, id=contact),
                                    webhook_id=f"dup-{contact}")  # fmt: skip
    first = api.post(WEBHOOK, content=body, headers=headers)
    second = api.post(WEBHOOK, content=body, headers=headers)
    assert first.json()["status"] == "accepted"
    assert second.status_code == 200
    assert second.json()["status"] == "duplicate"
    lead = _scored(api, admin, f"ghl-{contact}")
    wait_for(lambda: len(fake.writes(contact)) >= 3)
    # A flat payload has no webhookId: the same body is the same event.
    flat, flat_headers = signer.delivery(example("ContactUpdate", locationId=location, id=contact),
                                         wrapped=False)  # fmt: skip
    assert api.post(WEBHOOK, content=flat, headers=flat_headers).json()["status"] == "accepted"
    assert api.post(WEBHOOK, content=flat, headers=flat_headers).json()["status"] == "duplicate"
    lead = _scored(api, admin, f"ghl-{contact}", count=2)
    assert len(lead["history"]) == 2
    # The same data scores the same: no second write-back (under the 5-point threshold).
    assert len(fake.writes(contact)) == 3, (
        lead["history"],
        api.get("/api/v1/crm/outbox", headers=admin).json(),
    )


def test_forged_stale_unknown_and_malformed_webhooks_are_refused(
    api: httpx.Client, admin: dict[str, str], signer: Signer, ghl_url: str
) -> None:
    location, contact = _ids()
    connect_ghl(api, admin, ghl_url, location)
    event = example("ContactCreate", locationId=location, id=contact)
    body, headers = signer.delivery(event)
    missing = api.post(WEBHOOK, content=body, headers={"content-type": "application/json"})
    assert missing.status_code == 401
    assert missing.json()["error"] == "invalid_signature"
    tampered = api.post(WEBHOOK, content=body.replace(b"John", b"Jane"), headers=headers)
    assert tampered.status_code == 401
    garbage = api.post(WEBHOOK, content=body, headers=headers | {"x-wh-signature": "not base64!"})
    assert garbage.status_code == 401
    other_key = Signer()
    forged = api.post(
        WEBHOOK, content=body, headers=headers | {"x-wh-signature": other_key.sign(body)}
    )
    assert forged.status_code == 401
    stale = _send(api, signer, event, now=datetime.now(UTC) - timedelta(minutes=6))
    assert stale.status_code == 401
    assert stale.json()["error"] == "stale_webhook"
    future = _send(api, signer, event, now=datetime.now(UTC) + timedelta(minutes=6))
    assert future.status_code == 401
    unknown = _send(api, signer, example("ContactCreate", locationId="nobody-connected-this"))
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "unknown_account"
    not_json = b"{not json"
    broken = api.post(WEBHOOK, content=not_json, headers={"x-wh-signature": signer.sign(not_json)})
    assert broken.status_code == 422
    no_contact = {k: v for k, v in event.items() if k != "id"}
    malformed = _send(api, signer, no_contact, webhook_id=f"bad-{contact}")
    assert malformed.status_code == 422
    assert malformed.json()["error"] == "malformed_webhook"
    rejected = api.get("/api/v1/crm/inbox", params={"status": "rejected"}, headers=admin).json()
    assert f"bad-{contact}" in {entry["event_id"] for entry in rejected}
    assert api.get(f"/api/v1/ml/leads/ghl-{contact}", headers=admin).status_code == 404
    ignored = _send(api, signer, {"type": "NoteCreate", "locationId": location, "id": "n1"})
    assert ignored.status_code == 200
    assert ignored.json()["status"] == "ignored"


def test_any_score_of_a_linked_lead_is_written_back_until_the_contact_is_deleted(
    api: httpx.Client,
    admin: dict[str, str],
    signer: Signer,
    fake: FakeGoHighLevel,
    ghl_url: str,
    crm_server: ServerThread,
) -> None:
    location, contact = _ids()
    lead_id = f"ghl-{contact}"
    connect_ghl(api, admin, ghl_url, location)
    _accept(api, signer, example("ContactCreate", locationId=location, id=contact))
    first = _scored(api, admin, lead_id)["latest"]
    wait_for(lambda: len(fake.writes(contact)) >= 3)
    # Scored through the API (the write-behind path): the CRM hears of the new class too.
    hot = api.post("/api/v1/ml/score", json=lead(lead_id, **hot_data()), headers=admin).json()
    assert hot["classification"] == "hot" != first["classification"]
    writes = wait_for(lambda: len(fake.writes(contact)) >= 6 and fake.writes(contact))
    assert writes[3].body == {"customFields": [{"id": SCORE_FIELD, "field_value": hot["ml_score"]}]}
    assert writes[4].body == {"tags": [TAGS["hot"]]}
    _accept(api, signer, example("ContactDelete", locationId=location, id=contact),
                 webhook_id=f"del-{contact}")  # fmt: skip
    wait_for(lambda: (r := _inbox(crm_server, f"del-{contact}")) is not None and r.status == "done")
    cold = api.post("/api/v1/ml/score", json=lead(lead_id, **COLD), headers=admin).json()
    assert cold["classification"] != "hot"
    _scored(api, admin, lead_id, count=3)
    crm_server.call(crm_server.services.writer.barrier())
    assert len(fake.writes(contact)) == 6


def test_write_backs_wait_out_a_crm_outage_and_failures_are_listed_and_retried(
    api: httpx.Client, admin: dict[str, str], signer: Signer, fake: FakeGoHighLevel, ghl_url: str
) -> None:
    location, contact = _ids()
    connect_ghl(api, admin, ghl_url, location)
    fake.down_until = time.monotonic() + 3.0
    _accept(api, signer, example("ContactCreate", locationId=location, id=contact))
    _scored(api, admin, f"ghl-{contact}")

    def entry() -> dict[str, Any] | None:
        rows = api.get("/api/v1/crm/outbox", headers=admin).json()
        return next((r for r in rows if r["contact_id"] == contact), None)

    retrying = wait_for(lambda: (e := entry()) is not None and e["attempts"] >= 1 and e)
    assert retrying["status"] == "pending"
    assert "503" in retrying["last_error"]
    sent = wait_for(lambda: (e := entry()) is not None and e["status"] == "sent" and e, timeout=20)
    assert sent["attempts"] >= 2
    assert len(fake.writes(contact)) == 3
    # A refusal (not worth retrying) fails at once and is listed; the retry route sends it again.
    other = f"c{uuid.uuid4().hex[:19]}"
    fake.refuse_status = 422
    _accept(api, signer, example("ContactCreate", locationId=location, id=other))

    def failures() -> list[dict[str, Any]]:
        rows = api.get("/api/v1/crm/outbox", params={"status": "failed"}, headers=admin).json()
        return [r for r in rows if r["contact_id"] == other]

    failed = wait_for(failures)
    assert "422" in failed[0]["last_error"]
    fake.refuse_status = None
    retried = api.post("/api/v1/crm/outbox/retry", json={"ids": [failed[0]["id"]]}, headers=admin)
    assert retried.status_code == 200
    assert retried.json() == {"retried": 1}
    wait_for(lambda: len(fake.writes(other)) >= 3)


def test_only_admins_see_the_queues(api: httpx.Client, crm_deployment: Deployment) -> None:
    for role in ("agent", "viewer"):
        headers = {"X-API-Key": crm_deployment.keys[f"acme-{role}"]}
        assert api.get("/api/v1/crm/outbox", headers=headers).status_code == 403
        assert api.get("/api/v1/crm/inbox", headers=headers).status_code == 403
        assert api.post("/api/v1/crm/outbox/retry", headers=headers).status_code == 403
    assert api.get("/api/v1/crm/outbox").status_code == 401
    admin = {"X-API-Key": crm_deployment.keys["acme-admin"]}
    too_big = api.post("/api/v1/crm/outbox/retry", json={"ids": [2**70]}, headers=admin)
    assert too_big.status_code == 422  # not an id any database holds: refused, not a 500


def test_write_backs_keep_within_the_locations_rate_limit(
    api: httpx.Client, admin: dict[str, str], signer: Signer, fake: FakeGoHighLevel, ghl_url: str
) -> None:
    location, _ = _ids()
    token = f"pit-{location}"
    fake.tokens.add(token)
    connect_ghl(api, admin, ghl_url, location, token=token)
    contacts = [f"c{uuid.uuid4().hex[:19]}" for _ in range(40)]  # 120 requests: over 100 in 10 s
    refused = fake.refused_429
    started = time.monotonic()
    for contact in contacts:
        _accept(api, signer, example("ContactCreate", locationId=location, id=contact))
    wait_for(lambda: all(len(fake.writes(c)) >= 3 for c in contacts), timeout=40)
    assert time.monotonic() - started >= fake.window * 0.9  # the last 20 waited for the window
    assert fake.per_window(token) <= fake.limit
    assert fake.refused_429 == refused  # held back by our own count, never by GoHighLevel's


def test_while_the_crm_is_down_only_a_contacts_latest_score_is_kept_to_send(
    api: httpx.Client, admin: dict[str, str], signer: Signer, fake: FakeGoHighLevel, ghl_url: str
) -> None:
    location, contact = _ids()
    lead_id = f"ghl-{contact}"
    connect_ghl(api, admin, ghl_url, location)
    fake.down_until = time.monotonic() + 4.0
    _accept(api, signer, example("ContactCreate", locationId=location, id=contact))
    first = _scored(api, admin, lead_id)["latest"]

    def entries() -> list[dict[str, Any]]:
        rows = api.get("/api/v1/crm/outbox", headers=admin).json()
        return [r for r in rows if r["contact_id"] == contact]

    def queued(score: float) -> list[dict[str, Any]] | None:
        rows = entries()
        return rows if any(r["payload"]["ml_score"] == score for r in rows) else None

    hot = api.post("/api/v1/ml/score", json=lead(lead_id, **hot_data()), headers=admin).json()
    assert hot["classification"] == "hot" != first["classification"]
    wait_for(lambda: queued(hot["ml_score"]))
    cold = api.post("/api/v1/ml/score", json=lead(lead_id, **COLD), headers=admin).json()
    assert cold["classification"] != "hot"
    # The latest queued: what was queued before it for the contact is superseded, unsent.
    rows = wait_for(lambda: queued(cold["ml_score"]))
    assert len(rows) == 3
    assert [e["status"] for e in rows[1:]] == ["superseded", "superseded"]  # newest first
    wait_for(lambda: len(fake.writes(contact)) >= 3, timeout=20)
    time.sleep(0.5)
    writes = fake.writes(contact)
    assert len(writes) == 3  # one write-back: the latest score's
    assert writes[0].body == {"customFields": [{"id": SCORE_FIELD,
                                                "field_value": cold["ml_score"]}]}  # fmt: skip
    assert writes[1].body == {"tags": [TAGS[cold["classification"]]]}
