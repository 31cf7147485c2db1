"""The two loops together: a thin CRM contact enters the qualification queue, a person (or the
LLM, reading the CRM conversation) qualifies it, and the new score goes back to the CRM."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from pydantic import SecretStr

from leadscore.crm.secrets import new_key
from tests.api.conftest import Deployment, ServerThread
from tests.fakes.anthropic import API_KEY, FakeAnthropic
from tests.fakes.gohighlevel import FakeGoHighLevel, Signer
from tests.qualification.conftest import unsure_lead

from .conftest import SCORE_FIELD, connect_ghl, example, wait_for

WEBHOOK = "/api/v1/crm/gohighlevel/webhook"
QUEUE = "/api/v1/ml/escalations"


def _ids() -> tuple[str, str]:
    return f"loc{uuid.uuid4().hex[:16]}", f"c{uuid.uuid4().hex[:19]}"


def _entry(api: httpx.Client, admin: dict[str, str], lead_id: str, status: str) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        page = api.get(QUEUE, params={"status": status, "limit": 200}, headers=admin).json()
        return next((e for e in page["escalations"] if e["lead_id"] == lead_id), None)

    found: dict[str, Any] = wait_for(find, timeout=30)
    return found


def _score_writes(fake: FakeGoHighLevel, contact: str) -> list[float]:
    return [
        c.body["customFields"][0]["field_value"]
        for c in fake.writes(contact)
        if c.method == "PUT" and c.body["customFields"][0]["id"] == SCORE_FIELD
    ]


def test_a_thin_crm_contact_is_qualified_by_a_person_and_the_new_score_written_back(
    crm_server: ServerThread,
    crm_deployment: Deployment,
    signer: Signer,
    ghl: tuple[FakeGoHighLevel, ServerThread],
) -> None:
    fake, fake_server = ghl
    admin = {"X-API-Key": crm_deployment.keys["acme-admin"]}
    agent = {"X-API-Key": crm_deployment.keys["acme-agent"]}
    location, contact = _ids()
    lead_id = f"ghl-{contact}"
    with httpx.Client(base_url=crm_server.url, timeout=30) as api:
        connect_ghl(api, admin, fake_server.url, location, threshold_points=1)
        body, headers = signer.delivery(example("ContactCreate", locationId=location, id=contact))
        assert api.post(WEBHOOK, content=body, headers=headers).status_code == 200
        entry = _entry(api, admin, lead_id, "open")
        assert entry["name"] == "John Deo"
        assert entry["ask_next"], "the queue says what to ask"
        before = wait_for(lambda: _score_writes(fake, contact))
        assert api.post(f"{QUEUE}/{entry['id']}/claim", headers=agent).status_code == 200
        resolved = api.post(f"{QUEUE}/{entry['id']}/resolve", headers=agent, json={
            "pre_approved": True, "timeline": "1-3 months", "budget": "600k-800k",
            "financing": "mortgage", "notes": "Called: approved with their bank last week.",
        })  # fmt: skip
        assert resolved.status_code == 200, resolved.text
        result = resolved.json()
        assert result["status"] == "resolved"
        lead = api.get(f"/api/v1/ml/leads/{lead_id}", headers=admin).json()
        assert lead["lead_data"]["pre_approved"] is True
        assert lead["lead_data"]["budget_range"] == "600k-800k"
        new_score = result["score"]["ml_score"]
        assert abs(new_score - before[0]) >= 1, (before, new_score)
        # The answers moved the score past the connection's threshold: GoHighLevel hears of it.
        writes = wait_for(lambda: len(s := _score_writes(fake, contact)) >= 2 and s)
        assert writes[-1] == new_score


@pytest.fixture(scope="module")
def llm_crm_server(
    crm_deployment: Deployment, signer: Signer
) -> Iterator[tuple[ServerThread, FakeAnthropic]]:
    """A server with both loops on: the CRM's fake and a fake Anthropic Messages API."""
    fake = FakeAnthropic()
    api = ServerThread(fake.app()).start()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("ANTHROPIC_BASE_URL", api.url)
            server = crm_deployment.start(
                secret_key=SecretStr(new_key()), ghl_webhook_public_key=signer.public_pem,
                crm_poll_seconds=0.2, anthropic_api_key=SecretStr(API_KEY),
                anthropic_model="claude-test-model",
            )  # fmt: skip
        try:
            yield server, fake
        finally:
            server.stop()
    finally:
        api.stop()


def test_the_llm_qualifies_a_crm_lead_from_its_conversation(
    llm_crm_server: tuple[ServerThread, FakeAnthropic],
    crm_deployment: Deployment,
    signer: Signer,
    ghl: tuple[FakeGoHighLevel, ServerThread],
) -> None:
    server, claude = llm_crm_server
    fake, fake_server = ghl
    admin = {"X-API-Key": crm_deployment.keys["acme-admin"]}
    location, contact = _ids()
    lead_id = f"ghl-{contact}"
    text = "We are confident: pre-approved, cash, 500k-750k, moving within 3 months. Tour Friday?"
    with httpx.Client(base_url=server.url, timeout=30) as api:
        connect_ghl(api, admin, fake_server.url, location, threshold_points=0)  # every score
        message = example("InboundMessage.1", locationId=location, contactId=contact,
                          dateAdded=datetime.now(UTC).isoformat(), body=text)  # fmt: skip
        body, headers = signer.delivery(message)
        assert api.post(WEBHOOK, content=body, headers=headers).status_code == 200
        wait_for(lambda: api.get(f"/api/v1/ml/leads/{lead_id}", headers=admin).status_code == 200)
        # Scored again through the API, engaged but with its financing unknown: escalated.
        scored = api.post("/api/v1/ml/score", json=unsure_lead(lead_id, "Jo Ames"), headers=admin)
        assert scored.json()["qualification"]["needed"] is True
        resolved = _entry(api, admin, lead_id, "resolved")
        assert resolved["resolved_by"] == "llm"
        assert resolved["answers"]["pre_approved"] is True
        [request] = [r for r in claude.requests if text in orjson.dumps(r["body"]).decode()]
        assert request["body"]["model"] == "claude-test-model"
        lead = api.get(f"/api/v1/ml/leads/{lead_id}", headers=admin).json()
        assert lead["lead_data"]["timeline"] == "1-3 months"
        wait_for(lambda: lead["latest"]["ml_score"] in _score_writes(fake, contact))
