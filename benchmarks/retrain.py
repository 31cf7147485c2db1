"""Retraining a team model on 50,000 outcomes, end to end below HTTP.

Run: `uv run python benchmarks/retrain.py [--leads 50000]`. A fresh SQLite database (in a
temporary directory) gets one team, its leads as scored and their outcomes; then the real
`RetrainService` reads them back, builds the leakage-safe rows, trains, runs the promotion
gate against the built-in model and registers the challenger. Prints the time of each part.
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

from leadscore.engine.defaults import default_model_dir, load_or_build_default
from leadscore.engine.io import frame_to_leads
from leadscore.engine.synthetic import generate
from leadscore.services.registry import Registry
from leadscore.services.training import RetrainService, training_frame
from leadscore.store import repositories as repo
from leadscore.store.db import create_engine, session_factory
from leadscore.store.migrate import upgrade


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
            team = await repo.create_team(session, "bench", scored_at)
            records, outcomes = [], []
            for lead, row in zip(leads, frame.iter_rows(named=True), strict=True):
                data = lead.lead_data.model_dump(mode="json")
                records.append(repo.ScoreRecord(team.id, lead.lead_id, data, "v", 50.0, "warm",
                                                False, False, scored_at, {}))  # fmt: skip
                kind = "closed" if row["closed"] else "converted" if row["converted"] else "lost"
                outcomes.append(repo.OutcomeRecord(team.id, lead.lead_id, kind, scored_at,
                                                   None, scored_at if kind == "closed" else None,
                                                   scored_at))  # fmt: skip
            await repo.save_scores(session, records)
            await repo.save_outcomes(session, outcomes)
        print(f"setup: {n:,} leads scored and {len(outcomes):,} outcomes stored in "
              f"{time.perf_counter() - started:.1f} s")  # fmt: skip

        model = load_or_build_default(home, threads)
        registry = Registry(sessions, home / "models")
        await registry.register(model, default_model_dir(home), trained_by="benchmark")
        await registry.ensure_champion(model.version, actor="benchmark")

        t0 = time.perf_counter()
        async with sessions() as session:
            rows = await repo.training_leads(session, team.id)
        t1 = time.perf_counter()
        built = training_frame(rows)
        t2 = time.perf_counter()
        service = RetrainService(registry, home / "models" / "trained", num_threads=threads)
        result = await service.retrain(team.id, actor="benchmark", promote=False)
        t3 = time.perf_counter()
        gate = result["gate"]
        print(f"read {len(rows):,} leads with outcomes: {t1 - t0:.2f} s")
        print(f"leakage-safe training frame ({built.height:,} rows): {t2 - t1:.2f} s")
        print(f"whole retrain job (read + frame + train + gate + register): {t3 - t2:.2f} s")
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
