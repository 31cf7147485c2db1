"""The migrations build exactly the schema the tables describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from leadscore.core.migrate import alembic_config, upgrade
from leadscore.core.tables import Base, LeadRow
from leadscore.core.timestamps import iso_z
from tests.services import postgres_url, reset_postgres


def _differences(url: str) -> list[object]:
    async def compare() -> list[object]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as connection:

                def diff(sync: Connection) -> list[object]:
                    context = MigrationContext.configure(sync, opts={"compare_type": True})
                    return list(compare_metadata(context, Base.metadata))

                return await connection.run_sync(diff)
        finally:
            await engine.dispose()

    return asyncio.run(compare())


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_migrated_schema_matches_the_tables(backend: str, tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}" if backend == "sqlite" else postgres_url()
    upgrade(url)
    assert _differences(url) == []


def _score_body(score: float, version: str, at: datetime) -> dict[str, Any]:
    """A stored score body, as scoring wrote them before revision 0007."""
    return {
        "lead_id": "l1", "ml_score": score, "ml_confidence": 0.9, "classification": "warm",
        "reasons": [{"feature": f, "group": "g", "value": 1.0, "points": p, "text": f"{f}: {p}"}
                    for f, p in (("a", 9.0), ("b", -4.0), ("c", 1.0))],
        "commission": {"estimated_commission": 18000.0, "commission_rate": 0.03,
                       "estimated_sale_price": 600000.0, "expected_commission": score * 100},
        "qualification": {"needed": score < 50, "reasons": [], "ask_next": [
            {"field": "pre_approved", "question": "Pre-approved?", "score_if_yes": 80.0,
             "score_if_no": 40.0}]},
        "model_version": version, "scored_at": iso_z(at),
    }  # fmt: skip


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_0007_backfills_each_leads_latest_score(backend: str, tmp_path: Path) -> None:
    """Leads scored before 0007 get their latest score's columns and the change since the
    score before it; a lead scored once has no change."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}" if backend == "sqlite" else postgres_url()
    if backend == "postgres":
        asyncio.run(reset_postgres(url))
    command.upgrade(alembic_config(url), "0006")
    now = datetime.now(UTC).replace(microsecond=0)
    scores = [  # (lead, score, version, minutes ago); lead l1 twice at the same instant
        ("l1", 40.0, "v1", 30), ("l1", 55.5, "v1", 20), ("l1", 61.25, "v2", 10),
        ("l1", 70.0, "v2", 40), ("l2", 30.0, "v1", 5),
    ]  # fmt: skip

    async def seed_and_read() -> dict[str, dict[str, Any]]:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as connection:
                await connection.execute(
                    text("INSERT INTO teams (id, name, created_at) VALUES (1, 'acme', :at)"),
                    {"at": now},
                )
                for lead_id in ("l1", "l2"):
                    await connection.execute(
                        text("INSERT INTO leads (team_id, lead_id, data, first_seen_at, "
                             "updated_at) VALUES (1, :lead, :data, :at, :at)"),
                        {"lead": lead_id, "at": now, "data": json.dumps(
                            {"name": f"N {lead_id}", "email": f"{lead_id}@x.test",
                             "source": "Zillow"})},
                    )  # fmt: skip
                for lead_id, score, version, ago in scores:
                    at = now - timedelta(minutes=ago)
                    await connection.execute(
                        text("INSERT INTO scores (team_id, lead_id, model_version, ml_score, "
                             "classification, escalation_recommended, cache_hit, scored_at, "
                             "result) VALUES (1, :lead, :v, :s, 'warm', :e, false, :at, :r)"),
                        {"lead": lead_id, "v": version, "s": score, "at": at, "e": score < 50,
                         "r": json.dumps(_score_body(score, version, at))},
                    )  # fmt: skip
            await asyncio.to_thread(upgrade, url)
            async with engine.connect() as connection:
                rows = await connection.execute(select(LeadRow.__table__))
                return {row.lead_id: dict(row._mapping) for row in rows}
        finally:
            await engine.dispose()

    leads = asyncio.run(seed_and_read())
    l1, l2 = leads["l1"], leads["l2"]
    assert l1["ml_score"] == 61.25  # the newest (10 minutes ago), not the last inserted
    assert l1["change_points"] == 5.75  # since 55.5, twenty minutes ago
    assert l1["model_version"] == "v2"
    assert l1["expected_commission"] == 6125.0
    assert l1["qualification_needed"] is False
    assert l1["ml_confidence"] == 0.9
    assert (l1["name"], l1["email"], l1["source"]) == ("N l1", "l1@x.test", "Zillow")
    assert l1["scored_at"] == now - timedelta(minutes=10)
    summary = l1["summary"]
    if isinstance(summary, str):  # SQLite Core reads of JSON text
        summary = json.loads(summary)
    assert summary["top_question"] == {"field": "pre_approved", "question": "Pre-approved?"}
    assert [r["points"] for r in summary["reasons"]] == [9.0, -4.0]
    assert l2["ml_score"] == 30.0
    assert l2["change_points"] is None
    assert l2["qualification_needed"] is True
