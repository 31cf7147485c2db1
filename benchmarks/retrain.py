"""Retraining a team model on 50,000 outcomes, end to end below HTTP.

Run: `uv run python benchmarks/retrain.py [--leads 50000]`. A fresh SQLite database (in a
temporary directory) gets one team, its leads as scored and their outcomes; then the real
`RetrainService` reads them back, builds the leakage-safe rows, trains, runs the promotion
gate against the built-in model and registers the challenger. Prints the time of each part,
and how late the event loop answers while the job runs (in its training process, and as it
ran before, in a thread of the serving process).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from leadscore.auth import repository as auth_repo
from leadscore.core.db import create_engine, session_factory, transaction
from leadscore.core.migrate import upgrade
from leadscore.engine.defaults import default_model_dir, load_or_build_default
from leadscore.engine.gate import GateConfig
from leadscore.engine.io import frame_to_leads
from leadscore.engine.model import ModelConfig
from leadscore.engine.synthetic import generate
from leadscore.models import repository as models_repo
from leadscore.models.registry import Registry
from leadscore.models.training import RetrainService, _fit, training_frame
from leadscore.outcomes import repository as outcomes_repo
from leadscore.outcomes.repository import OutcomeRecord
from leadscore.scoring import repository as scoring_repo
from leadscore.scoring.repository import ScoreRecord


async def loop_lag(stop: asyncio.Event) -> list[float]:
    """How late a 1 ms timer fires, again and again: what a request would wait for the loop."""
    lags = []
    while not stop.is_set():
        started = time.perf_counter()
        await asyncio.sleep(0.001)
        lags.append((time.perf_counter() - started - 0.001) * 1000)
    return lags


async def run(home: Path, n: int, threads: int) -> None:
    url = f"sqlite+aiosqlite:///{home / 'bench.db'}"
    engine = create_engine(url)
    sessions = session_factory(engine)
    try:
        started = time.perf_counter()
        frame = generate(n, seed=41)
        leads = frame_to_leads(frame.drop("as_of"))
        scored_at = datetime.now(UTC) - timedelta(days=1)
        async with sessions() as session, session.begin():
            team = await auth_repo.create_team(session, "bench", scored_at)
            records, outcomes = [], []
            for lead, row in zip(leads, frame.iter_rows(named=True), strict=True):
                data = lead.lead_data.model_dump(mode="json")
                records.append(ScoreRecord(team.id, lead.lead_id, data, "v", 50.0, "warm",
                                                False, False, scored_at, {}))  # fmt: skip
                kind = "closed" if row["closed"] else "converted" if row["converted"] else "lost"
                outcomes.append(OutcomeRecord(team.id, lead.lead_id, kind, scored_at,
                                                   None, scored_at if kind == "closed" else None,
                                                   scored_at))  # fmt: skip
            await scoring_repo.save_scores(session, records)
            await outcomes_repo.save_outcomes(session, outcomes)
        print(f"setup: {n:,} leads scored and {len(outcomes):,} outcomes stored in "
              f"{time.perf_counter() - started:.1f} s")  # fmt: skip

        model = load_or_build_default(home, threads)
        registry = Registry(home / "models")
        async with transaction(sessions) as session:
            directory = default_model_dir(home)
            await registry.register(session, model, directory, trained_by="benchmark")
            await registry.ensure_champion(session, model.version_, actor="benchmark")

        t0 = time.perf_counter()
        async with sessions() as session:
            rows = await models_repo.training_leads(session, team.id)
        t1 = time.perf_counter()
        built = training_frame(rows)
        t2 = time.perf_counter()
        service = RetrainService(
            sessions, registry, url, home / "models" / "trained", num_threads=threads
        )
        stop = asyncio.Event()
        probe = asyncio.create_task(loop_lag(stop))
        result = await service.retrain(team.id, actor="benchmark", promote=False)
        t3 = time.perf_counter()
        stop.set()
        in_child = await probe
        await service.close()
        # What the job did before it had its own process: rows and fit in a thread of the
        # serving process, sharing its GIL with the event loop.
        stop = asyncio.Event()
        probe = asyncio.create_task(loop_lag(stop))
        config = ModelConfig(num_threads=threads, seed=1)
        await asyncio.to_thread(lambda: _fit(training_frame(rows), config, GateConfig(), model, ""))
        stop.set()
        in_thread = await probe
        gate = result["gate"]
        print(f"read {len(rows):,} leads with outcomes: {t1 - t0:.2f} s")
        print(f"leakage-safe training frame ({built.height:,} rows): {t2 - t1:.2f} s")
        print(f"whole retrain job (read + frame + train + gate + register): {t3 - t2:.2f} s")
        for name, lags in (("training process", in_child), ("thread (before)", in_thread)):
            lags.sort()
            print(f"event-loop lag while the job runs in a {name}: p50 "
                  f"{lags[len(lags) // 2]:.2f} ms, p99 {lags[int(len(lags) * 0.99)]:.2f} ms, "
                  f"max {lags[-1]:.1f} ms ({len(lags):,} probes)")  # fmt: skip
        print(f"gate on {gate['n']:,} newest leads: passed={gate['passed']}; challenger AUC "
              f"{gate['challenger']['auc']:.4f} vs champion {gate['champion']['auc']:.4f}; "
              f"AUC diff CI {gate['auc_difference_ci']}")  # fmt: skip
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--leads", type=int, default=50_000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    gc.set_threshold(50_000, 20, 20)  # as a server worker runs (api/app.py)
    print(f"machine: {os.cpu_count()} cores; LightGBM num_threads={args.threads}")
    with tempfile.TemporaryDirectory(prefix="bench-retrain-", dir="/tmp") as home:
        upgrade(f"sqlite+aiosqlite:///{Path(home) / 'bench.db'}")  # outside the event loop
        asyncio.run(run(Path(home), args.leads, args.threads))


if __name__ == "__main__":
    main()
