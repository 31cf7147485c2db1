"""POST /api/v1/ml/outcomes over real HTTP on both backends: durable, idempotent, validated."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from leadscore.core.db import create_engine, session_factory
from leadscore.core.tables import OutcomeRow
from leadscore.core.timestamps import iso_z

from .conftest import Deployment, lead

Headers = Callable[[str], dict[str, str]]
URL = "/api/v1/ml/outcomes"


def scored(client: httpx.Client, headers: dict[str, str]) -> str:
    lead_id = f"out_{uuid.uuid4().hex[:10]}"
    assert client.post("/api/v1/ml/score", json=lead(lead_id), headers=headers).status_code == 200
    return lead_id


def stored(deployment: Deployment, lead_id: str) -> list[tuple[str, datetime, float | None]]:
    """What the database holds for a lead, read through a connection of our own."""

    async def read() -> list[tuple[str, datetime, float | None]]:
        engine = create_engine(deployment.settings.resolved_database_url)
        try:
            async with session_factory(engine)() as session:
                rows = await session.execute(
                    select(OutcomeRow).where(OutcomeRow.lead_id == lead_id).order_by(OutcomeRow.id)
                )
                return [(r.outcome, r.occurred_at, r.sale_price) for r in rows.scalars()]
        finally:
            await engine.dispose()

    return asyncio.run(read())


# A fixed hour a week before the suite runs: an outcome is never in the future, on any day.
OCCURRED = (datetime.now(UTC) - timedelta(days=7)).replace(minute=0, second=0, microsecond=0)


def outcome(lead_id: str, kind: str = "converted", **extra: Any) -> dict[str, Any]:
    return {"lead_id": lead_id, "outcome": kind, "occurred_at": iso_z(OCCURRED)} | extra


def test_an_outcome_right_after_its_score_is_stored_once(
    client: httpx.Client, as_role: Headers, deployment: Deployment
) -> None:
    agent = as_role("acme-agent")
    lead_id = scored(client, agent)  # the score's history write may still be queued
    response = client.post(URL, json=outcome(lead_id), headers=agent)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "recorded": 1,
        "unchanged": 0,
        "results": [{"lead_id": lead_id, "outcome": "converted", "status": "recorded"}],
    }
    when = OCCURRED
    assert stored(deployment, lead_id) == [("converted", when, None)]  # durable on reply
    again = client.post(URL, json=[outcome(lead_id)], headers=agent)
    assert again.json()["results"][0]["status"] == "unchanged"
    assert again.json()["recorded"] == 0
    assert stored(deployment, lead_id) == [("converted", when, None)]


def test_a_different_repeat_or_a_contradiction_is_a_conflict_that_changes_nothing(
    client: httpx.Client, as_role: Headers, deployment: Deployment
) -> None:
    agent = as_role("acme-agent")
    lead_id = scored(client, agent)
    closed = outcome(lead_id, "closed", sale_price=612000.0)
    assert client.post(URL, json=closed, headers=agent).status_code == 200
    moved = closed | {"occurred_at": iso_z(OCCURRED + timedelta(days=2))}
    response = client.post(URL, json=moved, headers=agent)
    assert response.status_code == 409
    assert response.json()["error"] == "conflict"
    lost = client.post(URL, json=outcome(lead_id, "lost"), headers=agent)
    assert lost.status_code == 409
    assert "cannot also be 'lost'" in lost.json()["detail"]
    assert stored(deployment, lead_id) == [("closed", OCCURRED, 612000.0)]


def test_a_conversion_after_the_loss_is_a_conflict(
    client: httpx.Client, as_role: Headers, deployment: Deployment
) -> None:
    agent = as_role("acme-agent")
    day = timedelta(days=1)
    lead_id = scored(client, agent)
    assert client.post(URL, json=outcome(lead_id, "lost"), headers=agent).status_code == 200
    later = outcome(lead_id, "converted", occurred_at=iso_z(OCCURRED + day))
    response = client.post(URL, json=later, headers=agent)
    assert response.status_code == 409, response.text
    assert response.json()["error"] == "conflict"
    assert "cannot have converted after that" in response.json()["detail"]
    assert stored(deployment, lead_id) == [("lost", OCCURRED, None)]
    # Converted first, the deal lost later: a real sequence, even when the loss arrives first.
    earlier = outcome(lead_id, "converted", occurred_at=iso_z(OCCURRED - day))
    assert client.post(URL, json=earlier, headers=agent).status_code == 200
    # The same rule in the other order, and inside one request.
    other = scored(client, agent)
    both = [outcome(other, "converted", occurred_at=iso_z(OCCURRED + day)), outcome(other, "lost")]
    assert client.post(URL, json=both, headers=agent).status_code == 409
    assert stored(deployment, other) == []


def test_a_list_with_an_unknown_lead_is_refused_whole(
    client: httpx.Client, as_role: Headers, deployment: Deployment
) -> None:
    agent = as_role("acme-agent")
    lead_id = scored(client, agent)
    response = client.post(
        URL, json=[outcome(lead_id), outcome("never_scored_lead")], headers=agent
    )
    assert response.status_code == 404
    assert "never_scored_lead" in response.json()["detail"]
    assert stored(deployment, lead_id) == []  # the known lead's outcome was not kept either
    other_team = scored(client, as_role("globex-agent"))
    assert client.post(URL, json=outcome(other_team), headers=agent).status_code == 404


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"occurred_at": OCCURRED.replace(tzinfo=None).isoformat()}, "occurred_at"),  # no time zone
        ({"outcome": "won"}, "outcome"),
        ({"sale_price": 500000}, "body"),  # a price belongs to a closed deal
        ({"occurred_at": (datetime.now(UTC) + timedelta(days=2)).isoformat()}, "body"),
        ({"lead_id": "bad id!"}, "lead_id"),
        ({"occurred_at": "0001-01-01T00:00:00+01:00"}, "body"),  # before any lead of ours
        ({"extra": 1}, "extra"),
    ],
)
def test_invalid_outcomes_name_the_field_and_store_nothing(
    client: httpx.Client, as_role: Headers, deployment: Deployment, change: dict[str, Any],
    field: str,
) -> None:  # fmt: skip
    agent = as_role("acme-agent")
    lead_id = scored(client, agent)
    response = client.post(URL, json=outcome(lead_id) | change, headers=agent)
    assert response.status_code == 422, response.text
    assert any(d["field"].endswith(field) for d in response.json()["detail"]), response.json()
    assert stored(deployment, lead_id) == []


def test_empty_or_oversized_lists_and_roles(client: httpx.Client, as_role: Headers) -> None:
    agent = as_role("acme-agent")
    assert client.post(URL, json=[], headers=agent).status_code == 422
    many = [outcome(f"l{i}") for i in range(1001)]
    assert client.post(URL, json=many, headers=agent).status_code == 422
    lead_id = scored(client, agent)
    assert (
        client.post(URL, json=outcome(lead_id), headers=as_role("acme-viewer")).status_code == 403
    )
    assert client.post(URL, json=outcome(lead_id)).status_code == 401
