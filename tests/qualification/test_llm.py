"""The LLM qualifier against a fake Anthropic Messages API, on both backends: a confident
answer resolves the lead as `llm`, an unsure one leaves it for a person, errors are retried
with backoff and then left."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest

from ..api.conftest import Deployment, ServerThread
from ..fakes.anthropic import API_KEY, CONFIDENT_ANSWERS, FakeAnthropic, api_key
from .conftest import unsure_lead
from .llm import MODEL, QUEUE, llm_server, wait_for_entry

Headers = Callable[[str], dict[str, str]]


@pytest.fixture(scope="module")
def running(deployment: Deployment) -> Iterator[tuple[ServerThread, FakeAnthropic]]:
    with llm_server(deployment, calls_per_hour=100) as pair:
        yield pair


@pytest.fixture(scope="module")
def server(running: tuple[ServerThread, FakeAnthropic]) -> ServerThread:
    return running[0]


@pytest.fixture(scope="module")
def fake(running: tuple[ServerThread, FakeAnthropic]) -> FakeAnthropic:
    return running[1]


def escalate(client: httpx.Client, headers: dict[str, str], name: str) -> str:
    body = unsure_lead(f"llm_{uuid.uuid4().hex[:10]}", name=name)
    scored = client.post("/api/v1/ml/score", json=body, headers=headers)
    assert scored.status_code == 200, scored.text
    assert scored.json()["escalation_recommended"]
    lead_id: str = body["lead_id"]
    return lead_id


def test_a_confident_answer_resolves_the_lead_as_llm(
    client: httpx.Client, as_role: Headers, fake: FakeAnthropic
) -> None:
    headers = as_role("acme-agent")
    lead_id = escalate(client, headers, "Casey Confident")
    entry = wait_for_entry(client, headers, lead_id, lambda e: e["status"] == "resolved")
    assert entry["resolved_by"] == "llm"
    assert entry["llm_state"] == "resolved"
    assert entry["llm_attempts"] == 1
    assert entry["answers"] == CONFIDENT_ANSWERS
    assert entry["notes"].startswith("Pre-approved cash buyer")
    assert entry["qualification_needed"] is False  # re-scored with the answers
    assert entry["ml_score"] > entry["ml_score_at_open"]
    data = client.get(f"/api/v1/ml/leads/{lead_id}", headers=headers).json()["lead_data"]
    assert data["budget_range"] == "500k-750k"
    assert data["financing"] == "cash"
    [request] = [r for r in fake.requests if "Casey Confident" in json.dumps(r["body"])]
    assert api_key(request["headers"]) == API_KEY
    assert request["headers"]["anthropic-version"]
    body = request["body"]
    assert body["model"] == MODEL
    [tool] = body["tools"]
    assert tool["strict"] is True
    assert body["tool_choice"] == {"type": "tool", "name": tool["name"]}
    schema = tool["input_schema"]
    assert set(schema["required"]) == {
        "pre_approved", "timeline", "budget", "financing", "confidence", "summary",
    }  # fmt: skip
    assert schema["additionalProperties"] is False
    prompt = body["messages"][0]["content"]
    assert "email_response" in prompt  # the conversation went with the lead's data
    assert "Downtown Austin" in prompt


def test_an_unsure_answer_leaves_the_lead_for_a_person(
    client: httpx.Client, as_role: Headers
) -> None:
    headers = as_role("acme-agent")
    lead_id = escalate(client, headers, "Uma Unsure")
    entry = wait_for_entry(client, headers, lead_id, lambda e: e["llm_state"] == "unsure")
    assert entry["status"] == "open"
    assert entry["resolved_by"] is None
    assert entry["notes"] == "The conversation says too little."
    assert entry["answers"] is None
    claimed = client.post(f"{QUEUE}/{entry['id']}/claim", headers=headers)
    assert claimed.status_code == 200


def test_errors_are_retried_then_left_for_a_person(
    client: httpx.Client, as_role: Headers, fake: FakeAnthropic
) -> None:
    headers = as_role("globex-agent")
    overloaded = escalate(client, headers, "Olive Overloaded")
    flaky = escalate(client, headers, "Flynn Flaky")
    left = wait_for_entry(client, headers, overloaded, lambda e: e["llm_state"] == "failed")
    assert left["status"] == "open"
    assert left["llm_attempts"] == 3
    assert fake.calls["overloaded"] == 3  # 529 three times: llm_max_attempts
    recovered = wait_for_entry(client, headers, flaky, lambda e: e["status"] == "resolved")
    assert recovered["resolved_by"] == "llm"
    assert recovered["llm_attempts"] == 2  # a 500, then the answer
    assert fake.calls["flaky"] == 2
