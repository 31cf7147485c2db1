"""An export is read from the database a chunk at a time while it is sent, never built whole."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadscore.auth.principal import Principal
from leadscore.core.tables import LeadRow, Team
from leadscore.core.writer import ScoreWriter
from leadscore.reports.exports import csv_body
from leadscore.scoring.leads import LeadsService
from leadscore.scoring.repository import LeadFilter, ScoreRecord

LEADS = 4500
CHUNK = 1000


def _row(team_id: int, index: int, score: float, at: datetime) -> dict[str, Any]:
    return {
        "team_id": team_id, "lead_id": f"s_{index:05d}", "data": {}, "first_data": None,
        "first_seen_at": at, "updated_at": at, "name": f"Lead {index}",
        "email": f"l{index}@example.org", "source": "zillow", "ml_score": score,
        "classification": "hot" if score >= 70 else "warm" if score >= 40 else "cold",
        "ml_confidence": 0.9, "qualification_needed": False, "expected_commission": 1000.0,
        "change_points": None, "scored_at": at, "model_version": "v1",
        "summary": {"top_question": None, "reasons": []},
    }  # fmt: skip


async def _insert(sessions: async_sessionmaker[AsyncSession], rows: Sequence[Any]) -> None:
    async with sessions.begin() as session:
        await session.execute(insert(LeadRow.metadata.tables[LeadRow.__tablename__]), rows)


async def _persist(_records: Sequence[ScoreRecord]) -> None:
    raise AssertionError("nothing is scored here")


async def test_the_first_rows_are_sent_before_the_last_are_read(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    now = datetime.now(UTC)
    async with sessions.begin() as session:
        team = Team(name="stream", created_at=now)
        session.add(team)
        await session.flush()
        team_id = team.id
    await _insert(
        sessions,
        [_row(team_id, i, 10 + 80 * i / LEADS, now - timedelta(minutes=i)) for i in range(LEADS)],
    )
    writer: ScoreWriter[ScoreRecord] = ScoreWriter(
        _persist, batch_max=1, interval_ms=1, durable=False
    )  # never started: no pending scores to wait for
    principal = Principal(key_id=0, team_id=team_id, team_name="stream", role="viewer")
    body = csv_body(
        LeadsService(writer).iter_leads(sessions, principal, LeadFilter(), "score", CHUNK)
    )
    header = await anext(body)
    first = await anext(body)
    assert header.startswith(b"\xef\xbb\xbflead_id,")
    assert len(first.splitlines()) == CHUNK  # one chunk of rows, not the whole export
    # A lead scored now, lowest of all: it is listed last, so the export reads it only if the
    # last rows are read after the first chunk went out.
    await _insert(sessions, [_row(team_id, LEADS, 1.0, now)])
    rest = [block async for block in body]
    assert len(rest) == LEADS // CHUNK  # 4500 + 1 leads: four more chunks, the last partial
    rows = list(csv.DictReader(io.StringIO((header + first + b"".join(rest)).decode("utf-8-sig"))))
    assert len(rows) == LEADS + 1
    assert rows[-1]["lead_id"] == f"s_{LEADS:05d}"
    scores = [float(row["ml_score"]) for row in rows]
    assert scores == sorted(scores, reverse=True)
    assert len({row["lead_id"] for row in rows}) == LEADS + 1  # no row twice across chunks
