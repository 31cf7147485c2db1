"""A team's figures over a window: score counts and spread, calibration, pipeline, throughput."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from leadscore.auth.principal import Principal
from leadscore.core.errors import InvalidInputError
from leadscore.core.metrics import Metrics
from leadscore.core.timestamps import iso_z
from leadscore.core.writer import ScoreWriter
from leadscore.scoring import repository as repo
from leadscore.scoring.leads import utc
from leadscore.scoring.repository import ScoreRecord

DEFAULT_WINDOW: Final = timedelta(hours=24)
MAX_POINTS: Final = 1440  # of scores_per_minute: a day of minutes
BANDS: Final = 10
CLASSES: Final = ("hot", "warm", "cold")


def bucket_seconds(since: datetime, until: datetime) -> int:
    """A minute, or the fewest whole minutes that keep the window within MAX_POINTS buckets."""
    minutes = (until - since).total_seconds() / 60
    return 60 * max(1, math.ceil(minutes / MAX_POINTS))


def window(
    since: datetime | None, until: datetime | None, now: datetime
) -> tuple[datetime, datetime]:
    """The window in UTC: until defaults to now, since to a day before until."""
    end = utc(until, "until") if until is not None else now
    try:
        start = utc(since, "since") if since is not None else end - DEFAULT_WINDOW
    except OverflowError as exc:  # a day before the first day of the calendar
        raise InvalidInputError(f"until: {iso_z(end)} is out of range") from exc
    if start > end:
        raise InvalidInputError(f"since ({iso_z(start)}) is after until ({iso_z(end)})")
    return start, end


class StatsService:
    """Aggregates in the database; the latency and cache figures come from the live metrics."""

    def __init__(self, writer: ScoreWriter[ScoreRecord], metrics: Metrics) -> None:
        self.writer = writer
        self.metrics = metrics

    async def stats(
        self,
        session: AsyncSession,
        principal: Principal,
        since: datetime | None,
        until: datetime | None,
    ) -> bytes:
        """The team's score figures over [since, until) and its leads' calibration and pipeline."""
        return orjson.dumps(await self.figures(session, principal, since, until))

    async def figures(
        self,
        session: AsyncSession,
        principal: Principal,
        since: datetime | None,
        until: datetime | None,
    ) -> dict[str, Any]:
        """What `stats` answers, as a dict (the broker's report draws it)."""
        start, end = window(since, until, datetime.now(UTC))
        team = principal.team_id
        await self.writer.barrier()
        bands = {row.band: row for row in await repo.score_bands(session, team, start, end)}
        scores = sum(row.scores for row in bands.values())
        step = bucket_seconds(start, end)
        counts = {
            row.bucket: row.scores
            for row in await repo.score_timeline(session, team, start, end, step)
        }
        points = math.ceil((end - start).total_seconds() / step)
        calibration = []
        for row in sorted(await repo.conversion_bands(session, team), key=lambda r: r.band):
            calibration.append(
                {
                    "lower": row.band * 10,
                    "upper": row.band * 10 + 10,
                    "leads": row.leads,
                    "expected": round(float(row.mean_score) / 100, 4),
                    "actual": round(int(row.converted) / row.leads, 4),
                }
            )
        pipeline = await repo.commission_by_class(session, team)
        live = self.metrics.summary(team)
        qualified = sum(row.qualified for row in bands.values())
        return {
                "since": iso_z(start),
                "until": iso_z(end),
                "scores": scores,
                "score_distribution": [
                    {"lower": b * 10, "upper": b * 10 + 10,
                     "count": bands[b].scores if b in bands else 0}
                    for b in range(BANDS)
                ],
                "classes": {c: sum(getattr(r, c) for r in bands.values()) for c in CLASSES},
                "conversion_by_band": calibration,
                "commission_pipeline": {c: round(pipeline.get(c, 0.0), 2) for c in CLASSES},
                "latency_ms": live["latency_ms"],
                "cache_hit_rate": live["cache_hit_rate"],
                "qualification_rate": qualified / scores if scores else None,
                "bucket_seconds": step,
                "scores_per_minute": [
                    {"minute": iso_z(start + timedelta(seconds=k * step)),
                     "count": counts.get(k, 0)}
                    for k in range(points)
                ],
            }  # fmt: skip
