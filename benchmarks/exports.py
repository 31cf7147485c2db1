"""Exports of 100,000 leads (CSV, XLSX) and the broker's PDF report, through the app's services.

Run: `OMP_NUM_THREADS=2 uv run python benchmarks/exports.py [--leads 100000] [--home DIR]
[--database URL]` (default: a fresh SQLite file in a temporary directory; the built-in model is
built once in DIR, default ~/.cache/leadscore-bench). A migrated database gets a team of its own
with N leads (their latest scores, as `save_scores` writes them), a score each in the history and
outcomes for a fifth of them, seeded with bulk Core inserts. The app's components are then started
as a worker starts them, and the report service's own calls are timed: the CSV and the XLSX bodies
read to their end (what the route streams), and the PDF report. RSS is sampled every 10 ms: before,
after and the peak of each step. Wall and CPU time (all the process's threads) are printed: on a
busy machine the CPU time is the figure that does not depend on the others. Targets: CSV ≤ 5 s, XLSX
≤ 20 s, PDF ≤ 5 s, RSS flat (the peak does not grow with the number of leads).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from leadscore.app import create_app
from leadscore.auth.principal import Principal
from leadscore.core.config import ServiceSettings
from leadscore.core.migrate import upgrade
from leadscore.core.tables import LeadRow, OutcomeRow, ScoreRow, Team
from leadscore.deps import Services
from leadscore.scoring.repository import LeadFilter

SOURCES = ["zillow", "Zillow", "referral", "open_house", "realtor.com", "facebook"]
SURNAMES = ["Smith", "Chen", "Garcia", "Okafor", "Patel", "Kowalski", "Nguyen", "Haddad"]
CHUNK = 5000
SECRET = "bench-exports-6Rk2Wq9Lm4Tz8Px3Hv7Jc1Bn5Fd0G"


def rss_mb() -> float:
    """The process's resident set now, in MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class Sampler:
    """The highest RSS seen while a step runs, sampled every 10 ms in a thread."""

    def __init__(self) -> None:
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb())
            time.sleep(0.01)

    def __enter__(self) -> Sampler:
        self.peak = rss_mb()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


def rows_for(team_id: int, n: int, now: datetime) -> tuple[list[dict[str, Any]], ...]:
    """N leads with their latest score, a score each in the history, outcomes for a fifth."""
    rng = random.Random(7)
    leads, scores, outcomes = [], [], []
    for i in range(n):
        score = round(rng.betavariate(2, 3) * 100, 2)
        at = now - timedelta(seconds=rng.uniform(60, 20 * 86400))
        surname = rng.choice(SURNAMES)
        cls = "hot" if score >= 70 else "warm" if score >= 40 else "cold"
        lead_id = f"lead_{i:07d}"
        leads.append(
            {
                "team_id": team_id, "lead_id": lead_id,
                "data": {"name": f"Lead {i} {surname}", "timeline": "3-6 months",
                         "budget_range": "400k-600k", "source": "zillow"},
                "first_data": None, "first_seen_at": at, "updated_at": at,
                "name": f"Lead {i} {surname}", "email": f"lead{i}@{surname.lower()}.test",
                "source": rng.choice(SOURCES), "ml_score": score, "classification": cls,
                "ml_confidence": round(rng.uniform(0.6, 0.99), 3),
                "qualification_needed": rng.random() < 0.3,
                "expected_commission": None if rng.random() < 0.1 else round(score * 180, 2),
                "change_points": None if rng.random() < 0.3 else round(rng.gauss(0, 8), 2),
                "scored_at": at, "model_version": "bench-v1",
                "summary": {"top_question": {"field": "pre_approved",
                                             "question": "Are you pre-approved?"},
                            "reasons": [{"feature": "f", "group": "g", "value": 1.0,
                                         "points": 9.5, "text": "Replies fast: +9.5 points"},
                                        {"feature": "b", "group": "g", "value": 1.0,
                                         "points": -3.1, "text": "No budget given: -3.1 points"}]},
            }
        )  # fmt: skip
        scores.append(
            {"team_id": team_id, "lead_id": lead_id, "model_version": "bench-v1",
             "ml_score": score, "classification": cls, "escalation_recommended": False,
             "cache_hit": False, "scored_at": at, "result": {}}
        )  # fmt: skip
        if i % 5 == 0:
            outcomes.append(
                {"team_id": team_id, "lead_id": lead_id,
                 "outcome": "converted" if rng.random() < score / 100 else "lost",
                 "occurred_at": at, "sale_price": None, "closed_at": None, "recorded_at": at}
            )  # fmt: skip
    return leads, scores, outcomes


async def seed(url: str, n: int, now: datetime) -> str:
    """A new team with N leads; its name."""
    engine = create_async_engine(url)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    name = f"bench-{uuid.uuid4().hex[:8]}"
    async with sessions.begin() as session:
        team = Team(name=name, created_at=now)
        session.add(team)
        await session.flush()
        for model, rows in zip(
            (LeadRow, ScoreRow, OutcomeRow), rows_for(team.id, n, now), strict=True
        ):
            table = model.metadata.tables[model.__tablename__]
            for first in range(0, len(rows), CHUNK):
                await session.execute(insert(table), rows[first : first + CHUNK])
    async with engine.begin() as connection:
        await connection.execute(text("ANALYZE"))
    await engine.dispose()
    return name


async def drain(body: AsyncIterator[bytes]) -> int:
    """Read a response body to its end, as a client does; its size."""
    size = 0
    async for block in body:
        size += len(block)
    return size


async def timed(name: str, step: Callable[[], Awaitable[int]], target: float) -> None:
    before = rss_mb()
    with Sampler() as sampler:
        started, cpu = time.perf_counter(), time.process_time()
        size = await step()
        took, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(
        f"{name:<6} {took:6.2f} s wall, {cpu:6.2f} s CPU (target ≤ {target:g} s)  "
        f"{size / 1e6:6.1f} MB, load {os.getloadavg()[0]:.1f}; "
        f"RSS before {before:6.0f} MB, after {rss_mb():6.0f} MB, peak {sampler.peak:6.0f} MB"
    )


async def run(url: str, n: int, home: Path, rounds: int) -> None:
    await asyncio.to_thread(upgrade, url)
    now = datetime.now(UTC)
    started = time.perf_counter()
    team = await seed(url, n, now)
    print(f"seeded {n:,} leads in {time.perf_counter() - started:.1f} s ({url.split(':')[0]})")
    settings = ServiceSettings(home=home, database_url=url, jwt_secret=SECRET)  # type: ignore[arg-type]
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        services: Services = app.state.services
        async with services.sessions() as session:
            from leadscore.auth.service import team_id_by_name

            team_id = await team_id_by_name(session, team)
        principal = Principal(key_id=0, team_id=team_id, team_name=team, role="viewer")
        reports = services.reports
        print(f"app started; RSS {rss_mb():.0f} MB; load average {os.getloadavg()[0]:.1f}")

        async def export(fmt: str) -> int:
            download = await reports.export(principal, LeadFilter(), "score", fmt)  # type: ignore[arg-type]
            return await drain(download.body)

        async def pdf() -> int:
            session: AsyncSession
            async with services.sessions() as session:
                return len(await reports.report(session, principal, None, "a4"))

        for _ in range(rounds):
            await timed("csv", lambda: export("csv"), 5)
            await timed("xlsx", lambda: export("xlsx"), 20)
            await timed("pdf", pdf, 5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--home", type=Path, default=Path.home() / ".cache" / "leadscore-bench")
    parser.add_argument("--database", default=None, help="default: a new SQLite file")
    parser.add_argument("--rounds", type=int, default=1, help="each step this many times")
    args = parser.parse_args()
    args.home.mkdir(parents=True, exist_ok=True)
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; {args.leads:,} leads")
    with tempfile.TemporaryDirectory() as scratch:
        url = args.database or f"sqlite+aiosqlite:///{Path(scratch) / 'bench.db'}"
        asyncio.run(run(url, args.leads, args.home, args.rounds))


if __name__ == "__main__":
    main()
