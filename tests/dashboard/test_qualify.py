"""The qualification view in the browser: the team's escalations with the questions to ask,
Claim, and the Resolve form whose answers re-score the lead; new escalations arrive live."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
from playwright.sync_api import expect

from ..api.conftest import Deployment
from ..qualification.conftest import unsure_lead
from .conftest import Watched, sign_in

QUEUE = "/api/v1/ml/escalations"


def escalate(client: httpx.Client, key: str, name: str) -> dict[str, Any]:
    body = unsure_lead(f"dash_q_{uuid.uuid4().hex[:10]}", name=name)
    response = client.post("/api/v1/ml/score", json=body, headers={"X-API-Key": key})
    assert response.status_code == 200, response.text
    scored: dict[str, Any] = response.json()
    assert scored["escalation_recommended"]
    return scored


def entry_of(client: httpx.Client, key: str, lead_id: str, status: str) -> dict[str, Any]:
    response = client.get(QUEUE, params={"status": status}, headers={"X-API-Key": key})
    [entry] = [e for e in response.json()["escalations"] if e["lead_id"] == lead_id]
    return dict(entry)


def test_an_agent_claims_and_resolves_a_lead_in_the_browser(
    open_page: Callable[..., Watched], deployment: Deployment, client: httpx.Client
) -> None:
    key = deployment.keys["acme-agent"]
    first = escalate(client, key, "Quinn Question")
    second = escalate(client, key, "Riley Resolve")
    watched = open_page(height=1100)
    page = watched.page
    sign_in(watched, key)
    page.get_by_role("link", name="Qualify").click()
    card = page.locator(f'article.escalation[data-lead="{second["lead_id"]}"]')
    expect(card).to_contain_text("Riley Resolve")
    expect(card).to_contain_text(second["qualification"]["ask_next"][0]["question"])
    expect(page.locator(f'article.escalation[data-lead="{first["lead_id"]}"]')).to_be_visible()

    card.get_by_role("button", name="Claim").click()
    expect(card.locator(".badge.warm")).to_have_text("Claimed")
    assert entry_of(client, key, second["lead_id"], "claimed")["claimed_by"].endswith("(agent)")

    card = page.locator(f'article.escalation[data-lead="{second["lead_id"]}"]')  # re-rendered
    card.get_by_label("Pre-approved").select_option("true")
    card.get_by_label("Timeline").fill("1-3 months")
    card.get_by_label("Budget").fill("500k-750k")
    card.get_by_label("Financing").fill("cash")
    card.get_by_label("Notes").fill("Pre-approved with First Bank")
    watched.shot("escalations", full_page=False)
    card.get_by_role("button", name="Resolve").click()
    expect(card.locator(".resolved-note")).to_contain_text("confident now")
    resolved = entry_of(client, key, second["lead_id"], "resolved")
    assert resolved["answers"] == {"pre_approved": True, "timeline": "1-3 months",
                                   "budget": "500k-750k", "financing": "cash"}  # fmt: skip
    assert resolved["ml_score"] > second["ml_score"]
    # Resolved leads leave the default list; a new escalation arrives without a reload.
    expect(page.locator(f'article.escalation[data-lead="{second["lead_id"]}"]')).to_have_count(0)
    page.evaluate("window.notReloaded = true")
    third = escalate(client, key, "Sasha Live")
    expect(page.locator(f'article.escalation[data-lead="{third["lead_id"]}"]')).to_be_visible()
    assert page.evaluate("window.notReloaded") is True


def test_a_viewer_sees_the_queue_without_claim_or_resolve(
    open_page: Callable[..., Watched], deployment: Deployment, client: httpx.Client
) -> None:
    scored = escalate(client, deployment.keys["acme-agent"], "Val Viewer")
    watched = open_page()
    page = watched.page
    sign_in(watched, deployment.keys["acme-viewer"])
    page.get_by_role("link", name="Qualify").click()
    card = page.locator(f'article.escalation[data-lead="{scored["lead_id"]}"]')
    expect(card).to_be_visible()
    expect(card.get_by_role("button")).to_have_count(0)


def test_the_queue_fits_a_phone(
    open_page: Callable[..., Watched], deployment: Deployment, client: httpx.Client
) -> None:
    key = deployment.keys["acme-agent"]
    scored = escalate(client, key, "Pia Phone")
    watched = open_page(width=390, height=844)
    page = watched.page
    sign_in(watched, key)
    page.get_by_role("link", name="Qualify").click()
    card = page.locator(f'article.escalation[data-lead="{scored["lead_id"]}"]')
    expect(card.get_by_role("button", name="Claim")).to_be_visible()
    # Nothing wider than the screen: the page does not scroll sideways.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    watched.shot("phone-qualify")
