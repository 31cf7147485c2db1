"""Retries against real servers: the server's own rate limiter (429), a proxy that answers 503
with Retry-After or hangs up after the server acted, and idempotency keys that make a retried
write happen once — on SQLite + memory and PostgreSQL + Redis."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx
import pytest

from leadscore.client import LeadScore, RateLimited, RetryInfo, ServiceUnavailable

from ..api.conftest import Deployment, ServerThread, batch_lead, lead
from .conftest import Fault, FaultProxy

SCORE = "/api/v1/ml/score"


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def test_429_of_the_real_limiter_is_retried_after_its_retry_after(
    deployment: Deployment,
) -> None:
    limited = deployment.start(rate_limit_per_minute=60)  # a burst of 60, then one a second
    key = deployment.keys["globex-viewer"]
    retries: list[RetryInfo] = []
    try:
        with LeadScore(limited.url, api_key=key, use_tokens=False, max_retries=0) as once:

            def burst() -> None:
                for _ in range(200):  # the burst, then the limiter's refusal, raised at once
                    once.leads_page()

            with pytest.raises(RateLimited) as error:
                burst()
        assert error.value.retry_after is not None
        assert error.value.retry_after >= 1
        with LeadScore(
            limited.url, api_key=key, use_tokens=False, on_retry=retries.append
        ) as client:
            pages = 0
            while not retries and pages < 200:  # every call succeeds; some had to wait
                assert client.leads_page().leads == []
                pages += 1
    finally:
        limited.stop()
    assert retries
    assert all(r.reason == "429 rate_limited" for r in retries)
    assert all(r.delay >= 1.0 for r in retries)  # the server's Retry-After is a floor


def test_503_with_retry_after_is_retried_with_one_idempotency_key(
    proxy: FaultProxy, deployment: Deployment
) -> None:
    proxy.faults.append(Fault("status", times=2, path=SCORE))
    retries: list[RetryInfo] = []
    lead_id = new_id("r503")
    with LeadScore(proxy.url, api_key=deployment.keys["acme-agent"], on_retry=retries.append) as c:
        scored = c.score(lead(lead_id))
        history = list(c.history(lead_id))
    assert scored.lead_id == lead_id
    assert [r.reason for r in retries] == ["503 database_unavailable"] * 2
    assert all(r.delay >= 1.0 for r in retries)
    keys = [key for method, path, key in proxy.requests if path == SCORE]
    assert len(keys) == 3
    assert len(set(keys)) == 1
    assert keys[0] is not None
    assert len(history) == 1


def test_503_after_the_last_retry_is_raised_with_its_retry_after(
    proxy: FaultProxy, deployment: Deployment
) -> None:
    proxy.faults.append(Fault("status", times=10, path=SCORE))
    with (
        LeadScore(proxy.url, api_key=deployment.keys["acme-agent"], max_retries=2) as client,
        pytest.raises(ServiceUnavailable) as error,
    ):
        client.score(lead(new_id("down")))
    assert error.value.retry_after == 1.0
    assert error.value.code == "database_unavailable"
    assert len([p for _, p, _ in proxy.requests if p == SCORE]) == 3


def test_a_score_whose_answer_was_lost_is_retried_and_scored_once(
    proxy: FaultProxy, deployment: Deployment
) -> None:
    proxy.faults.append(Fault("drop", times=1, path=SCORE))
    retries: list[RetryInfo] = []
    lead_id = new_id("drop")
    with LeadScore(proxy.url, api_key=deployment.keys["acme-agent"], on_retry=retries.append) as c:
        scored = c.score(lead(lead_id))
        history = list(c.history(lead_id))
    assert len(retries) == 1
    assert retries[0].reason in ("RemoteProtocolError", "ReadError")
    assert len([p for _, p, _ in proxy.requests if p == SCORE]) == 2
    assert len(history) == 1  # the server scored it once; the retry got that answer
    assert history[0].scored_at == scored.scored_at


def test_a_batch_and_outcomes_whose_answers_were_lost_happen_once(
    proxy: FaultProxy, deployment: Deployment
) -> None:
    proxy.faults.append(Fault("drop", times=1, path="/api/v1/ml/batch-score"))
    proxy.faults.append(Fault("drop", times=1, path="/api/v1/ml/outcomes"))
    ids = [new_id("bd") for _ in range(2)]
    now = datetime.now(UTC).isoformat()
    with LeadScore(proxy.url, api_key=deployment.keys["acme-agent"]) as client:
        batch = client.score_batch([batch_lead(i) for i in ids])
        recorded = client.record_outcomes(
            [{"lead_id": i, "outcome": "lost", "occurred_at": now} for i in ids]
        )
        histories = [list(client.history(i)) for i in ids]
    assert batch.succeeded == 2
    assert [len(h) for h in histories] == [1, 1]
    # The first request recorded both; a second acting would have answered "unchanged".
    assert (recorded.recorded, recorded.unchanged) == (2, 0)
    assert [f.times for f in proxy.faults] == [0, 0]


def test_the_server_replays_a_keyed_write_and_refuses_a_reused_key(
    server: ServerThread, deployment: Deployment
) -> None:
    lead_id = new_id("idem")
    agent = {"X-API-Key": deployment.keys["acme-agent"], "Idempotency-Key": new_id("k")}
    other_team = {**agent, "X-API-Key": deployment.keys["globex-agent"]}
    with httpx.Client(base_url=server.url) as http:
        first = http.post(SCORE, json=lead(lead_id), headers=agent)
        again = http.post(SCORE, json=lead(lead_id), headers=agent)
        reused = http.post(SCORE, json=lead(new_id("other")), headers=agent)
        elsewhere = http.post(SCORE, json=lead(lead_id), headers=other_team)
        bad = http.post(SCORE, json=lead(lead_id), headers={**agent, "Idempotency-Key": "a b"})
        history = http.get(f"{SCORE}/{lead_id}/history", headers=agent).json()
        theirs = http.get(f"{SCORE}/{lead_id}/history", headers=other_team).json()
    assert first.status_code == 200
    assert again.content == first.content  # the stored first answer, byte for byte
    assert reused.status_code == 422
    assert reused.json()["error"] == "idempotency_key_reused"
    assert elsewhere.status_code == 200
    assert len(theirs["scores"]) == 1  # keys are per team: globex's score really happened
    assert bad.status_code == 422
    assert len(history["scores"]) == 1
