"""Retraining a team's model on its own outcomes: leakage-safe rows, a time-ordered hold-out,
the promotion gate, and registration as the team's challenger."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import orjson
import polars as pl
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadscore.core.db import after_commit, create_engine, on_rollback, session_factory, transaction
from leadscore.core.errors import (
    InvalidInputError,
    LeadScoreError,
    NotFoundError,
    TrainingDataError,
)
from leadscore.core.lifecycle import Background, Periodic
from leadscore.core.logs import bound
from leadscore.core.metrics import Metrics
from leadscore.core.tables import TrainingJobRow
from leadscore.core.timestamps import iso_z
from leadscore.engine.attributes import AttributeSpec
from leadscore.engine.frame import ATTRIBUTE_PREFIX
from leadscore.engine.gate import GateConfig
from leadscore.engine.io import canonicalise, file_format, leads_to_frame, read_head
from leadscore.engine.mapping import (
    ColumnMapping,
    apply_mapping,
    load_training_frame,
    parse_mapping,
)
from leadscore.engine.model import LeadModel, ModelConfig
from leadscore.engine.policy import recalibrated, retrained
from leadscore.engine.schema import Lead
from leadscore.engine.textparse import parse_timeline_months
from leadscore.engine.training import TrainingInput
from leadscore.live import events
from leadscore.live.events import EventPublisher
from leadscore.models import repository as repo
from leadscore.models.holder import LiveModel
from leadscore.models.mapping import attributes_of
from leadscore.models.registry import GLOBAL, Registry, scope_of

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


#: What an export without a mapping must have: the leads' ids and whether each converted.
EXPORT_COLUMNS: Final = ("lead_id", "converted")


def with_export(frame: pl.DataFrame, export: pl.DataFrame) -> pl.DataFrame:
    """The team's rows plus its CRM history; a lead in both is taken from its live outcome."""
    history = export.filter(~pl.col("lead_id").is_in(frame["lead_id"].implode()))
    shared = [c for c in history.columns
              if c in frame.columns or c.startswith(ATTRIBUTE_PREFIX)]  # fmt: skip
    return pl.concat([frame, history.select(shared)], how="diagonal_relaxed")


def export_format(name: str) -> str:
    """The format of an export by the name its sender gave it (refused when unknown)."""
    return file_format(Path(name))


@dataclass(frozen=True)
class CrmExport:
    """A team's CRM history in a file, with its mapping; `name` is what errors call it (an
    upload's own name: the path is the server's), and a `temporary` file (an upload) is
    removed when its job ends."""

    path: Path
    name: str
    mapping: ColumnMapping | None = None
    temporary: bool = False

    def check(self, rows: int) -> int:
        """Read the first `rows` rows only and refuse missing columns, a mapping that does not
        fit, or values of the wrong type; how many rows were there (at most `rows`)."""
        fmt = export_format(self.name)
        options = self.mapping.read.model_dump() if self.mapping is not None else None
        try:
            head = read_head(self.path, rows, options)
        except InvalidInputError as exc:
            raise InvalidInputError(f"{self.name}: {exc}") from exc
        except (pl.exceptions.PolarsError, UnicodeDecodeError, OSError) as exc:
            raise self._unreadable(fmt, exc) from exc
        if self.mapping is not None:
            apply_mapping(head, self.mapping)
            return head.height
        missing = [c for c in EXPORT_COLUMNS if c not in head.columns]
        if missing:
            raise TrainingDataError(
                f"{self.name}: no {' or '.join(missing)} column; an export without a mapping "
                f"needs the columns {', '.join(EXPORT_COLUMNS)} (closed and "
                "closed_within_timeline are optional outcomes); else send a mapping"
            )
        canonicalise(head)
        return head.height

    def frame(self) -> pl.DataFrame:
        """The whole export as canonical training rows (in the training process)."""
        try:
            return load_training_frame(self.path, self.mapping)
        except (pl.exceptions.PolarsError, UnicodeDecodeError, OSError) as exc:
            raise self._unreadable(export_format(self.name), exc) from exc

    def _unreadable(self, fmt: str, exc: BaseException) -> InvalidInputError:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        detail = detail.replace(str(self.path), self.name)
        if self.temporary and str(self.path.parent) in detail:  # not where the server keeps it
            detail = type(exc).__name__
        return InvalidInputError(f"{self.name}: cannot be read as {fmt} ({detail})")


def _fit(
    frame: pl.DataFrame,
    config: ModelConfig,
    gate: GateConfig,
    champion: LeadModel,
    about: str,
    attributes: AttributeSpec,
) -> LeadModel:
    """A team model retrained on its rows (with its own attributes) and gated
    (`engine.policy`)."""
    data = TrainingInput.from_frame(frame, attributes)
    return retrained(data, config, gate, champion, about, attributes)


TEAM_MODEL: Final = "a team model"


def _too_few(team_id: int, found: int, minimum: int, purpose: str) -> TrainingDataError:
    until = " (until then the team is scored by the global model)" if purpose == TEAM_MODEL else ""
    return TrainingDataError(
        f"team {team_id} has {found} leads with outcomes; {purpose} needs {minimum}{until}"
    )


def _result(
    job: str, team_id: int, model: LeadModel, parent: str, leads: int, promoted: bool = False
) -> dict[str, Any]:
    """What a job reports: the new challenger, where it came from, and its gate."""
    return {
        "job": job, "team_id": team_id, "version": model.version_, "parent_version": parent,
        "leads": leads, "metrics": model.card_["metrics"], "gate": model.card_["gate"],
        "promoted": promoted,
    }  # fmt: skip


#: The error a job that ended without saying so reports (its worker stopped or lost the lease).
INTERRUPTED: Final = "interrupted: the worker running it stopped"


def _describe_job(row: TrainingJobRow, state: str, error: str | None) -> dict[str, Any]:
    return {
        "job": row.job, "team_id": row.team_id, "state": state, "actor": row.actor,
        "promote": row.promote, "started_at": iso_z(row.started_at),
        "finished_at": iso_z(row.finished_at) if row.finished_at is not None else None,
        "parent_version": row.parent_version, "version": row.version,
        "promoted": row.promoted, "error": error,
    }  # fmt: skip


class RetrainService:
    """Trains a team's model from its outcomes and registers it as the team's challenger.

    A job is started in its caller's unit of work (its lease and its row commit together,
    and it runs only once they have); then it commits its own steps, since other workers
    must see its lease and progress while it runs.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        registry: Registry,
        database_url: str,
        staging: Path,
        publisher: EventPublisher | None = None,
        num_threads: int = 2,
        gate: GateConfig | None = None,
        lease: timedelta = TRAINING_LEASE,
        metrics: Metrics | None = None,
    ) -> None:
        self.sessions = sessions
        self.metrics = metrics
        self.registry = registry
        self.lease = lease
        self.database_url = database_url  # the training process reads the outcomes itself
        self.staging = staging
        self.publisher = publisher
        self.num_threads = num_threads
        self.gate = gate or GateConfig()
        self._jobs: dict[str, asyncio.Task[dict[str, Any]]] = {}
        self._pool: ProcessPoolExecutor | None = None

    async def _in_child(self, fn: Callable[..., int], *args: object) -> int:
        """Run a training step in the training process: reading tens of thousands of rows,
        building features and fitting trees hold the GIL for seconds, which in this process
        would hold every request up."""
        if self._pool is None:  # started on first use, so a worker that never trains has none
            self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _announce(self, status: str, version: str, detail: dict[str, Any]) -> None:
        """Progress of a team's job, for that team's clients only."""
        if self.publisher is not None:
            team_id = detail["team_id"]
            self.publisher.emit(events.model_status(status, version, detail, team_id=team_id))

    async def start(
        self,
        session: AsyncSession,
        team_id: int,
        *,
        actor: str,
        promote: bool,
        export: CrmExport | None = None,
    ) -> str:
        """Begin a job in the background; refused while another runs for the team anywhere.

        `export`: the team's history from its CRM, learned from together with its outcomes;
        its first rows are checked here, the training process reads it whole. The job runs
        once `session` commits; `task(job)` is its task from then on.
        """
        labelled = await repo.leads_with_outcomes(session, team_id)
        rows = 0 if export is None else await asyncio.to_thread(export.check, MIN_TEAM_LEADS)
        available = labelled + rows
        if available < MIN_TEAM_LEADS:
            raise _too_few(team_id, available, MIN_TEAM_LEADS, TEAM_MODEL)
        job = uuid.uuid4().hex[:12]
        if not await self.registry.lease(session, scope_of(team_id), job, self.lease):
            raise TrainingBusyError(f"a training job for team {team_id} is already running")
        await repo.add_training_job(
            session,
            TrainingJobRow(job=job, team_id=team_id, state="running", actor=actor,
                           promote=promote, started_at=datetime.now(UTC)),
        )  # fmt: skip

        def launch() -> None:
            task = asyncio.create_task(
                self._job(team_id, job, actor, promote, export), name=f"train-{job}"
            )
            self._jobs[job] = task
            task.add_done_callback(lambda _: self._finished(job, task))
            if export is not None and export.temporary:
                # However the job ends: done, failed, or cancelled (even before it began).
                upload = export.path
                task.add_done_callback(lambda _: upload.unlink(missing_ok=True))

        after_commit(session, launch)
        return job

    def task(self, job: str) -> asyncio.Task[dict[str, Any]]:
        """A job started by this worker and still running (its result when awaited)."""
        return self._jobs[job]

    async def start_with_export(
        self,
        session: AsyncSession,
        team_id: int,
        *,
        actor: str,
        promote: bool,
        export: Path,
        name: str,
        mapping: tuple[str, bytes] | None,
    ) -> str:
        """Begin a job on the team's outcomes plus an uploaded CRM export (file and mapping
        checked first, a bad one refused before any job starts). The file is the service's
        from here: removed when the job ends, or when the unit of work that would start it
        rolls back (refused here, or its commit failed)."""
        on_rollback(session, lambda: export.unlink(missing_ok=True))
        spec = None
        if mapping is not None:
            spec = await asyncio.to_thread(
                parse_mapping, mapping[1], f"mapping {mapping[0] or 'field'}"
            )
        upload = CrmExport(export, name, spec, temporary=True)
        return await self.start(session, team_id, actor=actor, promote=promote, export=upload)

    async def retrain(
        self, team_id: int, *, actor: str, promote: bool, export: CrmExport | None = None
    ) -> dict[str, Any]:
        """Run a job to its end (the command line)."""
        async with transaction(self.sessions) as session:
            job = await self.start(session, team_id, actor=actor, promote=promote, export=export)
        return await self.task(job)

    def _finished(self, job: str, task: asyncio.Task[dict[str, Any]]) -> None:
        self._jobs.pop(job, None)
        if not task.cancelled() and task.exception() is not None:
            log.warning("training job %s failed: %s", task.get_name(), task.exception())

    async def _job(
        self, team_id: int, job: str, actor: str, promote: bool, export: CrmExport | None
    ) -> dict[str, Any]:
        """The job, its lines naming it (and the request that started it), counted."""
        started = time.monotonic()
        outcome = "failed"
        if self.metrics is not None:
            self.metrics.training_started.inc()
        with bound(job=job, team=team_id):
            log.info("training job started")
            try:
                result = await self._run_job(team_id, job, actor, promote, export)
                outcome = "succeeded"
                return result
            except asyncio.CancelledError:
                outcome = "interrupted"
                raise
            finally:
                seconds = time.monotonic() - started
                ended = {"outcome": outcome, "seconds": round(seconds, 3)}
                log.info("training job %s", outcome, extra=ended)
                if self.metrics is not None:
                    self.metrics.training(outcome, seconds)

    async def _run_job(
        self, team_id: int, job: str, actor: str, promote: bool, export: CrmExport | None
    ) -> dict[str, Any]:
        try:
            async with self._leased(scope_of(team_id), job):
                # Recorded while the lease is held: no reader sees a job without either.
                try:
                    result = await self._retrain(
                        team_id, job, actor=actor, promote=promote, export=export
                    )
                except asyncio.CancelledError:
                    await self._finish(job, state="failed", error="interrupted: server shutdown")
                    raise
                except Exception as exc:
                    await self._finish(job, state="failed", error=f"{exc}"[:1000] or repr(exc))
                    raise
                await self._finish(
                    job, state="succeeded", version=result["version"],
                    parent_version=result["parent_version"], promoted=result["promoted"],
                )  # fmt: skip
                return result
        except Exception as exc:
            self._announce("training_failed", "", {"team_id": team_id, "job": job,
                                                   "error": str(exc)})  # fmt: skip
            raise

    async def _finish(self, job: str, **outcome: str | bool | None) -> None:
        """Record how a job ended."""
        async with transaction(self.sessions) as session:
            await repo.finish_training_job(session, job, finished_at=datetime.now(UTC), **outcome)

    async def jobs(
        self, session: AsyncSession, team_id: int, limit: int = 50
    ) -> list[dict[str, Any]]:
        """The team's training jobs, newest first, as any worker sees them."""
        rows = await repo.training_jobs(session, team_id, limit)
        holder = await repo.lease_holder(session, scope_of(team_id))
        return [self._job_state(row, holder) for row in rows]

    async def job(self, session: AsyncSession, team_id: int, job: str) -> dict[str, Any]:
        """One of the team's training jobs (another team's is not found)."""
        row = await repo.training_job(session, team_id, job)
        holder = await repo.lease_holder(session, scope_of(team_id))
        if row is None:
            raise NotFoundError(f"no training job {job!r}")
        return self._job_state(row, holder)

    def _job_state(
        self, row: TrainingJobRow, holder: tuple[str, datetime] | None
    ) -> dict[str, Any]:
        """A job recorded as running is running only while it holds a live lease: a worker
        that crashed mid-job never recorded its end."""
        if row.state == "running":
            alive = datetime.now(UTC) - self.lease
            if holder is None or holder[0] != row.job or holder[1] < alive:
                return _describe_job(row, "failed", INTERRUPTED)
        return _describe_job(row, row.state, row.error)

    @contextlib.asynccontextmanager
    async def _leased(self, scope: str, job: str) -> AsyncIterator[None]:
        """While a job runs, renew its lease (taken before) every quarter of its length, so a
        long job keeps it and a crashed one frees it; release it at the end."""

        async def renew() -> None:
            while True:
                await asyncio.sleep(self.lease.total_seconds() / 4)
                try:
                    async with transaction(self.sessions) as session:
                        renewed = await self.registry.renew(session, scope, job)
                    if not renewed:
                        log.warning("training job %s lost its lease", job)
                except SQLAlchemyError as exc:  # the next round tries again
                    log.warning("training lease of %s not renewed: %s", job, exc)

        keeper = asyncio.create_task(renew(), name=f"lease-{job}")
        try:
            yield
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            async with transaction(self.sessions) as session:
                await self.registry.release(session, scope, job)

    async def recalibrate(self, team_id: int, *, actor: str) -> dict[str, Any]:
        """The team's serving model with calibration refitted on its outcomes, as challenger:
        a job run within the request (seconds), whose lease other workers see meanwhile."""
        job = uuid.uuid4().hex[:12]
        scope = scope_of(team_id)
        async with transaction(self.sessions) as session:
            # Refused here, without starting the training process, when it cannot be enough.
            labelled = await repo.labelled_leads(session, team_id)
            if labelled < MIN_RECALIBRATION_LEADS:
                raise _too_few(team_id, labelled, MIN_RECALIBRATION_LEADS, "recalibration")
            leased = await self.registry.lease(session, scope, job, self.lease)
        if not leased:
            raise TrainingBusyError(f"a training job for team {team_id} is already running")
        async with self._leased(scope, job):
            parent = await self._champion_version(team_id)
            champion = await self._load(parent)
            rows = await self._in_child(
                _recalibrate_job, self.database_url, team_id, self.gate, champion.path,
                self.staging / job,
            )  # fmt: skip
            model = await self._register(job, team_id, parent, f"{actor} (recalibration)")
        detail = {"team_id": team_id, "job": job}
        self._announce(
            "challenger", model.version_, detail | {"gate_passed": model.card_["gate"]["passed"]}
        )
        return _result(job, team_id, model, parent, rows)

    async def close(self) -> None:
        """Stop running jobs (their leases are released) and the training process."""
        tasks = list(self._jobs.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._pool is not None:
            # A fit in progress would hold the shutdown for its whole length: end it.
            for process in list(getattr(self._pool, "_processes", {}).values()):
                process.terminate()
            self._pool.shutdown(wait=False, cancel_futures=True)

    async def _retrain(
        self, team_id: int, job: str, *, actor: str, promote: bool, export: CrmExport | None
    ) -> dict[str, Any]:
        parent = await self._champion_version(team_id)
        detail: dict[str, Any] = {"team_id": team_id, "job": job}
        self._announce("training_started", parent, detail)
        champion = await self._load(parent)
        config = ModelConfig(
            num_threads=self.num_threads,
            seed=int(datetime.now(UTC).timestamp()),
            search=True,
            cross_fit=True,
        )
        rows = await self._in_child(
            _train_job, self.database_url, team_id, export, config, self.gate, champion.path,
            actor, self.staging / job,
        )  # fmt: skip
        model = await self._register(job, team_id, parent, actor)
        passed = model.card_["gate"]["passed"]
        self._announce("challenger", model.version_, detail | {"gate_passed": passed})
        promoted = promote and passed
        if promoted:
            async with transaction(self.sessions) as session:
                await self.registry.promote(session, model.version_, actor=actor, force=False)
            self._announce("promoted", model.version_, detail)
        return _result(job, team_id, model, parent, rows, promoted=promoted)

    async def _champion_version(self, team_id: int) -> str:
        """What scores the team now: its own champion, else the global one."""
        async with transaction(self.sessions) as session:
            champions = await self.registry.champions(session)
        return champions.get(scope_of(team_id)) or champions[GLOBAL]

    async def _load(self, version: str) -> LiveModel:
        async with transaction(self.sessions) as session:
            return await self.registry.load(session, version)

    async def _register(self, job: str, team_id: int, parent: str, trained_by: str) -> LeadModel:
        """Load the job's saved artifact and make it the team's challenger."""
        directory = self.staging / job
        model = await asyncio.to_thread(LeadModel.load, directory)
        async with transaction(self.sessions) as session:
            await self.registry.register(
                session, model, directory, team_id=team_id, parent_version=parent,
                trained_by=trained_by, as_challenger=True,
            )  # fmt: skip
        return model


def _rows(
    database_url: str, team_id: int, export: pl.DataFrame | None, minimum: int, purpose: str
) -> tuple[pl.DataFrame, TeamFields]:
    """The team's leakage-safe training rows (and its CRM history), refused below `minimum`,
    and what says which of its own fields to learn; read with the training process's own
    connection."""

    async def read() -> tuple[list[repo.TrainingLead], TeamFields]:
        engine = create_engine(database_url)
        try:
            async with session_factory(engine)() as session:
                leads = await repo.training_leads(session, team_id)
                fields = TeamFields(await repo.team_mapping(session, team_id),
                                    await repo.connection_attributes(session, team_id))  # fmt: skip
                return leads, fields
        finally:
            await engine.dispose()

    leads, fields = asyncio.run(read())
    frame = training_frame(leads)
    if export is not None:
        frame = with_export(frame, export)
    if frame.height < minimum:
        raise _too_few(team_id, frame.height, minimum, purpose)
    return frame, fields


@dataclass(frozen=True)
class TeamFields:
    """Where a team's own fields are declared: its stored mapping, its CRM connections."""

    mapping: dict[str, Any] | None
    connected: list[str]


def _train_job(
    database_url: str,
    team_id: int,
    export: CrmExport | None,
    config: ModelConfig,
    gate: GateConfig,
    champion: Path,
    actor: str,
    out: Path,
) -> int:
    """In the training process: rows (the export read from its file here, never sent over as
    data), training, gate, artifact saved to `out`; the row count."""
    history = export.frame() if export is not None else None
    frame, fields = _rows(database_url, team_id, history, MIN_TEAM_LEADS, TEAM_MODEL)
    about = f"team {team_id}: {frame.height} leads with outcomes, trained by {actor}"
    if history is not None:
        about += f" ({history.height} of them from a CRM export)"
    # The export's own mapping says what its columns are; else the team's stored one.
    given = export.mapping if export is not None else None
    attributes = (
        given.attribute_spec
        if given is not None
        else attributes_of(fields.mapping, fields.connected, frame)
    )
    _fit(frame, config, gate, LeadModel.load(champion), about, attributes).save(out)
    return frame.height


def _recalibrate_job(
    database_url: str, team_id: int, gate: GateConfig, champion: Path, out: Path
) -> int:
    """In the training process: the champion's calibration refitted and gated, saved to `out`."""
    frame, _ = _rows(database_url, team_id, None, MIN_RECALIBRATION_LEADS, "recalibration")
    _recalibrated(frame, LeadModel.load(champion), gate).save(out)
    return frame.height


def _recalibrated(frame: pl.DataFrame, champion: LeadModel, gate: GateConfig) -> LeadModel:
    """The champion's calibration refitted on the team's rows and gated (`engine.policy`)."""
    return recalibrated(TrainingInput.from_frame(frame, champion.attributes_), champion, gate)


class RetrainSchedule(Background):
    """Retrains every team with enough outcomes every `interval` (off unless configured).

    Every worker runs the schedule; the training lease lets one of them run each team's job.
    """

    def __init__(self, service: RetrainService, interval_seconds: float) -> None:
        self.service = service
        self._ticker = Periodic("retrain-schedule", interval_seconds, self.run_once)

    def start(self) -> None:
        """Run in the background."""
        self._ticker.start()

    async def run_once(self) -> list[str]:
        """Start a job for each eligible team not already training; the jobs' ids."""
        async with transaction(self.service.sessions) as session:
            teams = await repo.teams_with_outcomes(session, MIN_TEAM_LEADS)
        jobs = []
        for team_id in teams:
            try:
                async with transaction(self.service.sessions) as session:
                    job = await self.service.start(
                        session, team_id, actor="schedule", promote=False
                    )
            except TrainingBusyError:
                continue  # another worker (or an admin) is training this team now
            jobs.append(job)
        return jobs

    async def close(self) -> None:
        """Stop the schedule (running jobs are stopped by the service)."""
        await self._ticker.close()
