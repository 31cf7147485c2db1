"""Every method of both clients against a real server, on SQLite + memory and PostgreSQL +
Redis: typed answers, paging, files, token renewal and the error mapping."""

from __future__ import annotations

import csv
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from leadscore.client import (
    AsyncLeadScore,
    Forbidden,
    LeadScore,
    NotFound,
    ScoreResponse,
    Unauthorized,
    ValidationFailed,
)
from leadscore.client.models import Escalation, LeadItem

from ..api.conftest import COLD, Deployment, ServerThread, lead
from ..qualification.conftest import unsure_lead
from .conftest import FaultProxy

HEAVY = ("numpy", "polars", "lightgbm", "pyarrow", "fastapi", "sqlalchemy", "matplotlib")


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def test_importing_the_client_pulls_in_none_of_the_server_stack() -> None:
    code = (
        "import sys, leadscore.client; "
        f"print(','.join(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert found == ""


def test_score_latest_history_and_lead(server: ServerThread, deployment: Deployment) -> None:
    lead_id = new_id("cl")
    with LeadScore(server.url, api_key=deployment.keys["acme-agent"]) as client:
        first = client.score(lead(lead_id))
        again = client.score(lead(lead_id, pre_approved=False), options={"force_refresh": True})
        latest = client.latest(lead_id)
        history = list(client.history(lead_id))
        paged = list(client.history(lead_id, page_size=1))
        first_page = client.history_page(lead_id, limit=1)
        past_the_end = client.history_page(lead_id, cursor=str(2**62))  # no such score
        detail = client.lead(lead_id)
    assert isinstance(first, ScoreResponse)
    assert first.lead_id == lead_id
    assert 0 < first.ml_score < 100
    assert first.classification in ("hot", "warm", "cold")
    assert latest.ml_score == again.ml_score
    assert latest.scored_at == again.scored_at
    assert [h.ml_score for h in history] == [again.ml_score, first.ml_score]
    assert history[0].change is not None
    assert history[1].change is None
    assert paged == history  # two pages of one, the same entries, changes included
    assert first_page.next_cursor is not None
    assert past_the_end.scores == []
    assert past_the_end.next_cursor is None
    assert detail.lead_id == lead_id
    assert detail.latest.ml_score == again.ml_score


def test_batch_keeps_order_and_fails_a_bad_lead_alone(
    server: ServerThread, deployment: Deployment
) -> None:
    ids = [new_id("b") for _ in range(3)]
    leads: list[Any] = [lead(ids[0]), {"lead_id": "bad id!", "lead_data": {}}, lead(ids[2])]
    for item in leads:
        item.pop("options", None)
    with LeadScore(server.url, api_key=deployment.keys["acme-agent"]) as client:
        batch = client.score_batch(leads)
    assert batch.total == 3
    assert batch.succeeded == 2
    assert batch.failed == 1
    assert [r.lead_id if r else None for r in batch.results] == [ids[0], None, ids[2]]
    assert batch.errors[0].index == 1


def test_leads_iterator_pages_through_every_match(
    server: ServerThread, deployment: Deployment
) -> None:
    source = new_id("src")  # a source of this test only: the filter isolates its leads
    ids = sorted(new_id("pg") for _ in range(7))
    with LeadScore(server.url, api_key=deployment.keys["globex-agent"]) as client:
        client.score_batch(
            [{"lead_id": i, "lead_data": {**lead(i)["lead_data"], "source": source}} for i in ids]
        )
        pages = client.leads_page(source=source, page_size=3)
        every = list(client.leads(source=source, page_size=3))
    assert len(pages.leads) == 3
    assert pages.next_cursor is not None
    assert all(isinstance(item, LeadItem) for item in every)
    assert sorted(item.lead_id for item in every) == ids  # 3 pages, none twice, none lost


def test_escalations_iterator_pages_through_the_queue(
    server: ServerThread, deployment: Deployment
) -> None:
    ids = {new_id("esc") for _ in range(5)}
    with LeadScore(server.url, api_key=deployment.keys["acme-agent"]) as client:
        for lead_id in ids:
            assert client.score(unsure_lead(lead_id)).qualification.needed
        deadline = time.monotonic() + 15  # queue entries commit with the score writer
        while True:
            queued = [e for e in client.escalations(page_size=2) if e.lead_id in ids]
            if len(queued) == len(ids) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        open_ones = list(client.escalations(status="open", page_size=2))
    assert all(isinstance(e, Escalation) for e in queued)
    assert {e.lead_id for e in queued} == ids
    assert ids <= {e.lead_id for e in open_ones}


def test_record_outcomes_one_and_many(server: ServerThread, deployment: Deployment) -> None:
    ids = [new_id("out") for _ in range(2)]
    now = datetime.now(UTC).isoformat()
    with LeadScore(server.url, api_key=deployment.keys["acme-agent"]) as client:
        for lead_id in ids:
            client.score(lead(lead_id))
        one = client.record_outcomes({"lead_id": ids[0], "outcome": "lost", "occurred_at": now})
        many = client.record_outcomes(
            [{"lead_id": i, "outcome": "converted", "occurred_at": now} for i in ids[1:]]
            + [{"lead_id": ids[0], "outcome": "lost", "occurred_at": now}]
        )
    assert (one.recorded, one.unchanged) == (1, 0)
    assert (many.recorded, many.unchanged) == (1, 1)


def test_score_file_sends_batches_of_100_and_reports_progress(
    server: ServerThread, deployment: Deployment, tmp_path: Path
) -> None:
    path = tmp_path / "leads.csv"
    ids = [new_id("f") for _ in range(230)]
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(
            ["lead_id", "source", "budget_range", "pre_approved", "web_activity.sessions"]
        )
        for n, lead_id in enumerate(ids):
            writer.writerow([lead_id if n != 150 else "bad id!", "zillow", "500k-750k", "true", 3])
    progress: list[tuple[int, int]] = []
    with LeadScore(server.url, api_key=deployment.keys["acme-agent"]) as client:
        result = client.score_file(
            path, progress=lambda done, total: progress.append((done, total))
        )
    assert progress == [(100, 230), (200, 230), (230, 230)]
    assert (result.total, result.succeeded, result.failed) == (230, 229, 1)
    assert result.errors[0].index == 150
    assert result.results[150] is None
    assert result.results[229] is not None
    assert result.results[229].lead_id == ids[229]


def test_error_mapping(server: ServerThread, deployment: Deployment) -> None:
    with (
        LeadScore(server.url, api_key="lsk_not_a_key", use_tokens=False) as client,
        pytest.raises(Unauthorized) as unauthorized,
    ):
        client.latest("anything")
    assert unauthorized.value.status_code == 401
    with LeadScore(server.url, api_key="lsk_not_a_key") as client, pytest.raises(Unauthorized):
        client.latest("anything")  # the token exchange itself is refused
    with LeadScore(server.url, api_key=deployment.keys["acme-viewer"]) as client:
        with pytest.raises(Forbidden) as forbidden:
            client.score(lead(new_id("v")))
        with pytest.raises(NotFound) as not_found:
            client.latest(new_id("never"))
    assert forbidden.value.code == "forbidden"
    assert not_found.value.code == "not_found"
    with (
        LeadScore(server.url, api_key=deployment.keys["acme-agent"]) as client,
        pytest.raises(ValidationFailed) as invalid,
    ):
        client.score({"lead_id": "ok_id", "lead_data": {"pre_approved": "maybe"}})
    assert invalid.value.status_code == 422
    assert [e["field"] for e in invalid.value.errors] == ["lead_data.pre_approved"]


def test_a_refused_token_is_renewed_once(server: ServerThread, deployment: Deployment) -> None:
    with LeadScore(server.url, api_key=deployment.keys["acme-admin"]) as client:
        client.score(lead(lead_id := new_id("tok")))
        first = client.credentials.token
        client.credentials.token = first[:-4] + "AAAA"  # as a token the server no longer takes
        assert client.latest(lead_id).lead_id == lead_id
        assert client.credentials.token not in (None, first[:-4] + "AAAA")
        created = httpx.post(
            f"{server.url}/api/v1/auth/keys",
            json={"name": "short-lived", "role": "agent"},
            headers={"X-API-Key": deployment.keys["acme-admin"]},
        ).json()
    with LeadScore(server.url, api_key=created["key"]) as client:
        client.latest(lead_id)
        httpx.delete(
            f"{server.url}/api/v1/auth/keys/{created['id']}",
            headers={"X-API-Key": deployment.keys["acme-admin"]},
        ).raise_for_status()
        with pytest.raises(Unauthorized):  # revoked: renewing cannot help, and is tried once
            client.latest(lead_id)


async def test_async_twin(server: ServerThread, deployment: Deployment) -> None:
    lead_id = new_id("as")
    source = new_id("asrc")
    now = datetime.now(UTC).isoformat()
    async with AsyncLeadScore(server.url, api_key=deployment.keys["acme-agent"]) as client:
        scored = await client.score({**lead(lead_id), "lead_data": {**COLD, "source": source}})
        batch = await client.score_batch(
            [{"lead_id": new_id("asb"), "lead_data": {"source": source}} for _ in range(3)]
        )
        latest = await client.latest(lead_id)
        history = [entry async for entry in client.history(lead_id)]
        listed = [item.lead_id async for item in client.leads(source=source, page_size=2)]
        queue = [e async for e in client.escalations(page_size=50)]
        outcome = await client.record_outcomes(
            {"lead_id": lead_id, "outcome": "lost", "occurred_at": now}
        )
        with pytest.raises(NotFound):
            await client.latest(new_id("never"))
    assert latest.ml_score == scored.ml_score
    assert len(history) == 1
    assert sorted(listed) == sorted([lead_id] + [r.lead_id for r in batch.results if r])
    assert all(isinstance(e, Escalation) for e in queue)
    assert outcome.recorded == 1


def test_a_token_near_its_expiry_is_renewed_before_it_is_used(
    proxy: FaultProxy, deployment: Deployment
) -> None:
    with LeadScore(proxy.url, api_key=deployment.keys["acme-viewer"]) as client:
        client.leads_page(page_size=1)
        first = client.credentials.token
        client.credentials.accept({"access_token": first, "expires_in": 0})  # due now
        client.leads_page(page_size=1)
    paths = [path.split("?")[0] for _, path, _ in proxy.requests]
    assert paths == ["/api/v1/auth/token", "/api/v1/ml/leads"] * 2  # renewed first, no 401
    assert client.credentials.token != first
