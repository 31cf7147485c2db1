"""An inbox with too much waiting: a genuine webhook answers 429 with Retry-After (the only
status GoHighLevel retries) and nothing is stored; a malformed one is still recorded."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from leadscore.core.tables import CrmInboxRow
from leadscore.crm.secrets import new_key
from tests.api.conftest import Deployment, ServerThread
from tests.fakes.gohighlevel import FakeGoHighLevel, Signer

from .conftest import connect_ghl, example

WEBHOOK = "/api/v1/crm/gohighlevel/webhook"


@pytest.fixture(scope="module")
def full_server(crm_deployment: Deployment, signer: Signer) -> Iterator[ServerThread]:
    """A server whose inbox takes no more webhooks (crm_inbox_max_pending=0)."""
    running = crm_deployment.start(
        secret_key=SecretStr(new_key()),
        ghl_webhook_public_key=signer.public_pem,
        crm_inbox_max_pending=0,
        crm_poll_seconds=0.2,
    )
    yield running
    running.stop()


def _rows(server: ServerThread, connection_id: int) -> list[tuple[str, str]]:
    """(event id, status) of the connection's inbox rows, read from the crm_inbox table."""

    async def read() -> list[tuple[str, str]]:
        async with server.services.sessions() as session:
            found = await session.execute(
                select(CrmInboxRow.event_id, CrmInboxRow.status).where(
                    CrmInboxRow.connection_id == connection_id
                )
            )
            return [(row[0], row[1]) for row in found.all()]

    rows: list[tuple[str, str]] = server.call(read())
    return rows


def _total(server: ServerThread) -> int:
    async def read() -> int:
        async with server.services.sessions() as session:
            return int((await session.execute(select(func.count(CrmInboxRow.id)))).scalar_one())

    total: int = server.call(read())
    return total


def test_an_overloaded_inbox_answers_429_with_retry_after_and_stores_nothing(
    full_server: ServerThread,
    crm_deployment: Deployment,
    signer: Signer,
    ghl: tuple[FakeGoHighLevel, ServerThread],
) -> None:
    admin = {"X-API-Key": crm_deployment.keys["acme-admin"]}
    location, contact = f"loc{uuid.uuid4().hex[:16]}", f"c{uuid.uuid4().hex[:19]}"
    with httpx.Client(base_url=full_server.url, timeout=30) as api:
        connection = connect_ghl(api, admin, ghl[1].url, location)
        before = _total(full_server)
        answers = []
        for wrapped in (True, False):
            body, headers = signer.delivery(
                example("ContactCreate", locationId=location, id=contact),
                webhook_id=f"wh-{contact}", wrapped=wrapped,
            )  # fmt: skip
            answers.append(api.post(WEBHOOK, content=body, headers=headers))
        # A malformed webhook is not work to do: it is recorded for the admin, overloaded or not.
        bad_body, bad_headers = signer.delivery(
            {"type": "ContactCreate", "locationId": location}, webhook_id=f"bad-{contact}"
        )
        bad = api.post(WEBHOOK, content=bad_body, headers=bad_headers)
        inbox = api.get("/api/v1/crm/inbox", params={"status": "rejected"}, headers=admin)
    for answer in answers:
        assert answer.status_code == 429, answer.text
        assert answer.json()["error"] == "overloaded"
        assert int(answer.headers["retry-after"]) >= 1
    assert bad.status_code == 422, bad.text
    assert _rows(full_server, connection["id"]) == [(f"bad-{contact}", "rejected")]
    assert _total(full_server) == before + 1
    assert inbox.status_code == 200
    assert f"bad-{contact}" in {entry["event_id"] for entry in inbox.json()}
