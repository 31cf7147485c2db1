"""Pages of the leads list out of 100,000 leads of one team, on SQLite (file) and PostgreSQL.

Run: `OMP_NUM_THREADS=2 uv run python benchmarks/leads_list.py [--leads 100000] [--repeat 200]
[--postgres URL]` (URL default: LEADSCORE_DATABASE_URL, else LEADSCORE_TEST_POSTGRES_URL, else
SQLite only). A migrated database gets a team of its own with N leads and their latest scores
(bulk Core inserts of the denormalised columns `save_scores` writes); then the list's service
call (`LeadsService.list`: the keyset query and the page's JSON, no HTTP) is timed for pages of
50 for each sort, first page and a deep page (a cursor half-way down), and for the common
filters. Prints p50/p99 per case. On PostgreSQL the bench team is deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from leadscore.auth.principal import Principal
from leadscore.cli.serve import tune_process
from leadscore.core.migrate import upgrade
from leadscore.core.tables import LeadRow, Team
from leadscore.scoring.leads import LeadsService, encode_cursor
from leadscore.scoring.repository import SORT_COLUMNS, LeadFilter

SOURCES = ["zillow", "Zillow", "referral", "open_house", "realtor.com", "facebook"]
SURNAMES = ["Smith", "Chen", "Garcia", "Okafor", "Patel", "Kowalski", "Nguyen", "Haddad"]
CHUNK = 5000


class NoWriter:
    """No pending scores to wait for: the bench reads what it inserted."""

    async def barrier(self) -> None:
        return None


def lead_rows(team_id: int, n: int, now: datetime) -> list[dict[str, Any]]:
    """N leads with a latest score each: spread scores, 10% without commission, 30% scored once."""
    rng = random.Random(7)
    rows = []
    for i in range(n):
        score = round(rng.betavariate(2, 3) * 100, 2)
        at = now - timedelta(seconds=rng.uniform(0, 30 * 86400))
        surname = rng.choice(SURNAMES)
        rows.append(
            {
                "team_id": team_id, "lead_id": f"lead_{i:07d}",
                "data": {"name": f"Lead {i} {surname}"}, "first_data": None,
                "first_seen_at": at, "updated_at": at,
                "name": f"Lead {i} {surname}", "email": f"lead{i}@{surname.lower()}.test",
                "source": rng.choice(SOURCES), "ml_score": score,
                "classification": "hot" if score >= 70 else "warm" if score >= 40 else "cold",
                "ml_confidence": round(rng.uniform(0.6, 0.99), 3),
                "qualification_needed": rng.random() < 0.3,
                "expected_commission": None if rng.random() < 0.1 else round(score * 180, 2),
                "change_points": None if rng.random() < 0.3 else round(rng.gauss(0, 8), 2),
                "scored_at": at, "model_version": "bench-v1",
                "summary": {"top_question": {"field": "pre_approved",
                                             "question": "Are you pre-approved?"},
                            "reasons": [{"feature": "f", "group": "g", "value": 1.0,
                                         "points": 9.5, "text": "Replies fast: +9.5 points"}]},
            }
        )  # fmt: skip
    return rows


async def seed(sessions: async_sessionmaker[AsyncSession], n: int, now: datetime) -> int:
    async with sessions.begin() as session:
        team = Team(name=f"bench-{uuid.uuid4().hex[:8]}", created_at=now)
        session.add(team)
        await session.flush()
        team_id = team.id
        rows = lead_rows(team_id, n, now)
        table = LeadRow.metadata.tables[LeadRow.__tablename__]
        for first in range(0, n, CHUNK):
            await session.execute(insert(table), rows[first : first + CHUNK])
    return team_id


async def deep_cursor(session: AsyncSession, team_id: int, sort: str, offset: int) -> str:
    """The cursor a client holds after paging `offset` leads down (taken with OFFSET once)."""
    column = SORT_COLUMNS[sort]
    row = (
        await session.execute(
            select(column, LeadRow.lead_id)
            .where(LeadRow.team_id == team_id, column.is_not(None))
            .order_by(column.desc(), LeadRow.lead_id.desc())
            .offset(offset)
            .limit(1)
        )
    ).one()
    return encode_cursor(sort, row[0], row[1])


async def run(url: str, n: int, repeat: int, name: str) -> None:
    await asyncio.to_thread(upgrade, url)
    engine = create_async_engine(url)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    now = datetime.now(UTC)
    started = time.perf_counter()
    team_id = await seed(sessions, n, now)
    seeded = time.perf_counter() - started
    async with engine.begin() as connection:
        await connection.execute(text("ANALYZE"))
    tune_process()  # as `leadscore serve` tunes a worker once it is built (gc, switch interval)
    service = LeadsService(NoWriter())  # type: ignore[arg-type]
    principal = Principal(key_id=0, team_id=team_id, team_name="bench", role="viewer")
    cases: list[tuple[str, str, LeadFilter, str | None]] = []
    async with sessions() as session:
        for sort in SORT_COLUMNS:
            cases.append((f"sort={sort} first page", sort, LeadFilter(), None))
            cursor = await deep_cursor(session, team_id, sort, n // 2)
            cases.append((f"sort={sort} page at {n // 2:,}", sort, LeadFilter(), cursor))
    since = now - timedelta(days=1)
    cases += [
        ("classification=hot", "score", LeadFilter(classification="hot"), None),
        ("qualification=needed", "score", LeadFilter(qualification_needed=True), None),
        ("min_score=80", "score", LeadFilter(min_score=80), None),
        ("source=zillow", "score", LeadFilter(source="zillow"), None),
        ("scored_since=1 day, sort=scored_at", "scored_at", LeadFilter(scored_since=since), None),
        ("classification=cold, sort=change", "change", LeadFilter(classification="cold"), None),
        ("q=smith (name/email substring)", "score", LeadFilter(q="smith"), None),
    ]
    print(f"\n{name}: {n:,} leads seeded in {seeded:.1f} s; pages of 50, {repeat} runs each")
    print(f"{'case':44} {'p50 ms':>8} {'p99 ms':>8} {'rows':>5}")
    for label, sort, keep, cursor in cases:
        times = []
        body = b""
        for _ in range(repeat):
            async with sessions() as session:
                begin = time.perf_counter()
                body = await service.list(session, principal, keep, sort, 50, cursor)
                times.append((time.perf_counter() - begin) * 1000)
        times.sort()
        p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
        print(f"{label:44} {statistics.median(times):8.2f} {p99:8.2f} {body.count(b'lead_id'):5}")
    if not url.startswith("sqlite"):
        async with sessions.begin() as session:
            await session.execute(delete(LeadRow).where(LeadRow.team_id == team_id))
            await session.execute(delete(Team).where(Team.id == team_id))
    await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument(
        "--postgres",
        default=os.environ.get("LEADSCORE_DATABASE_URL")
        or os.environ.get("LEADSCORE_TEST_POSTGRES_URL"),
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        sqlite = f"sqlite+aiosqlite:///{Path(home) / 'bench.db'}"
        asyncio.run(run(sqlite, args.leads, args.repeat, "SQLite (file)"))
    if args.postgres:
        asyncio.run(run(args.postgres, args.leads, args.repeat, "PostgreSQL"))


if __name__ == "__main__":
    main()
