"""Genuinely signed webhooks of any content, on a real server: past the signature every answer
is 200, 401 (a replay), 404 or 422, never a 5xx, and every stored one is processed (done,
ignored or failed) without waiting for a lease to expire, which only an error in the worker
would leave it to."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from leadscore.core.tables import CrmInboxRow
from leadscore.crm.providers import webhook
from tests.api.conftest import Deployment, ServerThread
from tests.fakes.gohighlevel import FakeGoHighLevel, Signer

from .conftest import connect_ghl
from .strategies import event_fields, handled_types, json_values

WEBHOOK = "/api/v1/crm/gohighlevel/webhook"
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


def _statuses(server: ServerThread, connection_id: int) -> list[str]:
    async def read() -> list[str]:
        async with server.services.sessions() as session:
            found = await session.execute(
                select(CrmInboxRow.status).where(CrmInboxRow.connection_id == connection_id)
            )
            return list(found.scalars())

    statuses: list[str] = server.call(read())
    return statuses


def _all_processed(server: ServerThread, connection_id: int) -> list[str]:
    """The inbox statuses once none is pending (10 s at most; a lease lasts 30 s)."""
    deadline = time.monotonic() + 10
    while "pending" in (statuses := _statuses(server, connection_id)):
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return statuses


def test_signed_gohighlevel_webhooks_of_any_content_never_answer_5xx(
    crm_server: ServerThread,
    crm_deployment: Deployment,
    signer: Signer,
    ghl: tuple[FakeGoHighLevel, ServerThread],
) -> None:
    admin = {"X-API-Key": crm_deployment.keys["acme-admin"]}
    location = f"loc{uuid.uuid4().hex[:16]}"
    seen: set[int] = set()
    with httpx.Client(base_url=crm_server.url, timeout=30) as api:
        connection = connect_ghl(api, admin, ghl[1].url, location, enabled=False)

        @FUZZ
        @given(
            handled_types | st.text(max_size=20),
            st.sampled_from([location, f"other{location}"]),
            event_fields,
            st.booleans(),
            st.sampled_from([0, 0, 0, -3600, 86_400]),
        )
        # Shapes that once answered 500 (check) or broke the worker (parse, the sync):
        @example("AppointmentCreate", location, {"appointment": "9NkT25Vor1v4aQatFsv2"}, True, 0)
        @example("ContactCreate", location, {"id": "c1", "customFields": True}, True, 0)
        @example(
            "InboundMessage",
            location,
            {"contactId": "c2", "conversationId": {"a": 1}, "dateAdded": "2026-01-01T00:00:00Z"},
            True,
            0,
        )
        def check(
            kind: str, account: str, fields: dict[str, Any], wrapped: bool, offset: int
        ) -> None:
            event = {"type": kind, "locationId": account} | fields
            moment = datetime.now(UTC) + timedelta(seconds=offset)
            body, headers = signer.delivery(event, now=moment, wrapped=wrapped)
            answer = api.post(WEBHOOK, content=body, headers=headers)
            seen.add(answer.status_code)
            assert answer.status_code in (200, 401, 404, 422), (answer.status_code, answer.text)

        check()
    assert 200 in seen
    statuses = _all_processed(crm_server, connection["id"])
    assert statuses
    assert "pending" not in statuses, statuses


def test_signed_generic_webhooks_of_any_content_never_answer_5xx(
    crm_server: ServerThread, crm_deployment: Deployment
) -> None:
    admin = {"X-API-Key": crm_deployment.keys["acme-admin"]}
    seen: set[int] = set()
    bodies = st.one_of(
        json_values.map(orjson.dumps),
        st.fixed_dictionaries(
            {"lead_id": st.from_regex(r"[A-Za-z0-9_-]{1,20}", fullmatch=True) | json_values},
            optional={"lead_data": st.dictionaries(
                st.sampled_from(["name", "pre_approved", "timeline", "budget_min",
                                 "interaction_history", "attributes", "created_at"]),
                json_values,
            ), "event_id": json_values, "outcome": json_values},
        ).map(orjson.dumps),
        st.binary(max_size=100),
    )  # fmt: skip
    with httpx.Client(base_url=crm_server.url, timeout=30) as api:
        created = api.post("/api/v1/crm/connections", headers=admin,
                           json={"provider": "webhook"})  # fmt: skip
        assert created.status_code == 201, created.text
        connection = created.json()

        @FUZZ
        @given(bodies)
        def check(body: bytes) -> None:
            signature = webhook.signature(connection["signing_secret"], body)
            answer = api.post(
                connection["webhook_path"], content=body,
                headers={"X-LeadScore-Signature": signature, "Content-Type": "application/json"},
            )  # fmt: skip
            seen.add(answer.status_code)
            assert answer.status_code in (200, 422), (answer.status_code, answer.text)

        check()
    assert 422 in seen
    statuses = _all_processed(crm_server, connection["id"])
    assert "pending" not in statuses, statuses
