"""The CRM loop on two `leadscore serve` workers over PostgreSQL and Redis: webhooks in through
either worker, scores out to the fake GoHighLevel, a minute-long CRM outage, and kill -9."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from leadscore.core.tables import CrmInboxRow, OutcomeRow
from leadscore.crm.secrets import new_key
from tests.api.conftest import Deployment, ServerThread, deploy
from tests.fakes.gohighlevel import FakeGoHighLevel, Signer
from tests.faults.conftest import serve

from .conftest import SCORE_FIELD, TAGS, connect_ghl, example, wait_for

WEBHOOK = "/api/v1/crm/gohighlevel/webhook"


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Deployment:
    return deploy("postgres-redis", tmp_path_factory.mktemp("crm-workers"), model_dir)


@pytest.fixture(scope="module")
def ghl() -> Iterator[tuple[FakeGoHighLevel, ServerThread]]:
    fake = FakeGoHighLevel()
    server = ServerThread(fake.app()).start()
    yield fake, server
    server.stop()


def _env(signer: Signer, key: str) -> dict[str, str]:
    return {
        "LEADSCORE_SECRET_KEY": key,
        "LEADSCORE_GHL_WEBHOOK_PUBLIC_KEY": signer.public_pem,
        "LEADSCORE_CRM_RETRY_BASE_SECONDS": "0.5",
        "LEADSCORE_CRM_RETRY_MAX_SECONDS": "4",
        "LEADSCORE_CRM_MAX_ATTEMPTS": "40",  # a minute of outage at 4 s at most between tries
        "LEADSCORE_CRM_POLL_SECONDS": "0.5",
    }


def _count(backend: Deployment, *where: Any, table: Any = CrmInboxRow) -> int:
    async def run() -> int:
        engine = create_async_engine(backend.settings.resolved_database_url)
        try:
            async with engine.connect() as connection:
                query = select(func.count()).select_from(table).where(*where)
                return int((await connection.execute(query)).scalar_one())
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _send(url: str, signer: Signer, event: dict[str, Any], **options: Any) -> httpx.Response:
    body, headers = signer.delivery(event, **options)
    return httpx.post(url + WEBHOOK, content=body, headers=headers, timeout=10)


def test_the_crm_loop_on_two_workers_survives_an_outage_and_kill_9(
    backend: Deployment, ghl: tuple[FakeGoHighLevel, ServerThread], tmp_path: Path
) -> None:
    fake, fake_server = ghl
    signer = Signer()
    env = _env(signer, new_key())
    admin = {"X-API-Key": backend.keys["acme-admin"]}
    location = f"loc{uuid.uuid4().hex[:16]}"
    with (
        serve(backend, tmp_path / "first.log", workers=2, **env) as server,
        httpx.Client(base_url=server.url, timeout=30) as api,
    ):
        connect_ghl(api, admin, fake_server.url, location)
        # The burst below goes to a location that writes nothing back (its outbox would take
        # 100 s at GoHighLevel's rate): what is checked there is the inbox.
        quiet = f"loc{uuid.uuid4().hex[:16]}"
        connect_ghl(api, admin, fake_server.url, quiet, enabled=False)
        # Created → scored → the score field and the class tag reach GoHighLevel.
        contact = f"c{uuid.uuid4().hex[:19]}"
        assert _send(server.url, signer, example("ContactCreate", locationId=location,
                                                 id=contact)).status_code == 200  # fmt: skip
        writes = wait_for(lambda: len(fake.writes(contact)) >= 3 and fake.writes(contact))
        latest = api.get(f"/api/v1/ml/score/ghl-{contact}", headers=admin).json()
        field = {"id": SCORE_FIELD, "field_value": latest["ml_score"]}
        assert writes[0].body == {"customFields": [field]}
        assert writes[1].body == {"tags": [TAGS[latest["classification"]]]}
        # A reply → re-scored with the interaction.
        now = datetime.now(UTC).isoformat()
        reply = example("InboundMessage.1", locationId=location, contactId=contact,
                        dateAdded=now, body="Can we tour it?")  # fmt: skip
        assert _send(server.url, signer, reply).status_code == 200

        def history() -> list[Any]:
            body = api.get(f"/api/v1/ml/score/ghl-{contact}/history", headers=admin).json()
            return list(body.get("scores", []))

        wait_for(lambda: len(history()) >= 2)
        # Won → the outcome is recorded as a label.
        won = example("OpportunityStatusUpdate", locationId=location, contactId=contact,
                      status="won", monetaryValue=510000,
                      dateAdded=(datetime.now(UTC) - timedelta(minutes=1)).isoformat())  # fmt: skip
        assert _send(server.url, signer, won, webhook_id=f"won-{contact}").status_code == 200
        wait_for(lambda: _count(backend, OutcomeRow.lead_id == f"ghl-{contact}",
                                table=OutcomeRow) == 2)  # fmt: skip
        # The same delivery again, through either worker: one effect.
        repeat = _send(server.url, signer, won, webhook_id=f"won-{contact}")
        assert repeat.status_code == 200
        assert repeat.json()["status"] == "duplicate"
        assert _count(backend, CrmInboxRow.event_id == f"won-{contact}") == 1
        # Forged and replayed deliveries are refused.
        body, headers = signer.delivery(reply)
        assert (
            httpx.post(server.url + WEBHOOK, content=body + b" ", headers=headers).status_code
            == 401
        )
        stale = _send(server.url, signer, reply, now=datetime.now(UTC) - timedelta(minutes=10))
        assert stale.status_code == 401
        # GoHighLevel down for a minute: the write-backs wait and arrive once it is back.
        fake.down_until = time.monotonic() + 60.0
        during = [f"c{uuid.uuid4().hex[:19]}" for _ in range(10)]
        for other in during:
            assert _send(server.url, signer, example("ContactCreate", locationId=location,
                                                     id=other)).status_code == 200  # fmt: skip
        time.sleep(55)
        assert not any(fake.writes(other) for other in during)
        pending = api.get("/api/v1/crm/outbox", params={"status": "pending"}, headers=admin).json()
        assert {row["contact_id"] for row in pending} >= set(during)
        wait_for(lambda: all(len(fake.writes(other)) >= 3 for other in during), timeout=30)
        # Acknowledged webhooks survive kill -9 of every worker, killed in the middle of a
        # burst (to a location that writes nothing back: what is checked is the inbox).
        burst = [f"c{uuid.uuid4().hex[:19]}" for _ in range(600)]

        def deliver(contact: str) -> str | None:
            event = example("ContactCreate", locationId=quiet, id=contact)
            try:
                answer = _send(server.url, signer, event, webhook_id=f"burst-{contact}")
            except httpx.TransportError:
                return None  # not acknowledged: the kill came first
            return contact if answer.status_code == 200 else None

        with ThreadPoolExecutor(16) as pool:
            futures = [pool.submit(deliver, contact) for contact in burst]
            wait_for(lambda: sum(f.done() for f in futures) >= 250, timeout=60, every=0.01)
            server.kill()
            acknowledged = [c for f in futures if (c := f.result()) is not None]
    assert len(acknowledged) >= 250
    stored = _count(backend, CrmInboxRow.event_id.like("burst-%"))
    unprocessed = _count(backend, CrmInboxRow.event_id.like("burst-%"),
                         CrmInboxRow.status == "pending")  # fmt: skip
    assert stored >= len(acknowledged)  # every acknowledged webhook was committed first
    with serve(backend, tmp_path / "second.log", workers=2, **env) as restarted:
        pending = (CrmInboxRow.event_id.like("burst-%"), CrmInboxRow.status == "pending")
        wait_for(lambda: _count(backend, *pending) == 0, timeout=90)
        for contact in acknowledged:
            scored = httpx.get(f"{restarted.url}/api/v1/ml/score/ghl-{contact}", headers=admin)
            assert scored.status_code == 200, contact
    print(f"kill -9: {len(acknowledged)} acknowledged, {stored} stored, {unprocessed} of them "
          "left unprocessed and finished after the restart")  # fmt: skip
