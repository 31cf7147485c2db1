"""The v1 scoring API over real HTTP, on SQLite + memory and PostgreSQL + Redis alike."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest

from leadscore.cli.keys import create_key
from leadscore.engine.model import LeadModel
from leadscore.engine.scorer import Scorer
from leadscore.models.holder import Lineup, LiveModel
from leadscore.scoring.schemas import ScoreResponse

from .conftest import SECRET, Deployment, ServerThread, batch_lead, lead

Headers = Callable[[str], dict[str, str]]


def test_score_follows_the_contract(client: httpx.Client, as_role: Headers) -> None:
    response = client.post(
        "/api/v1/ml/score", json=lead("contract_1"), headers=as_role("acme-agent")
    )
    assert response.status_code == 200, response.text
    body = response.json()
    ScoreResponse.model_validate(body)
    assert body["lead_id"] == "contract_1"
    assert body["ml_score"] == pytest.approx(
        body["probability_ranges"]["conversion"] * 100, abs=0.01
    )
    assert body["classification"] in {"hot", "warm", "cold"}
    assert body["escalation_recommended"] is body["qualification"]["needed"]
    assert body["qualification"]["needed"] is (
        body["ml_confidence"] < 0.85 or body["evidence"] < 0.4
    )
    assert body["commission"]["estimated_sale_price"] == 625_000.0
    assert body["commission"]["commission_rate"] == 0.06
    assert body["feature_importance"]
    assert all(r["text"].endswith("points") for r in body["reasons"])
    assert body["cache_hit"] is False
    assert body["processing_time_ms"] > 0


def test_options_switch_parts_off(client: httpx.Client, as_role: Headers) -> None:
    request = lead("options_1") | {
        "options": {"return_feature_importance": False, "calculate_commission": False}
    }
    body = client.post("/api/v1/ml/score", json=request, headers=as_role("acme-agent")).json()
    assert body["feature_importance"] is None
    assert body["reasons"] is None
    assert body["commission"] is None


def test_repeat_is_a_cache_hit_until_data_changes(client: httpx.Client, as_role: Headers) -> None:
    headers = as_role("acme-agent")
    first = client.post("/api/v1/ml/score", json=lead("cache_1"), headers=headers).json()
    again = client.post("/api/v1/ml/score", json=lead("cache_1"), headers=headers).json()
    assert (first["cache_hit"], again["cache_hit"]) == (False, True)
    assert again["ml_score"] == first["ml_score"]
    forced = lead("cache_1") | {"options": {"force_refresh": True}}
    assert (
        client.post("/api/v1/ml/score", json=forced, headers=headers).json()["cache_hit"] is False
    )
    changed = client.post(
        "/api/v1/ml/score", json=lead("cache_1", pre_approved=False), headers=headers
    ).json()
    assert changed["cache_hit"] is False


def test_the_same_data_in_another_key_order_is_a_cache_hit(
    client: httpx.Client, as_role: Headers
) -> None:
    headers = as_role("acme-agent")
    body = lead("order_1", web_activity={"sessions": 4, "favorites": 2},
                attributes={"zeta": 1, "alpha": "x"})  # fmt: skip
    first = client.post("/api/v1/ml/score", json=body, headers=headers).json()

    def reversed_keys(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: reversed_keys(value[k]) for k in reversed(list(value))}
        if isinstance(value, list):
            return [reversed_keys(v) for v in value]
        return value

    shuffled = reversed_keys(body)
    assert list(shuffled["lead_data"]) != list(body["lead_data"])
    again = client.post("/api/v1/ml/score", json=shuffled, headers=headers).json()
    assert (first["cache_hit"], again["cache_hit"]) == (False, True)
    assert again["ml_score"] == first["ml_score"]


def test_cache_is_per_team(client: httpx.Client, as_role: Headers) -> None:
    client.post("/api/v1/ml/score", json=lead("shared_1"), headers=as_role("acme-agent"))
    other = client.post("/api/v1/ml/score", json=lead("shared_1"), headers=as_role("globex-agent"))
    assert other.json()["cache_hit"] is False


def test_read_your_write_and_history(client: httpx.Client, as_role: Headers) -> None:
    headers = as_role("acme-agent")
    scored = client.post("/api/v1/ml/score", json=lead("ryw_1"), headers=headers).json()
    latest = client.get("/api/v1/ml/score/ryw_1", headers=as_role("acme-viewer"))
    assert latest.status_code == 200
    assert latest.json() == scored
    client.post("/api/v1/ml/score", json=lead("ryw_1", timeline="asap"), headers=headers)
    history = client.get("/api/v1/ml/score/ryw_1/history", headers=headers).json()
    assert history["lead_id"] == "ryw_1"
    assert len(history["scores"]) == 2
    newest = history["scores"][0]
    assert newest["model_version"] == scored["model_version"]
    assert newest["reasons"]
    assert newest["scored_at"] >= history["scores"][1]["scored_at"]
    assert history["scores"][1]["change"] is None  # its first score
    change = newest["change"]
    assert change["points"] == pytest.approx(newest["ml_score"] - history["scores"][1]["ml_score"])
    assert change["from_score"] == history["scores"][1]["ml_score"]
    assert change["since"] == history["scores"][1]["scored_at"]


def test_history_says_why_the_score_moved(client: httpx.Client, as_role: Headers) -> None:
    headers = as_role("acme-agent")
    path = "/api/v1/ml/score"
    first = client.post(path, json=lead("moved_1", pre_approved=False), headers=headers).json()
    second = client.post(path, json=lead("moved_1", pre_approved=True), headers=headers).json()
    client.post(path, json=lead("moved_1", pre_approved=True), headers=headers)  # a repeat
    scores = client.get(f"{path}/moved_1/history?limit=2", headers=headers).json()["scores"]
    assert len(scores) == 2
    repeat, moved = scores
    assert repeat["cache_hit"] is True
    assert repeat["change"]["points"] == 0.0
    assert repeat["change"]["top"] == []
    assert moved["change"]["points"] == pytest.approx(second["ml_score"] - first["ml_score"])
    top = moved["change"]["top"][0]
    assert top["group"] == "financial_readiness"
    assert top["text"] == "Pre-approved for a mortgage"
    assert (top["points"] > 0) is (second["ml_score"] > first["ml_score"])
    assert moved["change"]["summary"].endswith(": Pre-approved for a mortgage")


def test_other_team_cannot_read(client: httpx.Client, as_role: Headers) -> None:
    client.post("/api/v1/ml/score", json=lead("private_1"), headers=as_role("acme-agent"))
    for path in ("/api/v1/ml/score/private_1", "/api/v1/ml/score/private_1/history"):
        response = client.get(path, headers=as_role("globex-admin"))
        assert response.status_code == 404
        assert response.json()["error"] == "not_found"


def test_unknown_lead_is_404(client: httpx.Client, as_role: Headers) -> None:
    response = client.get("/api/v1/ml/score/nobody_here", headers=as_role("acme-admin"))
    assert response.status_code == 404


def test_batch_keeps_order_and_fails_leads_alone(client: httpx.Client, as_role: Headers) -> None:
    leads = [batch_lead(f"batch_{i}") for i in range(5)]
    leads[2] = {"lead_id": "bad lead!", "lead_data": {}}
    leads[3]["lead_data"] = leads[3]["lead_data"] | {"budget_min": -5}
    response = client.post(
        "/api/v1/ml/batch-score", json={"leads": leads}, headers=as_role("acme-agent")
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["total"], body["succeeded"], body["failed"]) == (5, 3, 2)
    assert [r["lead_id"] if r else None for r in body["results"]] == [
        "batch_0",
        "batch_1",
        None,
        None,
        "batch_4",
    ]
    assert [e["index"] for e in body["errors"]] == [2, 3]
    assert body["errors"][1]["detail"][0]["field"] == "lead_data.budget_min"
    summary = body["summary"]
    assert summary["hot"] + summary["warm"] + summary["cold"] == 3
    scores = [r["ml_score"] for r in body["results"] if r]
    assert summary["mean_score"] == pytest.approx(sum(scores) / 3, abs=0.01)
    assert len(body["batch_id"]) == 32


def test_a_batch_item_that_is_not_an_object_fails_alone(
    client: httpx.Client, as_role: Headers
) -> None:
    leads = [1, batch_lead("not_object_1"), "text", None, [batch_lead("not_object_2")]]
    response = client.post(
        "/api/v1/ml/batch-score", json={"leads": leads}, headers=as_role("acme-agent")
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["total"], body["succeeded"], body["failed"]) == (5, 1, 4)
    assert body["results"][1]["lead_id"] == "not_object_1"
    assert [e["index"] for e in body["errors"]] == [0, 2, 3, 4]
    assert all(e["error"] == "validation_error" and e["lead_id"] is None for e in body["errors"])
    assert body["errors"][0]["detail"][0]["field"] == "lead"


def test_batch_over_100_is_refused(client: httpx.Client, as_role: Headers) -> None:
    leads = [{"lead_id": f"l{i}", "lead_data": {}} for i in range(101)]
    response = client.post(
        "/api/v1/ml/batch-score", json={"leads": leads}, headers=as_role("acme-agent")
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "leads"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b | {"surprise": 1}, "surprise"),
        (lambda b: b | {"lead_id": "has space"}, "lead_id"),
        (lambda b: b | {"lead_id": "x" * 101}, "lead_id"),
        (lambda b: {**b, "lead_data": b["lead_data"] | {"budget_min": -1}}, "lead_data.budget_min"),
        (lambda b: {**b, "lead_data": b["lead_data"] | {"household_size": 0}},
         "lead_data.household_size"),
        (lambda b: {**b, "lead_data": b["lead_data"] | {"colour": "red"}}, "lead_data.colour"),
        (lambda b: {**b, "lead_data": b["lead_data"] | {"created_at": "2026-01-01T00:00:00"}},
         "lead_data.created_at"),
    ],
)  # fmt: skip
def test_invalid_requests_name_the_field_and_change_nothing(
    client: httpx.Client,
    as_role: Headers,
    mutate: Callable[[dict[str, Any]], dict[str, Any]],
    field: str,
) -> None:
    body = mutate(lead("invalid_1"))
    response = client.post("/api/v1/ml/score", json=body, headers=as_role("acme-agent"))
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"
    assert field in [d["field"] for d in response.json()["detail"]]
    assert (
        client.get("/api/v1/ml/score/invalid_1", headers=as_role("acme-agent")).status_code == 404
    )


def test_malformed_json_is_422(client: httpx.Client, as_role: Headers) -> None:
    response = client.post(
        "/api/v1/ml/score",
        content=b'{"lead_id": ',
        headers=as_role("acme-agent") | {"Content-Type": "application/json"},
    )
    assert response.status_code == 422


def test_body_over_the_limit_is_413(client: httpx.Client, as_role: Headers) -> None:
    big = lead("big_1") | {"padding": "x" * 1_100_000}
    response = client.post("/api/v1/ml/score", json=big, headers=as_role("acme-agent"))
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"


def test_credentials_are_required(client: httpx.Client) -> None:
    response = client.post("/api/v1/ml/score", json=lead("auth_1"))
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    bad = client.post("/api/v1/ml/score", json=lead("auth_1"), headers={"X-API-Key": "lsk_nope"})
    assert bad.status_code == 401


def test_token_exchange_and_bearer_use(client: httpx.Client, as_role: Headers) -> None:
    issued = client.post("/api/v1/auth/token", headers=as_role("acme-agent"))
    assert issued.status_code == 200
    token = issued.json()
    assert (token["token_type"], token["role"], token["team"]) == ("bearer", "agent", "acme")
    claims = jwt.decode(token["access_token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == token["expires_in"]
    response = client.post(
        "/api/v1/ml/score",
        json=lead("bearer_1"),
        headers={"Authorization": f"Bearer {token['access_token']}"},
    )
    assert response.status_code == 200
    body_key = client.post(
        "/api/v1/auth/token", json={"api_key": as_role("acme-viewer")["X-API-Key"]}
    )
    assert body_key.json()["role"] == "viewer"
    assert client.post("/api/v1/auth/token").status_code == 401


def _token(**claims: Any) -> str:
    now = datetime.now(UTC)
    base = {
        "sub": "1", "team_id": 1, "team": "acme", "role": "admin", "iss": "leadscore",
        "aud": "leadscore-api", "iat": now, "exp": now + timedelta(minutes=5),
    }  # fmt: skip
    return jwt.encode(base | claims, SECRET, algorithm="HS256")


@pytest.mark.parametrize(
    "token",
    [
        _token(exp=datetime.now(UTC) - timedelta(seconds=5)),
        _token(aud="someone-else"),
        _token(iss="someone-else"),
        jwt.encode({"sub": "1", "team_id": 1, "role": "admin"}, SECRET, algorithm="HS256"),
        jwt.encode({"sub": "1", "team_id": 1, "role": "admin", "iss": "leadscore",
                    "aud": "leadscore-api", "iat": 1, "exp": 4102444800}, "wrong-secret-" * 4,
                   algorithm="HS256"),
        jwt.encode({"sub": "1", "team_id": 1, "role": "admin"}, None, algorithm="none"),
        "not.a.token",
    ],
)  # fmt: skip
def test_bad_tokens_are_401(client: httpx.Client, token: str) -> None:
    response = client.get("/api/v1/ml/model/status", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


def test_viewer_cannot_score_but_can_read(client: httpx.Client, as_role: Headers) -> None:
    response = client.post(
        "/api/v1/ml/score", json=lead("viewer_1"), headers=as_role("acme-viewer")
    )
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    status = client.get("/api/v1/ml/model/status", headers=as_role("acme-viewer"))
    assert status.status_code == 200


def test_health_checks_dependencies(client: httpx.Client, deployment: Deployment) -> None:
    response = client.get("/api/v1/ml/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert set(body["checks"]) == {"model", "database", "cache"}
    assert all(c["status"] == "ok" and c["latency_ms"] >= 0 for c in body["checks"].values())


def test_status_and_performance_count_scores(client: httpx.Client, as_role: Headers) -> None:
    url = "/api/v1/ml/metrics/performance"
    before = client.get(url, headers=as_role("acme-viewer")).json()
    others_before = client.get(url, headers=as_role("globex-viewer")).json()
    client.post("/api/v1/ml/score", json=lead("perf_1"), headers=as_role("acme-agent"))
    client.post("/api/v1/ml/score", json=lead("perf_1"), headers=as_role("acme-agent"))
    client.post("/api/v1/ml/score", json=lead("perf_2"), headers=as_role("globex-agent"))
    after = client.get(url, headers=as_role("acme-viewer")).json()
    assert after["predictions"] == before["predictions"] + 2  # not globex's score
    others = client.get(url, headers=as_role("globex-viewer")).json()
    assert others["predictions"] == others_before["predictions"] + 1
    assert after["latency_ms"]["p50"] > 0
    assert 0 < after["cache_hit_rate"] <= 1
    assert sum(after["scores_per_class"].values()) == after["predictions"]
    status = client.get("/api/v1/ml/model/status", headers=as_role("acme-viewer")).json()
    assert status["version"]
    assert status["metrics"]["conversion"]["auc"] > 0.8
    assert status["thresholds"]["hot"] == 70.0
    assert status["traffic"]["predictions"] == after["predictions"]
    theirs = client.get("/api/v1/ml/model/status", headers=as_role("globex-viewer")).json()
    assert theirs["traffic"]["predictions"] == others["predictions"]
    text = client.get("/metrics").text
    assert "leadscore_scores_total" in text
    assert "leadscore_score_seconds_bucket" in text


def test_cors_allows_the_configured_origin(client: httpx.Client) -> None:
    preflight = client.options(
        "/api/v1/ml/score",
        headers={
            "Origin": "https://crm.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "X-API-Key, Content-Type",
        },
    )
    assert preflight.headers["access-control-allow-origin"] == "https://crm.example.com"
    other = client.options(
        "/api/v1/ml/score",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in other.headers


def test_rate_limit_answers_429_with_retry_after(deployment: Deployment) -> None:
    # A key of its own: no other test's requests count against its limit.
    key = asyncio.run(create_key(deployment.settings, "globex", "viewer", "rate limit"))
    limited = deployment.start(rate_limit_per_minute=3)
    try:
        with httpx.Client(base_url=limited.url) as http:
            headers = {"X-API-Key": key}
            codes = [
                http.get("/api/v1/ml/model/status", headers=headers).status_code for _ in range(5)
            ]
            refused = http.get("/api/v1/ml/model/status", headers=headers)
    finally:
        limited.stop()
    assert codes[:3] == [200, 200, 200]
    assert refused.status_code == 429
    assert refused.json()["error"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1


def test_new_model_version_never_serves_old_cache(
    deployment: Deployment, as_role: Headers, model: LeadModel
) -> None:
    # Installed behind the registry's back: its watcher must not put the champion back meanwhile.
    server = deployment.start(model_poll_seconds=60)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            headers = as_role("acme-agent")
            first = client.post("/api/v1/ml/score", json=lead("swap_1"), headers=headers).json()
            again = client.post("/api/v1/ml/score", json=lead("swap_1"), headers=headers).json()
            assert again["cache_hit"]
            other = model.with_calibration(
                dict(model.calibrators_), model.card_ | {"version": "f" * 16}
            )
            holder = server.services.models
            holder.install(Lineup(LiveModel(other, Scorer(other), holder.current.path)), {})
            after = client.post("/api/v1/ml/score", json=lead("swap_1"), headers=headers).json()
    finally:
        server.stop()
    assert after["cache_hit"] is False
    assert after["model_version"] == "f" * 16 != first["model_version"]


def test_scores_survive_a_restart(deployment: Deployment) -> None:
    first = deployment.start()
    with httpx.Client(base_url=first.url) as http:
        headers = {"X-API-Key": deployment.keys["globex-agent"]}
        scored = http.post("/api/v1/ml/score", json=lead("restart_1"), headers=headers).json()
    first.stop()  # graceful: the writer drains before the process would exit
    second = deployment.start()
    try:
        with httpx.Client(base_url=second.url) as http:
            latest = http.get("/api/v1/ml/score/restart_1", headers=headers)
            history = http.get("/api/v1/ml/score/restart_1/history", headers=headers).json()
    finally:
        second.stop()
    assert latest.status_code == 200
    assert latest.json()["ml_score"] == scored["ml_score"]
    assert len(history["scores"]) == 1


def test_openapi_documents_the_contract_example(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    request = schema["components"]["schemas"]["ScoreRequest"]
    assert request["examples"][0]["lead_id"] == "lead_12345"
    assert client.get("/docs").status_code == 200


def test_openapi_declares_how_each_route_authenticates(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["APIKeyHeader"]["name"] == "X-API-Key"
    assert schemes["HTTPBearer"]["scheme"] == "bearer"
    public = {("get", "/api/v1/ml/health"), ("get", "/metrics"), ("post", "/api/v1/auth/token")}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if (method, path) in public:
                continue
            if path.startswith("/api/v1/crm/") and "webhook" in path:
                # A CRM's webhook carries no key: its provider's signature header is documented.
                [scheme] = operation["security"]
                assert schemes[next(iter(scheme))]["in"] == "header", path
                assert (
                    client.request(method, path.replace("{connection_id}", "1")).status_code == 401
                )
                continue
            # Every other route refuses an anonymous caller, so its docs must say how to sign in.
            assert operation.get("security") == [{"APIKeyHeader": []}, {"HTTPBearer": []}], path
            assert client.request(method, path.replace("{lead_id}", "x")).status_code == 401


def test_a_client_hanging_up_mid_body_is_not_an_error(
    server: ServerThread, as_role: Headers, caplog: pytest.LogCaptureFixture
) -> None:
    import socket
    import time

    key = as_role("acme-agent")["X-API-Key"]
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            b"POST /api/v1/ml/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"X-API-Key: {key}\r\nContent-Length: 5000\r\n\r\n".encode()
            + b'{"lead_id": "gone"'
        )
    time.sleep(0.3)
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    with httpx.Client(base_url=server.url) as http:
        assert http.get("/api/v1/ml/health").status_code == 200


def test_scores_say_what_is_known_and_what_to_ask(client: httpx.Client, as_role: Headers) -> None:
    headers = as_role("acme-agent")
    reply = {"timestamp": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
             "type": "email_response", "response_time_hours": 2.5, "message_length": 156,
             "questions_asked": 3}  # fmt: skip
    example = client.post(
        "/api/v1/ml/score", json=lead("known_1", interaction_history=[reply]), headers=headers
    ).json()
    empty = client.post(
        "/api/v1/ml/score", json={"lead_id": "known_2", "lead_data": {}}, headers=headers
    ).json()
    for body in (example, empty):
        ScoreResponse.model_validate(body)
        assert 0 < body["ml_score"] < 100  # never certain
        assert body["escalation_recommended"] is body["qualification"]["needed"]
        assert all("unknown" not in r["text"].lower() for r in body["reasons"])
    assert example["evidence"] > empty["evidence"]
    assert empty["qualification"]["needed"] is True
    assert "thin_data" in empty["qualification"]["reasons"]
    assert empty["qualification"]["ask_next"]
    asked = {q["field"] for q in example["qualification"]["ask_next"]}
    assert not asked & {"pre_approved", "timeline", "budget_range", "location_preference"}
