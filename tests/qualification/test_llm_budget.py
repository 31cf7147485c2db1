"""The LLM qualifier spends at most its team's hourly budget of calls, on both backends."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest

from ..api.conftest import Deployment, ServerThread
from ..fakes.anthropic import FakeAnthropic
from .conftest import unsure_lead
from .llm import llm_server, wait_for_entry

Headers = Callable[[str], dict[str, str]]


@pytest.fixture(scope="module")
def running(deployment: Deployment) -> Iterator[tuple[ServerThread, FakeAnthropic]]:
    with llm_server(deployment, calls_per_hour=2) as pair:
        yield pair


@pytest.fixture(scope="module")
def server(running: tuple[ServerThread, FakeAnthropic]) -> ServerThread:
    return running[0]


def test_five_escalations_with_a_budget_of_two_calls_make_two_calls(
    client: httpx.Client, as_role: Headers, running: tuple[ServerThread, FakeAnthropic]
) -> None:
    fake = running[1]
    headers = as_role("acme-agent")
    lead_ids = [f"budget_{uuid.uuid4().hex[:10]}" for _ in range(5)]
    for i, lead_id in enumerate(lead_ids):
        body = unsure_lead(lead_id, name=f"Ursula Unsure {i}")
        assert client.post("/api/v1/ml/score", json=body, headers=headers).status_code == 200
    states = [
        wait_for_entry(client, headers, lead_id, lambda e: e["llm_state"] in ("unsure", "budget"))[
            "llm_state"
        ]
        for lead_id in lead_ids
    ]
    assert sorted(states) == ["budget"] * 3 + ["unsure"] * 2
    time.sleep(1.0)  # the qualifier keeps polling: still nothing more is spent
    assert len(fake.requests) == 2
    # The other team has its own budget.
    other = as_role("globex-agent")
    lead_id = f"budget_{uuid.uuid4().hex[:10]}"
    body = unsure_lead(lead_id, name="Ulla Unsure")
    assert client.post("/api/v1/ml/score", json=body, headers=other).status_code == 200
    entry = wait_for_entry(client, other, lead_id, lambda e: e["llm_state"] == "unsure")
    assert entry["status"] == "open"
    assert len(fake.requests) == 3
