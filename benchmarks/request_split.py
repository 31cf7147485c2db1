"""Where one scoring request's time goes, measured in process with the real components.

Run: `uv run python benchmarks/request_split.py`. Parsing, features, the three heads,
explanations, the service around them (cache key, cache, payload), and persistence
(a real SQLite commit of a 20-row batch, per row). HTTP framework time is the HTTP p50 from
`benchmarks/api_load.py` minus the sum printed here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import orjson

from leadscore.auth import repository as auth_repo
from leadscore.auth.principal import Principal
from leadscore.core.bus import MemoryBus
from leadscore.core.cache import MemoryCache
from leadscore.core.db import create_engine, session_factory
from leadscore.core.metrics import Metrics
from leadscore.core.migrate import upgrade
from leadscore.engine.defaults import load_or_build_default
from leadscore.engine.features import transform
from leadscore.engine.raw import raw_from_leads
from leadscore.engine.schema import Lead
from leadscore.engine.scorer import Scorer
from leadscore.live.events import EventPublisher
from leadscore.models.holder import LiveModel, ModelHolder
from leadscore.models.shadow import ShadowScorer
from leadscore.scoring.repository import ScoreRecord
from leadscore.scoring.schemas import EXAMPLE_LEAD, ScoreRequest
from leadscore.scoring.service import ScoringService, persist_scores


def median_us(fn: Callable[[], object], n: int = 2000, rounds: int = 5) -> float:
    """The lowest of several medians: the figure least disturbed by the rest of the machine."""
    medians = []
    for _ in range(rounds):
        samples = []
        for _ in range(n):
            start = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - start)
        medians.append(statistics.median(samples[n // 10 :]))
    return min(medians) * 1e6


class _NoWriter:
    async def submit(self, records: object) -> None:
        return None


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        model = load_or_build_default(home)
        scorer = Scorer(model)
        body = orjson.dumps(EXAMPLE_LEAD)
        request = ScoreRequest.model_validate_json(body)
        lead = Lead.model_construct(lead_id=request.lead_id, lead_data=request.lead_data)
        raw = raw_from_leads([lead.lead_data])
        x = model.matrix(transform(raw, model.encoding_), None)
        parts = {
            "parse request (pydantic-core)": median_us(
                lambda: ScoreRequest.model_validate_json(body)
            ),
            "features (extract + transform)": median_us(
                lambda: transform(raw_from_leads([lead.lead_data]), model.encoding_)
            ),
            "model: 3 heads, calibrated": sum(
                median_us(lambda h=h: model.predict_head(h, x)) for h in model.boosters_
            ),
            "explanations (TreeSHAP, extra)": median_us(
                lambda: model.predict_head("conversion", x, explain=True)
            )
            - median_us(lambda: model.predict_head("conversion", x)),
        }
        whole = median_us(lambda: scorer.score(lead))
        parts["scorer glue (classes, reasons, commission)"] = whole - sum(
            v for k, v in parts.items() if not k.startswith("parse")
        )
        service = ScoringService(
            ModelHolder(LiveModel(model, scorer, home)), MemoryCache(), _NoWriter(),  # type: ignore[arg-type]
            Metrics.create(), EventPublisher(MemoryBus()), ShadowScorer(_NoWriter().submit),
        )  # fmt: skip
        principal = Principal(1, 1, "bench", "agent")
        medians = []
        for round_ in range(5):
            samples = []
            for i in range(2000):
                fresh = Lead.model_construct(lead_id=f"l{round_}_{i}", lead_data=request.lead_data)
                start = time.perf_counter()
                await service.score(principal, fresh, request.options)
                samples.append(time.perf_counter() - start)
            medians.append(statistics.median(samples[200:]))
        parts["service around the scorer (key, cache, payload, metrics)"] = (
            min(medians) * 1e6 - whole
        )
        url = f"sqlite+aiosqlite:///{home / 'split.db'}"
        await asyncio.to_thread(upgrade, url)
        engine = create_engine(url)
        sessions = session_factory(engine)
        async with sessions() as session, session.begin():
            team = await auth_repo.create_team(session, "bench", datetime.now(UTC))
        result = orjson.loads(await service.score(principal, lead, request.options))
        record = ScoreRecord(
            team.id, "lead", lead.lead_data.model_dump(mode="json"), model.version_, 50.0, "warm",
            True, False, datetime.now(UTC), result,
        )  # fmt: skip
        batches = []
        for i in range(200):
            rows = [dataclasses.replace(record, lead_id=f"p{i}_{j}") for j in range(20)]
            start = time.perf_counter()
            await persist_scores(sessions, (), rows)
            batches.append((time.perf_counter() - start) / 20)
        parts["persistence per score (20-row SQLite batch, off the request)"] = (
            statistics.median(batches) * 1e6
        )
        await engine.dispose()
    for name, micros in parts.items():
        print(f"{name:<62} {micros:8.1f} µs")


if __name__ == "__main__":
    asyncio.run(main())
