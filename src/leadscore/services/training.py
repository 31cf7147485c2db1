"""Retraining a team's model on its own outcomes: leakage-safe rows, a time-ordered hold-out,
the promotion gate, and registration as the team's challenger."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import numpy as np
import orjson
import polars as pl

from leadscore.engine.gate import GateConfig, promotion_gate, recalibrate, time_holdout
from leadscore.engine.io import leads_to_frame
from leadscore.engine.model import AttributeSpec, LeadModel, ModelConfig, TrainingInput, train
from leadscore.engine.schema import Lead
from leadscore.engine.textparse import parse_timeline_months
from leadscore.errors import LeadScoreError, TrainingDataError
from leadscore.services import events
from leadscore.services.events import EventPublisher
from leadscore.services.registry import GLOBAL, Registry, scope_of
from leadscore.store import repositories as repo

log = logging.getLogger(__name__)

#: Below this many labelled leads a team keeps the global model (it cannot beat it reliably).
MIN_TEAM_LEADS: Final = 500
#: Refitting calibration only needs enough outcomes for a stable isotonic map and a hold-out.
MIN_RECALIBRATION_LEADS: Final = 200
DAYS_PER_MONTH: Final = 30.44
TRAINING_LEASE: Final = timedelta(hours=1)


class TrainingBusyError(LeadScoreError):
    """A training job for this team is already running."""

    status_code = 409
    code = "training_in_progress"


def training_frame(leads: Sequence[repo.TrainingLead]) -> pl.DataFrame:
    """One row per lead: its data as first scored, as of that moment, and its labels.

    Labels: converted = converted or closed (0 when only lost); closed = 1 when closed, 0 when
    converted then lost; on time = closed within the timeline the lead stated. A lead whose
    outcome predates its first score is left out: its data may already reflect the outcome.
    """
    kept: list[repo.TrainingLead] = [
        lead for lead in leads
        if min(o.occurred_at for o in lead.outcomes.values()) >= lead.first_seen_at
    ]  # fmt: skip
    # From JSON bytes: pydantic-core validates those three times faster than Python dicts.
    frame = leads_to_frame(
        [Lead.model_validate_json(orjson.dumps({"lead_id": t.lead_id, "lead_data": t.data}))
         for t in kept]
    )  # fmt: skip
    converted, closed, on_time, created = [], [], [], []
    for lead, stated_created in zip(kept, frame["created_at"].to_list(), strict=True):
        outcomes = lead.outcomes
        is_closed = "closed" in outcomes
        is_converted = is_closed or "converted" in outcomes
        converted.append(is_converted)
        closed.append(
            True if is_closed else (False if is_converted and "lost" in outcomes else None)
        )
        start = stated_created or lead.first_seen_at
        created.append(start)
        months = parse_timeline_months(lead.data.get("timeline"))
        when = outcomes["closed"].closed_at if is_closed else None
        on_time.append(
            None
            if when is None or months is None
            else (when - start).total_seconds() / 86_400 <= months * DAYS_PER_MONTH
        )
    return frame.with_columns(
        pl.Series("created_at", created, dtype=pl.Datetime("us", "UTC")),
        pl.Series("as_of", [t.first_seen_at for t in kept], dtype=pl.Datetime("us", "UTC")),
        pl.Series("converted", converted, dtype=pl.Boolean),
        pl.Series("closed", closed, dtype=pl.Boolean),
        pl.Series("closed_within_timeline", on_time, dtype=pl.Boolean),
    )


def _fit(
    frame: pl.DataFrame, config: ModelConfig, gate: GateConfig, champion: LeadModel, about: str
) -> LeadModel:
    """Train on all but the newest leads, then judge against the champion on those."""
    data = TrainingInput.from_frame(frame, AttributeSpec())
    holdout = time_holdout(data, gate.holdout_share)
    order = np.argsort(data.created_us, kind="stable")
    model = train(
        data.take(order[: len(order) - len(holdout.created_us)]), config,
        data_description=about,
    )  # fmt: skip
    report = promotion_gate(model, champion, holdout, gate)
    model.card["gate"] = report | {"against": champion.version}
    return model


class RetrainService:
    """Trains a team's model from its outcomes and registers it as the team's challenger."""

    def __init__(
        self,
        registry: Registry,
        staging: Path,
        publisher: EventPublisher | None = None,
        num_threads: int = 2,
        gate: GateConfig | None = None,
    ) -> None:
        self.registry = registry
        self.staging = staging
        self.publisher = publisher
        self.num_threads = num_threads
        self.gate = gate or GateConfig()
        self._jobs: set[asyncio.Task[dict[str, Any]]] = set()

    def _announce(self, status: str, version: str, detail: dict[str, Any]) -> None:
        """Progress of a team's job, for that team's clients only."""
        if self.publisher is not None:
            team_id = detail["team_id"]
            self.publisher.emit(events.model_status(status, version, detail, team_id=team_id))

    async def start(
        self, team_id: int, *, actor: str, promote: bool
    ) -> tuple[str, asyncio.Task[dict[str, Any]]]:
        """Begin a job in the background; refused while another runs for the team anywhere."""
        async with self.registry.sessions() as session:
            labelled = await repo.leads_with_outcomes(session, team_id)
        if labelled < MIN_TEAM_LEADS:
            raise TrainingDataError(
                f"team {team_id} has {labelled} leads with outcomes; a team model needs "
                f"{MIN_TEAM_LEADS} (until then the team is scored by the global model)"
            )
        job = uuid.uuid4().hex[:12]
        if not await self.registry.lease(scope_of(team_id), job, TRAINING_LEASE):
            raise TrainingBusyError(f"a training job for team {team_id} is already running")
        task = asyncio.create_task(self._job(team_id, job, actor, promote), name=f"train-{job}")
        self._jobs.add(task)
        task.add_done_callback(self._finished)
        return job, task

    async def retrain(self, team_id: int, *, actor: str, promote: bool) -> dict[str, Any]:
        """Run a job to its end (the command line)."""
        _, task = await self.start(team_id, actor=actor, promote=promote)
        return await task

    def _finished(self, task: asyncio.Task[dict[str, Any]]) -> None:
        self._jobs.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("training job %s failed: %s", task.get_name(), task.exception())

    async def _job(self, team_id: int, job: str, actor: str, promote: bool) -> dict[str, Any]:
        try:
            return await self._retrain(team_id, job, actor=actor, promote=promote)
        except Exception as exc:
            self._announce("training_failed", "", {"team_id": team_id, "job": job,
                                                   "error": str(exc)})  # fmt: skip
            raise
        finally:
            await self.registry.release(scope_of(team_id), job)

    async def recalibrate(self, team_id: int, *, actor: str) -> dict[str, Any]:
        """The team's serving model with calibration refitted on its outcomes, as challenger."""
        job = uuid.uuid4().hex[:12]
        scope = scope_of(team_id)
        if not await self.registry.lease(scope, job, TRAINING_LEASE):
            raise TrainingBusyError(f"a training job for team {team_id} is already running")
        try:
            champions = await self.registry.champions()
            champion_version = champions.get(scope) or champions[GLOBAL]
            async with self.registry.sessions() as session:
                leads = await repo.training_leads(session, team_id)
            frame = await asyncio.to_thread(training_frame, leads)
            if frame.height < MIN_RECALIBRATION_LEADS:
                raise TrainingDataError(
                    f"team {team_id} has {frame.height} leads with outcomes; recalibration "
                    f"needs {MIN_RECALIBRATION_LEADS}"
                )
            champion = (await self.registry.load(champion_version)).model
            model = await asyncio.to_thread(_recalibrated, frame, champion, self.gate)
            directory = await asyncio.to_thread(model.save, self.staging / job)
            await self.registry.register(
                model, directory, team_id=team_id, parent_version=champion_version,
                trained_by=f"{actor} (recalibration)", as_challenger=True,
            )  # fmt: skip
        finally:
            await self.registry.release(scope, job)
        passed = model.card["gate"]["passed"]
        detail = {"team_id": team_id, "job": job, "gate_passed": passed}
        self._announce("challenger", model.version, detail)
        return {
            "job": job, "team_id": team_id, "version": model.version,
            "parent_version": champion_version, "leads": frame.height,
            "metrics": model.card["metrics"], "gate": model.card["gate"], "promoted": False,
        }  # fmt: skip

    async def close(self) -> None:
        """Stop running jobs (their leases are released)."""
        for task in list(self._jobs):
            task.cancel()
        await asyncio.gather(*self._jobs, return_exceptions=True)

    async def _retrain(
        self, team_id: int, job: str, *, actor: str, promote: bool
    ) -> dict[str, Any]:
        champions = await self.registry.champions()
        champion_version = champions.get(scope_of(team_id)) or champions[GLOBAL]
        detail: dict[str, Any] = {"team_id": team_id, "job": job}
        self._announce("training_started", champion_version, detail)
        async with self.registry.sessions() as session:
            leads = await repo.training_leads(session, team_id)
        frame = await asyncio.to_thread(training_frame, leads)
        if frame.height < MIN_TEAM_LEADS:
            raise TrainingDataError(
                f"team {team_id} has {frame.height} leads with outcomes; a team model needs "
                f"{MIN_TEAM_LEADS} (until then the team is scored by the global model)"
            )
        champion = (await self.registry.load(champion_version)).model
        config = ModelConfig(num_threads=self.num_threads, seed=int(datetime.now(UTC).timestamp()))
        about = f"team {team_id}: {frame.height} leads with outcomes, trained by {actor}"
        model = await asyncio.to_thread(_fit, frame, config, self.gate, champion, about)
        directory = await asyncio.to_thread(model.save, self.staging / f"{job}")
        await self.registry.register(
            model, directory, team_id=team_id, parent_version=champion_version,
            trained_by=actor, as_challenger=True,
        )  # fmt: skip
        gate = model.card["gate"]
        result: dict[str, Any] = {
            "job": job,
            "team_id": team_id,
            "version": model.version,
            "parent_version": champion_version,
            "leads": frame.height,
            "metrics": model.card["metrics"],
            "gate": gate,
            "promoted": False,
        }
        self._announce("challenger", model.version, detail | {"gate_passed": gate["passed"]})
        if promote and gate["passed"]:
            await self.registry.promote(model.version, actor=actor, force=False)
            result["promoted"] = True
            self._announce("promoted", model.version, detail)
        return result


def _recalibrated(frame: pl.DataFrame, champion: LeadModel, gate: GateConfig) -> LeadModel:
    """Refit the champion's calibration on all but the newest leads, gate it on those."""
    data = TrainingInput.from_frame(frame, champion.attributes)
    holdout = time_holdout(data, gate.holdout_share)
    order = np.argsort(data.created_us, kind="stable")
    model = recalibrate(champion, data.take(order[: len(order) - len(holdout.created_us)]))
    model.card["gate"] = promotion_gate(model, champion, holdout, gate) | {
        "against": champion.version
    }
    return model


class RetrainSchedule:
    """Retrains every team with enough outcomes every `interval` (off unless configured).

    Every worker runs the schedule; the training lease lets one of them run each team's job.
    """

    def __init__(self, service: RetrainService, interval_seconds: float) -> None:
        self.service = service
        self.interval = interval_seconds
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run in the background."""
        self._task = asyncio.create_task(self._run(), name="retrain-schedule")

    async def run_once(self) -> list[str]:
        """Start a job for each eligible team not already training; the jobs' ids."""
        async with self.service.registry.sessions() as session:
            teams = await repo.teams_with_outcomes(session, MIN_TEAM_LEADS)
        jobs = []
        for team_id in teams:
            try:
                job, _ = await self.service.start(team_id, actor="schedule", promote=False)
            except TrainingBusyError:
                continue  # another worker (or an admin) is training this team now
            jobs.append(job)
        return jobs

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.run_once()
            except Exception:  # the schedule must outlive one failed round
                log.exception("scheduled retraining round failed")

    async def close(self) -> None:
        """Stop the schedule (running jobs are stopped by the service)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
