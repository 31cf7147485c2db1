"""A server with the CRM loop on, GoHighLevel's fake API beside it, and a webhook signer."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from pydantic import SecretStr

from leadscore.crm.secrets import new_key
from tests.api.conftest import Deployment, ServerThread, deploy
from tests.fakes.gohighlevel import FakeGoHighLevel, Signer

FIXTURES = Path(__file__).parent / "fixtures" / "gohighlevel"
LOCATION = "ve9EPM428h8vShlRW1KT"
SCORE_FIELD = "BcdmScoreField000001"
TAGS = {"hot": "leadscore-hot", "warm": "leadscore-warm", "cold": "leadscore-cold"}


def example(name: str, **changes: Any) -> dict[str, Any]:
    """A published GoHighLevel example payload, with some fields changed."""
    event: dict[str, Any] = orjson.loads((FIXTURES / f"{name}.json").read_bytes())
    return event | changes


def wait_for(check: Callable[[], Any], timeout: float = 15.0, every: float = 0.05) -> Any:
    """The first truthy result of `check`, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"not true within {timeout} s: {check}")
        time.sleep(every)


@pytest.fixture(scope="session")
def signer() -> Signer:
    """GoHighLevel's side of webhook signatures, with a key of the tests' own."""
    return Signer()


@pytest.fixture(scope="module")
def ghl() -> Iterator[tuple[FakeGoHighLevel, ServerThread]]:
    """The fake GoHighLevel contacts API on a loopback port."""
    fake = FakeGoHighLevel()
    server = ServerThread(fake.app()).start()
    yield fake, server
    server.stop()


@pytest.fixture(scope="module", params=["sqlite-memory", "postgres-redis"])
def crm_deployment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, model_dir: Path
) -> Deployment:
    """Each backend, migrated, with keys for teams acme and globex."""
    return deploy(request.param, tmp_path_factory.mktemp(f"crm-{request.param}"), model_dir)


@pytest.fixture(scope="module")
def crm_server(crm_deployment: Deployment, signer: Signer) -> Iterator[ServerThread]:
    """A server that trusts the test signer's key, with short retry delays."""
    running = crm_deployment.start(
        secret_key=SecretStr(new_key()),
        ghl_webhook_public_key=signer.public_pem,
        crm_retry_base_seconds=0.2,
        crm_retry_max_seconds=1.0,
        crm_poll_seconds=0.2,
    )
    yield running
    running.stop()


@pytest.fixture
def api(crm_server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=crm_server.url, timeout=30) as http:
        yield http


def connect_ghl(
    api: httpx.Client,
    admin: dict[str, str],
    base: str,
    location: str,
    token: str = "pit-test-token",
    **write_back: Any,
) -> dict[str, Any]:
    """Connect a GoHighLevel location to the admin's team, writing back to `base`."""
    response = api.post(
        "/api/v1/crm/connections",
        headers=admin,
        json={
            "provider": "gohighlevel",
            "account_id": location,
            "credentials": {"token": token},
            "api_base": base,
            "write_back": {"score_field": SCORE_FIELD, "class_tags": TAGS} | write_back,
            "field_mapping": {"TimelineField0000001": "timeline", "PreApproved000000001":
                              "pre_approved", "tag:pre-approved": "pre_approved",
                              "BudgetField00000001": "budget_range"},
        },
    )  # fmt: skip
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body
