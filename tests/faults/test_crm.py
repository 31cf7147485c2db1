"""GoHighLevel webhooks while PostgreSQL is stopped, on `leadscore serve --workers 2`: 429 (the
only status GoHighLevel retries) at once, never a 5xx; the retry after recovery is accepted and
processed, even past the replay window, while a webhook never refused stays a replay."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from leadscore.crm.secrets import new_key
from tests.api.conftest import ServerThread
from tests.crm.conftest import connect_ghl, example
from tests.fakes.gohighlevel import FakeGoHighLevel, Signer

from .conftest import Dependencies, Deployment, serve, wait_for

WEBHOOK = "/api/v1/crm/gohighlevel/webhook"
#: Every answer during an outage within this.
MAX_SECONDS = 2.0


@pytest.fixture(scope="module")
def ghl() -> Iterator[ServerThread]:
    """GoHighLevel's contacts API, where the scores are written back."""
    server = ServerThread(FakeGoHighLevel().app()).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer()


def _env(signer: Signer, **extra: str) -> dict[str, str]:
    return {
        "LEADSCORE_SECRET_KEY": new_key(),
        "LEADSCORE_GHL_WEBHOOK_PUBLIC_KEY": signer.public_pem,
        "LEADSCORE_CRM_POLL_SECONDS": "0.5",
    } | extra


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[httpx.Response, float]:
    """One delivery over a new connection (either worker may take it), and how long it took."""
    started = time.monotonic()
    response = httpx.post(url + WEBHOOK, content=body, headers=headers, timeout=10)
    return response, time.monotonic() - started


def _assert_retry_later(answers: list[tuple[httpx.Response, float]]) -> None:
    for response, seconds in answers:
        assert response.status_code == 429, response.text
        assert response.json()["error"] == "overloaded"
        assert int(response.headers["retry-after"]) >= 1
        assert seconds < MAX_SECONDS, seconds


def _scored(api: httpx.Client, admin: dict[str, str], lead_id: str) -> bool:
    response = api.get(f"/api/v1/ml/leads/{lead_id}", headers=admin)
    return response.status_code == 200 and len(response.json()["history"]) >= 1


def _inbox(dependencies: Dependencies, event_id: str) -> list[Any]:
    return dependencies.query(
        "SELECT status FROM crm_inbox WHERE provider = 'gohighlevel' AND event_id = $1", event_id
    )


def _explain(dependencies: Dependencies, event_id: str, log: Path) -> Callable[[], str]:
    """What a timed-out wait saw: the webhook's inbox row and the end of the server's log."""

    def explain() -> str:
        row = dependencies.query(
            "SELECT status, attempts, lease_until, error FROM crm_inbox"
            " WHERE provider = 'gohighlevel' AND event_id = $1",
            event_id,
        )
        tail = log.read_text(errors="replace").splitlines()[-40:]
        return f"inbox: {row}\nserver log:\n" + "\n".join(tail)

    return explain


def test_a_webhook_during_a_database_outage_is_429_and_accepted_once_it_is_back(
    deployment: Deployment,
    dependencies: Dependencies,
    ghl: ServerThread,
    signer: Signer,
    tmp_path: Path,
) -> None:
    admin = {"X-API-Key": deployment.keys["acme-admin"]}
    location, contact = f"loc{uuid.uuid4().hex[:16]}", f"c{uuid.uuid4().hex[:19]}"
    event = example("ContactCreate", locationId=location, id=contact)
    body, headers = signer.delivery(event, webhook_id=f"wh-{contact}")
    with (
        serve(deployment, tmp_path / "server.log", **_env(signer)) as server,
        httpx.Client(base_url=server.url, timeout=30) as api,
    ):
        connect_ghl(api, admin, ghl.url, location)
        # Once before the outage (a worker has the connection cached) and again: both workers.
        warm_body, warm_headers = signer.delivery(
            example("ContactCreate", locationId=location, id=f"w{contact}")
        )
        assert _post(server.url, warm_body, warm_headers)[0].status_code == 200
        dependencies.stop_postgres()
        try:
            during = [_post(server.url, body, headers) for _ in range(4)]
            # A connection no worker has cached: its lookup needs the stopped database.
            unknown_body, unknown_headers = signer.delivery(
                example("ContactCreate", locationId=f"loc{uuid.uuid4().hex[:16]}", id=contact)
            )
            unknown = _post(server.url, unknown_body, unknown_headers)
        finally:
            dependencies.start_postgres()
        _assert_retry_later([*during, unknown])
        assert _inbox(dependencies, f"wh-{contact}") == []
        # GoHighLevel retries the same delivery: accepted, then processed.
        again = wait_for(
            lambda: _post(server.url, body, headers)[0].status_code == 200, 20, "accepted again"
        )
        assert again < 20
        wait_for(
            lambda: _scored(api, admin, f"ghl-{contact}"), 30, "the lead scored",
            _explain(dependencies, f"wh-{contact}", tmp_path / "server.log"),
        )  # fmt: skip
        wait_for(
            lambda: [r["status"] for r in _inbox(dependencies, f"wh-{contact}")] == ["done"],
            30, "the webhook processed",
        )  # fmt: skip
        repeat = _post(server.url, body, headers)[0]
    assert repeat.status_code == 200
    assert repeat.json()["status"] == "duplicate"


def test_a_webhook_refused_during_an_outage_is_accepted_past_the_replay_window(
    deployment: Deployment,
    dependencies: Dependencies,
    ghl: ServerThread,
    signer: Signer,
    tmp_path: Path,
) -> None:
    """A 429 remembers the webhook (in Redis) as deferred: GoHighLevel's retry comes later than
    the window allows; a webhook as old that was never refused is still a replay."""
    admin = {"X-API-Key": deployment.keys["acme-admin"]}
    location, contact = f"loc{uuid.uuid4().hex[:16]}", f"c{uuid.uuid4().hex[:19]}"
    event = example("ContactCreate", locationId=location, id=contact)
    env = _env(signer, LEADSCORE_WEBHOOK_MAX_AGE_SECONDS="2")
    with (
        serve(deployment, tmp_path / "server.log", **env) as server,
        httpx.Client(base_url=server.url, timeout=30) as api,
    ):
        connect_ghl(api, admin, ghl.url, location)
        stamp = datetime.now(UTC)  # the delivery's time: the window runs from here
        body, headers = signer.delivery(event, now=stamp, webhook_id=f"wh-{contact}")
        other, other_headers = signer.delivery(
            example("ContactCreate", locationId=location, id=f"o{contact}"),
            now=stamp, webhook_id=f"wh-o{contact}",
        )  # fmt: skip
        dependencies.stop_postgres()
        try:
            refused = [_post(server.url, body, headers) for _ in range(4)]  # both workers
        finally:
            dependencies.start_postgres()
        _assert_retry_later(refused)
        # GoHighLevel's retry, later than the 2 s window.
        time.sleep(max(0.0, 3.0 - (datetime.now(UTC) - stamp).total_seconds()))
        late = _post(server.url, body, headers)[0]
        if late.status_code == 429:  # the pool still reconnecting: the next retry
            late = _post(server.url, body, headers)[0]
        replay = _post(server.url, other, other_headers)[0]
        assert (datetime.now(UTC) - stamp).total_seconds() >= 3.0
        assert late.status_code == 200, late.text
        assert late.json() == {"status": "accepted", "event_id": f"wh-{contact}"}
        wait_for(
            lambda: _scored(api, admin, f"ghl-{contact}"), 30, "the late webhook scored",
            _explain(dependencies, f"wh-{contact}", tmp_path / "server.log"),
        )  # fmt: skip
    assert replay.status_code == 401, replay.text
    assert replay.json()["error"] == "stale_webhook"
    assert _inbox(dependencies, f"wh-o{contact}") == []
