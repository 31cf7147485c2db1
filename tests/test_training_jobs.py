"""Training jobs recorded in the database: any worker reports running, succeeded or failed."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from prometheus_client import generate_latest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadscore.auth import repository as auth_repo
from leadscore.core.errors import ModelArtifactError, NotFoundError, TrainingDataError
from leadscore.core.logs import JsonFormatter, bound
from leadscore.core.metrics import Metrics
from leadscore.core.tables import TrainingJobRow
from leadscore.models import repository as repo
from leadscore.models.holder import LiveModel
from leadscore.models.registry import CHAMPION, GLOBAL, Registry, scope_of
from leadscore.models.training import INTERRUPTED, MIN_TEAM_LEADS, CrmExport, RetrainService
from tests.units import Committing


class HeldRegistry(Registry):
    """Loads a model only once the test lets it: a job is seen running before it can fail."""

    def __init__(self, artifacts: Path) -> None:
        super().__init__(artifacts)
        self.released = asyncio.Event()

    async def load(self, session: AsyncSession, version: str) -> LiveModel:
        await self.released.wait()
        return await super().load(session, version)


async def test_a_failed_job_reports_its_error_and_others_cannot_see_it(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    async with sessions() as session, session.begin():
        team = await auth_repo.create_team(session, "globex", now)
        other = await auth_repo.create_team(session, "acme", now)
        # A champion whose artifact is gone: the job fails when it loads it.
        await repo.register_model(session, "gone000000000000", "/nowhere", {}, now)
        await repo.set_alias(session, GLOBAL, CHAMPION, "gone000000000000", now)
    held = HeldRegistry(tmp_path / "artifacts")
    trainer = RetrainService(sessions, held, "sqlite+aiosqlite://", tmp_path / "staging")
    service = Committing(trainer, sessions)
    history = tmp_path / "history.csv"
    pl.DataFrame(
        {"lead_id": [f"l{i}" for i in range(MIN_TEAM_LEADS)],
         "converted": [i % 2 for i in range(MIN_TEAM_LEADS)]}
    ).write_csv(history)  # fmt: skip
    export = CrmExport(history, "history.csv")
    job = await service.start(team.id, actor="tests", promote=True, export=export)
    task = trainer.task(job)
    running = await service.job(team.id, job)
    assert (running["state"], running["finished_at"], running["error"]) == ("running", None, None)
    held.released.set()
    with pytest.raises(ModelArtifactError):
        await task
    failed = await service.job(team.id, job)
    assert failed["state"] == "failed"
    assert "has no stored artifact" in failed["error"]
    assert failed["started_at"] <= failed["finished_at"]
    assert (failed["actor"], failed["promote"], failed["version"]) == ("tests", True, None)
    assert [j["job"] for j in await service.jobs(team.id)] == [job]
    with pytest.raises(NotFoundError):
        await service.job(other.id, job)  # another team's job does not exist for it
    assert await service.jobs(other.id) == []


async def test_a_job_whose_worker_died_is_failed_and_the_newest_comes_first(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    async with sessions() as session, session.begin():
        team = await auth_repo.create_team(session, "globex", now)
        for job, minutes in (("crashed", 30), ("alive", 1)):
            await repo.add_training_job(
                session,
                TrainingJobRow(job=job, team_id=team.id, state="running", actor="tests",
                               promote=False, started_at=now - timedelta(minutes=minutes)),
            )  # fmt: skip
    registry = Committing(Registry(tmp_path / "artifacts"), sessions)
    trainer = RetrainService(
        sessions, registry.service, "sqlite+aiosqlite://", tmp_path / "staging",
        lease=timedelta(minutes=5),
    )  # fmt: skip
    service = Committing(trainer, sessions)
    assert await registry.lease(scope_of(team.id), "alive", trainer.lease)
    jobs = await service.jobs(team.id)
    assert [(j["job"], j["state"]) for j in jobs] == [("alive", "running"), ("crashed", "failed")]
    assert jobs[1]["error"] == INTERRUPTED  # recorded as running, but it holds no lease


async def test_recalibration_with_too_few_outcomes_is_refused_before_any_work(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    """A team without enough outcomes is refused at once: no lease taken, no training process
    started (that would cost seconds before the same refusal)."""
    async with sessions() as session, session.begin():
        team = await auth_repo.create_team(session, "acme", datetime.now(UTC))
    registry = Committing(Registry(tmp_path / "artifacts"), sessions)
    trainer = RetrainService(sessions, registry.service, "sqlite+aiosqlite://", tmp_path / "s")
    with pytest.raises(TrainingDataError, match="0 leads with outcomes; recalibration needs"):
        await trainer.recalibrate(team.id, actor="test")
    assert trainer._pool is None
    assert await registry.lease(scope_of(team.id), "next", trainer.lease)  # none was left held


async def test_a_jobs_lines_name_it_and_the_request_that_started_it_and_it_is_counted(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    async with sessions() as session, session.begin():
        team = await auth_repo.create_team(session, "initech", now)
        await repo.register_model(session, "gone000000000000", "/nowhere", {}, now)
        await repo.set_alias(session, GLOBAL, CHAMPION, "gone000000000000", now)
    metrics = Metrics.create()
    trainer = RetrainService(
        sessions, Registry(tmp_path / "a"), "sqlite+aiosqlite://", tmp_path / "s", metrics=metrics
    )
    history = tmp_path / "history.csv"
    pl.DataFrame(
        {"lead_id": [f"l{i}" for i in range(MIN_TEAM_LEADS)],
         "converted": [i % 2 for i in range(MIN_TEAM_LEADS)]}
    ).write_csv(history)  # fmt: skip
    lines: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    capture = Capture()
    capture.setFormatter(JsonFormatter())
    logger = logging.getLogger("leadscore.models.training")
    logger.addHandler(capture)
    logger.setLevel(logging.INFO)  # as the server configures "leadscore"
    try:
        with bound(request_id="req-train-1"):
            job = await Committing(trainer, sessions).start(
                team.id, actor="tests", promote=False, export=CrmExport(history, "history.csv")
            )
        with pytest.raises(ModelArtifactError):
            await trainer.task(job)
    finally:
        logger.removeHandler(capture)
        logger.setLevel(logging.NOTSET)
    ours = [json.loads(line) for line in lines if json.loads(line).get("job") == job]
    assert [line["msg"] for line in ours] == ["training job started", "training job failed"]
    assert {(line["request_id"], line["team"]) for line in ours} == {("req-train-1", team.id)}
    assert ours[-1]["outcome"] == "failed"
    exposition = generate_latest(metrics.registry).decode()
    assert "leadscore_training_jobs_started_total 1.0" in exposition
    assert 'leadscore_training_jobs_finished_total{outcome="failed"} 1.0' in exposition
    assert 'leadscore_training_job_seconds_count{outcome="failed"} 1.0' in exposition
