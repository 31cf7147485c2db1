"""Follow Up Boss end to end on a real server: signed webhooks in, the people read from a local
Follow Up Boss API, scored, and the score written back to it; on SQLite + memory and
PostgreSQL + Redis alike."""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.api.conftest import Deployment, ServerThread, free_port, hot_data
from tests.crm.conftest import wait_for
from tests.fakes.followupboss import (
    Credentials,
    FakeFollowUpBoss,
    LoopbackServer,
    sign,
    webhook,
)

WEBHOOK = "/api/v1/crm/followupboss/webhook"
CLASS_TAGS = {"hot": "LS Hot", "warm": "LS Warm", "cold": "LS Cold"}
_person_ids = itertools.count(1001)


@pytest.fixture
def acme(crm_server: ServerThread, crm_deployment: Deployment) -> Iterator[httpx.Client]:
    """acme's admin on the server."""
    headers = {"X-API-Key": crm_deployment.keys["acme-admin"]}
    with httpx.Client(base_url=crm_server.url, headers=headers, timeout=30) as http:
        yield http


@pytest.fixture
def fub() -> Iterator[tuple[FakeFollowUpBoss, LoopbackServer]]:
    """A Follow Up Boss account of its own (fresh credentials) served on loopback."""
    fake = FakeFollowUpBoss(
        Credentials(secrets.token_hex(8), "LeadScoreTests", secrets.token_hex(16))
    )
    server = LoopbackServer(fake.app(), free_port()).start()
    yield fake, server
    server.stop()


def connect(
    acme: httpx.Client, fake: FakeFollowUpBoss, server: LoopbackServer, **extra: Any
) -> dict[str, Any]:
    """Connect the fake's account to acme, its API base pointed at the fake."""
    creds = fake.credentials
    body = {
        "provider": "followupboss",
        "account_id": f"fub-{secrets.token_hex(4)}",
        "credentials": {"api_key": creds.api_key, "system": creds.system,
                        "system_key": creds.system_key},
        "api_base": server.url,
        "write_back": {"score_field": "customLeadScore", "class_tags": CLASS_TAGS,
                       "commission_field": "customExpectedCommission"},
        "field_mapping": {"customTimeline": "timeline", "customPreApproved": "pre_approved"},
    } | extra  # fmt: skip
    response = acme.post("/api/v1/crm/connections", json=body)
    assert response.status_code == 201, response.text
    connection: dict[str, Any] = response.json()
    return connection


def post(acme: httpx.Client, body: bytes, signature: str, **params: Any) -> httpx.Response:
    """A webhook as Follow Up Boss sends it: no key, only its signature."""
    return httpx.post(
        f"{acme.base_url}{WEBHOOK}", content=body, params=params,
        headers={"FUB-Signature": signature, "Content-Type": "application/json"},
    )  # fmt: skip


def score_of(acme: httpx.Client, lead_id: str) -> dict[str, Any] | None:
    response = acme.get(f"/api/v1/ml/score/{lead_id}")
    return response.json() if response.status_code == 200 else None


def inbox(acme: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    response = acme.get("/api/v1/crm/inbox", params={"limit": 500} | params)
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()
    return entries


def entry(acme: httpx.Client, event_id: str) -> dict[str, Any] | None:
    return next((e for e in inbox(acme) if e["event_id"] == event_id), None)


def event_id_of(body: bytes) -> str:
    return str(httpx.Response(200, content=body).json()["eventId"])


def test_a_new_person_is_read_scored_and_written_back(
    acme: httpx.Client, fub: tuple[FakeFollowUpBoss, LoopbackServer]
) -> None:
    fake, server = fub
    connection = connect(acme, fake, server)
    assert connection["webhook_path"] == WEBHOOK
    person_id = next(_person_ids)
    fake.add_person(person_id, name="Dana Buyer", customTimeline="1-3 months",
                    customPreApproved="Yes", customLeadScore=3)  # fmt: skip
    body = webhook("peopleCreated", [person_id])

    answer = post(acme, body, sign(body, fake.credentials.system_key))

    assert answer.status_code == 200, answer.text
    assert answer.json() == {"status": "accepted", "event_id": event_id_of(body)}
    score = wait_for(lambda: score_of(acme, f"fub-{person_id}"))
    # The uri names acme.followupboss.com: it was read from the connection's API base instead,
    # with every custom field.
    assert fake.gets[0] == {"path": f"/v1/people/{person_id}", "query": {"fields": "allFields"}}
    assert fake.refused == 0
    detail = acme.get(f"/api/v1/ml/leads/fub-{person_id}").json()["lead_data"]
    assert detail["name"] == "Dana Buyer"
    assert detail["email"] == f"p{person_id}@example.com"
    assert detail["source"] == "Zillow"
    assert detail["timeline"] == "1-3 months"
    assert detail["pre_approved"] is True
    put = wait_for(lambda: fake.puts)[0]
    assert put["person_id"] == person_id
    assert put["query"] == {"mergeTags": "true"}
    assert put["body"]["tags"] == [CLASS_TAGS[score["classification"]]]
    assert put["body"]["customLeadScore"] == pytest.approx(score["ml_score"])
    assert fake.people[person_id]["tags"] == [CLASS_TAGS[score["classification"]]]
    assert wait_for(lambda: (entry(acme, event_id_of(body)) or {}).get("status") == "done")


def test_the_raw_body_variant_and_a_person_list_uri(
    acme: httpx.Client, fub: tuple[FakeFollowUpBoss, LoopbackServer]
) -> None:
    fake, server = fub
    connect(acme, fake, server, options={"signature": "raw_body"})
    first, second = next(_person_ids), next(_person_ids)
    fake.add_person(first)
    fake.add_person(second)
    body = webhook("peopleUpdated", [first, second])
    key = fake.credentials.system_key

    assert post(acme, body, sign(body, key, "base64_body")).status_code == 401
    answer = post(acme, body, sign(body, key, "raw_body"))

    assert answer.status_code == 200, answer.text
    wait_for(lambda: score_of(acme, f"fub-{first}") and score_of(acme, f"fub-{second}"))
    assert fake.gets[0]["path"] == "/v1/people"
    assert fake.gets[0]["query"] == {"id": f"{first},{second}", "fields": "allFields"}
    wait_for(lambda: len(fake.puts) == 2)
    assert {put["person_id"] for put in fake.puts} == {first, second}


def test_a_bad_or_missing_signature_is_refused_and_nothing_is_stored(
    acme: httpx.Client, fub: tuple[FakeFollowUpBoss, LoopbackServer]
) -> None:
    fake, server = fub
    connect(acme, fake, server)
    person_id = next(_person_ids)
    body = webhook("peopleCreated", [person_id])
    before = len(inbox(acme))

    wrong_key = post(acme, body, sign(body, "not-the-system-key"))
    tampered = post(acme, body.replace(b"peopleCreated", b"peopleUpdated"),
                    sign(body, fake.credentials.system_key))  # fmt: skip
    missing = httpx.post(f"{acme.base_url}{WEBHOOK}", content=body)

    assert [r.status_code for r in (wrong_key, tampered, missing)] == [401, 401, 401]
    assert wrong_key.json()["error"] == "invalid_signature"
    assert len(inbox(acme)) == before
    assert fake.gets == []


def test_a_repeated_event_id_has_one_effect(
    acme: httpx.Client, fub: tuple[FakeFollowUpBoss, LoopbackServer]
) -> None:
    fake, server = fub
    connect(acme, fake, server)
    person_id = next(_person_ids)
    fake.add_person(person_id)
    body = webhook("peopleCreated", [person_id])
    signature = sign(body, fake.credentials.system_key)

    first = post(acme, body, signature)
    wait_for(lambda: fake.puts)
    again = post(acme, body, signature)

    assert first.json()["status"] == "accepted"
    assert again.status_code == 200
    assert again.json() == {"status": "duplicate", "event_id": event_id_of(body)}
    time.sleep(1.0)  # what a second processing would have had the time to do
    assert [e["event_id"] for e in inbox(acme)].count(event_id_of(body)) == 1
    assert len(fake.gets) == 1
    assert len(fake.puts) == 1
    history = acme.get(f"/api/v1/ml/score/fub-{person_id}/history").json()
    assert len(history["scores"]) == 1


def test_a_read_that_fails_is_retried_until_the_api_is_back(
    acme: httpx.Client,
    fub: tuple[FakeFollowUpBoss, LoopbackServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A failed read leaves the webhook pending until its lease expires; short here.
    monkeypatch.setattr("leadscore.crm.inbox.LEASE_SECONDS", 1.0)
    fake, server = fub
    connect(acme, fake, server)
    person_id = next(_person_ids)
    fake.add_person(person_id)
    body = webhook("peopleCreated", [person_id])
    server.stop()  # Follow Up Boss is down: connections refused

    answer = post(acme, body, sign(body, fake.credentials.system_key))

    assert answer.status_code == 200
    waiting = wait_for(
        lambda: (e := entry(acme, event_id_of(body))) and e["attempts"] >= 2 and e,
    )
    assert waiting["status"] == "pending"
    assert score_of(acme, f"fub-{person_id}") is None
    server.start()
    wait_for(lambda: score_of(acme, f"fub-{person_id}"))
    wait_for(lambda: fake.puts)
    assert entry(acme, event_id_of(body))["status"] == "done"  # type: ignore[index]


def test_a_deleted_person_gets_no_more_write_backs(
    acme: httpx.Client,
    fub: tuple[FakeFollowUpBoss, LoopbackServer],
) -> None:
    fake, server = fub
    connect(acme, fake, server)
    person_id = next(_person_ids)
    fake.add_person(person_id)
    created = webhook("peopleCreated", [person_id])
    post(acme, created, sign(created, fake.credentials.system_key))
    score = wait_for(lambda: score_of(acme, f"fub-{person_id}"))
    wait_for(lambda: fake.puts)

    del fake.people[person_id]
    deleted = webhook("peopleDeleted", [person_id])
    del_answer = post(acme, deleted, sign(deleted, fake.credentials.system_key))
    assert del_answer.status_code == 200, del_answer.text
    wait_for(lambda: (entry(acme, event_id_of(deleted)) or {}).get("status") == "done")
    # An update that raced the deletion reads nothing (404) and changes nothing.
    updated = webhook("peopleUpdated", [person_id])
    post(acme, updated, sign(updated, fake.credentials.system_key))
    wait_for(lambda: (entry(acme, event_id_of(updated)) or {}).get("status") == "done")
    # The lead stays the team's; scored again (hot now) it is written nowhere.
    rescored = acme.post("/api/v1/ml/score", json={"lead_id": f"fub-{person_id}",
                                                  "lead_data": hot_data()})  # fmt: skip
    assert rescored.status_code == 200, rescored.text
    assert rescored.json()["classification"] != score["classification"]

    time.sleep(1.5)  # several sender passes
    assert len(fake.puts) == 1
    pending = acme.get("/api/v1/crm/outbox", params={"status": "pending"}).json()
    assert not [row for row in pending if row["lead_id"] == f"fub-{person_id}"]


def test_a_text_message_is_an_interaction_and_other_families_are_only_acknowledged(
    acme: httpx.Client, fub: tuple[FakeFollowUpBoss, LoopbackServer]
) -> None:
    fake, server = fub
    connect(acme, fake, server)
    person_id = next(_person_ids)
    fake.add_person(person_id)
    created = webhook("peopleCreated", [person_id])
    post(acme, created, sign(created, fake.credentials.system_key))
    wait_for(lambda: score_of(acme, f"fub-{person_id}"))
    fake.texts[77] = {"id": 77, "personId": person_id, "isIncoming": True,
                      "message": "Is it still available? Can we see it Saturday?",
                      "created": "2026-01-05T10:00:00Z"}  # fmt: skip
    text = webhook("textMessagesCreated", [77], resource="textMessages")
    note = webhook("notesCreated", [5], resource="notes")

    assert post(acme, text, sign(text, fake.credentials.system_key)).status_code == 200
    ignored = post(acme, note, sign(note, fake.credentials.system_key))

    assert ignored.json() == {"status": "ignored", "event_id": event_id_of(note)}
    assert entry(acme, event_id_of(note)) is None
    wait_for(lambda: (entry(acme, event_id_of(text)) or {}).get("status") == "done")
    history = acme.get(f"/api/v1/ml/leads/fub-{person_id}").json()["lead_data"][
        "interaction_history"
    ]
    assert history == [{"timestamp": "2026-01-05T10:00:00Z", "type": "sms",
                        "response_time_hours": None, "message_length": 46,
                        "questions_asked": 2}]  # fmt: skip


def test_connections_sharing_a_system_key_are_told_apart_by_the_url(
    acme: httpx.Client, fub: tuple[FakeFollowUpBoss, LoopbackServer]
) -> None:
    fake, server = fub
    connect(acme, fake, server)
    second = connect(acme, fake, server)
    person_id = next(_person_ids)
    fake.add_person(person_id)
    body = webhook("peopleCreated", [person_id])
    signature = sign(body, fake.credentials.system_key)

    ambiguous = post(acme, body, signature)
    named = post(acme, body, signature, connection_id=second["id"])
    unknown = post(acme, body, signature, connection_id=2**31 - 1)

    assert ambiguous.status_code == 404
    assert "connection_id" in ambiguous.json()["detail"]
    assert named.status_code == 200, named.text
    assert unknown.status_code == 404
    wait_for(lambda: score_of(acme, f"fub-{person_id}"))
    assert entry(acme, event_id_of(body))["connection_id"] == second["id"]  # type: ignore[index]


def test_a_webhook_without_what_it_needs_is_recorded_as_rejected(
    acme: httpx.Client, fub: tuple[FakeFollowUpBoss, LoopbackServer]
) -> None:
    fake, server = fub
    connect(acme, fake, server)
    body = webhook("peopleCreated", [next(_person_ids)], uri=None)

    answer = post(acme, body, sign(body, fake.credentials.system_key))

    assert answer.status_code == 422
    rejected = entry(acme, event_id_of(body))
    assert rejected is not None
    assert rejected["status"] == "rejected"
    assert "uri" in (rejected["error"] or "")
    elsewhere = webhook("peopleCreated", [next(_person_ids)], uri="https://evil.example/collect")
    refused = post(acme, elsewhere, sign(elsewhere, fake.credentials.system_key))
    assert refused.status_code == 422
    assert entry(acme, event_id_of(elsewhere))["status"] == "rejected"  # type: ignore[index]


def test_a_uri_on_another_host_is_read_from_the_connections_api_base(
    acme: httpx.Client, fub: tuple[FakeFollowUpBoss, LoopbackServer]
) -> None:
    fake, server = fub
    connect(acme, fake, server)
    person_id = next(_person_ids)
    fake.add_person(person_id)
    body = webhook("peopleUpdated", [person_id], uri=f"https://evil.example/v1/people/{person_id}")

    assert post(acme, body, sign(body, fake.credentials.system_key)).status_code == 200

    wait_for(lambda: score_of(acme, f"fub-{person_id}"))
    assert fake.gets == [{"path": f"/v1/people/{person_id}", "query": {"fields": "allFields"}}]
