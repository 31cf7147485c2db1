"""Key administration, team settings, and credentials that die with their key: real servers,
real HTTP and WebSocket clients, the `leadscore` command as a process; on both backends."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from leadscore.live.protocol import CLOSE_KEY_REVOKED, CLOSE_UNAUTHORIZED

from .conftest import SECRET, Deployment, ServerThread, lead, worker_env
from .test_live import open_ws, receive, subscribe, wait_for

Headers = Callable[[str], dict[str, str]]
CACHE_SECONDS = 1.0  # the key cache window of this module's server (30 s in production)
RECHECK_SECONDS = 0.5  # how often its hub rechecks open sockets (10 s in production)
KEYS = "/api/v1/auth/keys"
TEAM = "/api/v1/teams/me"


@pytest.fixture(scope="module")
def server(deployment: Deployment) -> Iterator[ServerThread]:
    """A server that trusts key lookups for 1 s and rechecks sockets every 0.5 s."""
    running = deployment.start(key_cache_seconds=CACHE_SECONDS, ws_recheck_seconds=RECHECK_SECONDS)
    yield running
    running.stop()


def cli(deployment: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    """`leadscore ...` against the deployment's database, without any JWT secret."""
    env = worker_env(deployment)
    env.pop("LEADSCORE_JWT_SECRET")
    return subprocess.run(
        [sys.executable, "-m", "leadscore", *args],
        env=env | {"OMP_NUM_THREADS": "2"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def new_key(client: httpx.Client, as_role: Headers, role: str = "agent") -> dict[str, Any]:
    response = client.post(KEYS, json={"name": f"{role} for a test", "role": role},
                           headers=as_role("acme-admin"))  # fmt: skip
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def token_of(client: httpx.Client, key: str) -> str:
    response = client.post("/api/v1/auth/token", headers={"X-API-Key": key})
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def status(client: httpx.Client, headers: dict[str, str]) -> int:
    return client.get("/api/v1/ml/model/status", headers=headers).status_code


def close_code(ws: ClientConnection, timeout: float) -> tuple[int, str]:
    """Read until the server closes the socket; its close code and reason."""
    deadline = time.monotonic() + timeout
    with pytest.raises(ConnectionClosed) as closed:  # noqa: PT012 - heartbeats come first
        while True:
            receive(ws, max(0.01, deadline - time.monotonic()))
    assert closed.value.rcvd is not None, "the server did not send a close frame"
    return closed.value.rcvd.code, closed.value.rcvd.reason


def key_id_of(client: httpx.Client, as_role: Headers, role: str) -> int:
    """The id of the deployment's acme key of this role (named "tests")."""
    keys = client.get(KEYS, headers=as_role("acme-admin")).json()
    key_id: int = next(k["id"] for k in keys if k["name"] == "tests" and k["role"] == role)
    return key_id


def crafted_token(issued: str, seconds: float, kid: bool = True, **claims: Any) -> str:
    """An issued token re-signed with the test secret to live `seconds` (the TTL's minimum is
    60 s), without its `kid` header or with other claims."""
    now = datetime.now(UTC)
    body = jwt.decode(issued, options={"verify_signature": False})
    body |= {"iat": now, "nbf": now, "exp": now + timedelta(seconds=seconds)} | claims
    headers = {"kid": jwt.get_unverified_header(issued)["kid"]} if kid else None
    return jwt.encode(body, SECRET, algorithm="HS256", headers=headers)


# --- keys -----------------------------------------------------------------------------------


def test_admins_list_create_and_revoke_their_keys(client: httpx.Client, as_role: Headers) -> None:
    created = new_key(client, as_role)
    assert created["key"].startswith("lsk_")
    assert created["role"] == "agent"
    assert created["revoked_at"] is None
    assert status(client, {"X-API-Key": created["key"]}) == 200
    listed = client.get(KEYS, headers=as_role("acme-admin"))
    assert listed.status_code == 200
    mine = [k for k in listed.json() if k["id"] == created["id"]]
    assert mine == [{k: created[k] for k in
                     ("id", "name", "role", "prefix", "created_at", "revoked_at")}]  # fmt: skip
    assert all(set(k) == set(mine[0]) for k in listed.json())  # never a secret or a hash
    assert created["key"] not in listed.text
    assert {k["role"] for k in listed.json()} >= {"admin", "agent", "viewer"}

    revoked = client.delete(f"{KEYS}/{created['id']}", headers=as_role("acme-admin"))
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    again = client.delete(f"{KEYS}/{created['id']}", headers=as_role("acme-admin"))
    assert again.status_code == 200
    assert again.json()["revoked_at"] == revoked.json()["revoked_at"]  # idempotent
    # Revoked on this worker: refused at once, not after the cache window.
    assert status(client, {"X-API-Key": created["key"]}) == 401
    listed_after = client.get(KEYS, headers=as_role("acme-admin")).json()
    assert next(k for k in listed_after if k["id"] == created["id"])["revoked_at"] is not None


@pytest.mark.parametrize("role", ["acme-agent", "acme-viewer"])
def test_only_admins_administer_keys(client: httpx.Client, as_role: Headers, role: str) -> None:
    target = key_id_of(client, as_role, "viewer")
    assert client.get(KEYS, headers=as_role(role)).status_code == 403
    created = client.post(KEYS, json={"name": "x", "role": "admin"}, headers=as_role(role))
    assert created.status_code == 403
    assert client.delete(f"{KEYS}/{target}", headers=as_role(role)).status_code == 403
    assert status(client, as_role("acme-viewer")) == 200  # still active


def test_other_teams_keys_are_invisible(client: httpx.Client, as_role: Headers) -> None:
    acme = {k["id"] for k in client.get(KEYS, headers=as_role("acme-admin")).json()}
    globex = {k["id"] for k in client.get(KEYS, headers=as_role("globex-admin")).json()}
    assert acme
    assert globex
    assert not acme & globex
    target = key_id_of(client, as_role, "viewer")
    refused = client.delete(f"{KEYS}/{target}", headers=as_role("globex-admin"))
    assert refused.status_code == 404
    assert refused.json()["error"] == "not_found"
    assert client.delete(f"{KEYS}/987654", headers=as_role("acme-admin")).status_code == 404
    assert status(client, as_role("acme-viewer")) == 200


@pytest.mark.parametrize(
    "body",
    [{"name": "x", "role": "owner"}, {"role": "agent"}, {"name": "", "role": "agent"},
     {"name": "x", "role": "agent", "team": "globex"}],
    ids=["bad-role", "no-name", "empty-name", "extra-field"],
)  # fmt: skip
def test_bad_key_requests_are_422(
    client: httpx.Client, as_role: Headers, body: dict[str, Any]
) -> None:
    response = client.post(KEYS, json=body, headers=as_role("acme-admin"))
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_error"


# --- tokens and sockets die with their key --------------------------------------------------


def test_tokens_name_their_key_and_tokens_without_one_are_refused(
    client: httpx.Client, as_role: Headers
) -> None:
    token = token_of(client, as_role("acme-agent")["X-API-Key"])
    agent_id = key_id_of(client, as_role, "agent")
    assert jwt.get_unverified_header(token)["kid"] == str(agent_id)
    assert jwt.decode(token, options={"verify_signature": False})["sub"] == str(agent_id)
    assert status(client, bearer(crafted_token(token, 60))) == 200
    refused = client.get("/api/v1/ml/model/status",
                         headers=bearer(crafted_token(token, 60, kid=False)))  # fmt: skip
    assert refused.status_code == 401
    assert "kid" in refused.json()["detail"]
    # A token whose claims do not match its key is not the key's token.
    assert status(client, bearer(crafted_token(token, 60, role="admin"))) == 401
    assert status(client, bearer(crafted_token(token, 60, sub="987654"))) == 401


def test_a_revoked_keys_token_and_socket_stop_within_the_cache_window(
    deployment: Deployment, server: ServerThread, client: httpx.Client, as_role: Headers
) -> None:
    created = new_key(client, as_role)
    token = token_of(client, created["key"])
    assert status(client, bearer(token)) == 200
    with open_ws(server, bearer(token)) as ws:
        assert receive(ws)["event_type"] == "connection_established"
        # Revoked by another process: this worker learns it only from the database.
        revoked = cli(deployment, "keys", "revoke", str(created["id"]))
        assert revoked.returncode == 0, revoked.stderr
        assert f"key {created['id']}" in revoked.stdout
        started = time.monotonic()
        code, reason = close_code(ws, timeout=RECHECK_SECONDS + 10)
        assert (code, reason) == (4403, "key revoked")
        while status(client, bearer(token)) != 401:
            assert time.monotonic() - started < CACHE_SECONDS + 5, "token still accepted"
            time.sleep(0.1)
    response = client.get("/api/v1/ml/model/status", headers=bearer(token))
    assert "revoked" in response.json()["detail"]
    assert status(client, {"X-API-Key": created["key"]}) == 401
    with open_ws(server, bearer(token)) as refused:
        assert close_code(refused, timeout=5)[0] == 4401  # a new socket is refused outright


def test_an_expired_tokens_socket_is_closed_with_4401(
    server: ServerThread, client: httpx.Client, as_role: Headers
) -> None:
    short = crafted_token(token_of(client, as_role("acme-agent")["X-API-Key"]), 2)
    with open_ws(server, bearer(short)) as expiring, open_ws(server, as_role("acme-agent")) as key:
        assert receive(expiring)["event_type"] == "connection_established"
        assert receive(key)["event_type"] == "connection_established"
        started = time.monotonic()
        listed = client.get("/api/v1/ml/ws/connections", headers=as_role("acme-admin")).json()
        agent_id = key_id_of(client, as_role, "agent")
        expiries = {c["credentials_expire_at"] is None for c in listed["connections"]
                    if c["key_id"] == agent_id}  # fmt: skip
        assert expiries == {True, False}  # the API-key socket has none, the token's has one
        assert close_code(expiring, timeout=2 + RECHECK_SECONDS + 10) == (4401, "token expired")
        assert time.monotonic() - started >= 1.0  # not before its exp
        key.send('{"type": "ping"}')  # an API-key socket has no exp: still open
        assert any(receive(key)["event_type"] == "pong" for _ in range(5))


# --- team settings --------------------------------------------------------------------------


def commission_rate(client: httpx.Client, headers: dict[str, str], lead_id: str) -> float:
    response = client.post("/api/v1/ml/score", json=lead(lead_id), headers=headers)
    assert response.status_code == 200, response.text
    rate: float = response.json()["commission"]["commission_rate"]
    return rate


def test_team_settings_read_by_all_changed_by_admins(
    deployment: Deployment, client: httpx.Client, as_role: Headers
) -> None:
    unset = {"commission_rate": None, "hot_threshold": None, "warm_threshold": None,
             "escalation_confidence": None}  # fmt: skip
    read = client.get(TEAM, headers=as_role("acme-viewer"))
    assert read.status_code == 200
    assert read.json() == {"team": "acme"} | unset
    default_rate = commission_rate(client, as_role("acme-agent"), "rate_before")
    by_agent = client.patch(TEAM, json={"hot_threshold": 80}, headers=as_role("acme-agent"))
    assert by_agent.status_code == 403

    change = {"commission_rate": 0.025, "hot_threshold": 80, "warm_threshold": 50,
              "escalation_confidence": 0.9}  # fmt: skip
    changed = client.patch(TEAM, json=change, headers=as_role("acme-admin"))
    assert changed.status_code == 200, changed.text
    assert changed.json() == {"team": "acme"} | change
    assert client.get(TEAM, headers=as_role("acme-agent")).json() == changed.json()
    assert client.get(TEAM, headers=as_role("globex-viewer")).json() == {"team": "globex"} | unset
    # The rate reaches scoring at once on this worker; other teams keep the default.
    assert commission_rate(client, as_role("acme-agent"), "rate_after") == 0.025
    assert commission_rate(client, as_role("globex-agent"), "rate_other") == default_rate

    partial = client.patch(TEAM, json={"warm_threshold": 45}, headers=as_role("acme-admin"))
    assert partial.json() == {"team": "acme"} | change | {"warm_threshold": 45}

    # Changed by another process: applies within the key cache window.
    result = cli(deployment, "teams", "set", "--team", "acme", "--commission-rate", "0.04")
    assert result.returncode == 0, result.stderr
    assert '"commission_rate": 0.04' in result.stdout
    started = time.monotonic()
    attempt = 0
    while commission_rate(client, as_role("acme-agent"), f"rate_{attempt}") != 0.04:
        assert time.monotonic() - started < CACHE_SECONDS + 5, "the new rate never applied"
        attempt += 1
        time.sleep(0.1)

    reset = client.patch(TEAM, json=dict.fromkeys(unset), headers=as_role("acme-admin"))
    assert reset.status_code == 200
    assert reset.json() == {"team": "acme"} | unset


@pytest.mark.parametrize(
    "body",
    [{"commission_rate": 1.5}, {"commission_rate": -0.1}, {"hot_threshold": 101},
     {"warm_threshold": -1}, {"escalation_confidence": 2}, {"hot_threshold": "high"},
     {"hot_threshold": 50, "warm_threshold": 60}, {"hot_threshold": 40, "warm_threshold": 40},
     {"hot_threshold": 30}, {"team": "globex"}],
    ids=["rate>1", "rate<0", "hot>100", "warm<0", "confidence>1", "not-a-number",
         "warm>hot", "warm=hot", "hot-below-default-warm", "extra-field"],
)  # fmt: skip
def test_bad_team_settings_are_422(
    client: httpx.Client, as_role: Headers, body: dict[str, Any]
) -> None:
    response = client.patch(TEAM, json=body, headers=as_role("acme-admin"))
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_error"
    assert client.get(TEAM, headers=as_role("acme-admin")).json()["hot_threshold"] is None


def test_cli_needs_no_jwt_secret(deployment: Deployment) -> None:
    listed = cli(deployment, "keys", "list", "--team", "globex")
    assert listed.returncode == 0, listed.stderr
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    assert rows[0][:4] == ["id", "team", "name", "role"]
    assert {row[1] for row in rows[1:]} == {"globex"}
    assert {row[3] for row in rows[1:]} == {"admin", "agent", "viewer"}
    models = cli(deployment, "models", "list")
    assert models.returncode == 0, models.stderr


def test_recheck_close_codes_are_documented() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "websocket.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in docs.splitlines() if line[:3] == "| 4"}
    assert "token expired" in rows[str(CLOSE_UNAUTHORIZED)]
    assert "key revoked" in rows[str(CLOSE_KEY_REVOKED)]
    assert "LEADSCORE_WS_RECHECK_SECONDS" in docs


def test_a_teams_own_thresholds_classify_escalate_and_key_the_cache(
    server: ServerThread, client: httpx.Client, as_role: Headers
) -> None:
    admin, agent = as_role("acme-admin"), as_role("acme-agent")
    scored = "/api/v1/ml/score"
    before = client.post(scored, json=lead("policy_lead"), headers=agent).json()
    other_team = client.post(scored, json=lead("policy_lead"), headers=as_role("globex-agent"))
    score = before["ml_score"]
    assert before["classification"] != "hot"
    # Hot from half this lead's score, and review everything below 0.99 confidence.
    hot = round(max(score / 2, 2.0), 2)
    change = {"hot_threshold": hot, "warm_threshold": hot / 2, "escalation_confidence": 0.99}
    try:
        assert client.patch(TEAM, json=change, headers=admin).status_code == 200
        with open_ws(server, as_role("acme-viewer")) as ws:
            receive(ws)
            subscribe(ws, ["escalation"])
            after = client.post(scored, json=lead("policy_lead"), headers=agent).json()
            event = wait_for(ws, "escalation", where=lambda m: m["data"]["threshold"] == 0.99)
        # Same lead, same model: the old cached answer is not reused under new settings.
        assert after["cache_hit"] is False
        assert after["ml_score"] == score
        assert after["classification"] == "hot"
        assert after["escalation_recommended"] is (
            after["ml_confidence"] < 0.99 or after["evidence"] < 0.4
        )
        assert event["data"]["lead_id"] == "policy_lead"
        assert event["data"]["classification"] == "hot"
        status = client.get("/api/v1/ml/model/status", headers=agent).json()
        assert status["thresholds"]["hot"] == hot
        assert status["thresholds"]["escalation_confidence"] == 0.99
        # Another team keeps the model's thresholds.
        again = client.post(scored, json=lead("policy_lead"), headers=as_role("globex-agent"))
        assert again.json()["classification"] == other_team.json()["classification"]
        assert again.json()["cache_hit"] is True
    finally:
        reset = dict.fromkeys(change)
        assert client.patch(TEAM, json=reset, headers=admin).status_code == 200
    back = client.post(scored, json=lead("policy_lead"), headers=agent).json()
    assert back["classification"] == before["classification"]
    assert back["escalation_recommended"] == before["escalation_recommended"]
