"""Scoring a CSV of leads uploaded as a file: read and checked whole before the 202, then
scored in the background, a chunk at a time, through the same path as `/batch-score`.

What is acknowledged is kept: the file is read into memory before the answer (and removed from
disk at once), a row that does not validate fails alone and is reported in the final event,
and a server that is stopped gracefully finishes its uploads (for up to `drain_seconds`) before
its score writer drains. A worker that is killed outright loses the rows it had not scored yet:
the client sees no `completed` event for its batch and sends the file again (scoring a lead
again only adds a history entry, or answers from the cache).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import orjson
import polars as pl
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from leadscore.auth.principal import Principal
from leadscore.core.db import after_commit
from leadscore.core.errors import InvalidInputError, MappingError, PayloadTooLargeError
from leadscore.core.lifecycle import Background
from leadscore.core.schemas import validation_detail
from leadscore.engine.frame import ATTRIBUTE_PREFIX, LEAD_COLUMNS, ORACLE_COLUMNS, OUTCOME_COLUMNS
from leadscore.engine.mapping import ColumnMapping, parse_mapping
from leadscore.engine.schema import Lead
from leadscore.live import events
from leadscore.live.events import EventPublisher
from leadscore.scoring.schemas import ScoreOptions
from leadscore.scoring.service import ScoringService

log = logging.getLogger(__name__)

#: Leads scored per step: one vectorised pass, short enough not to hold other requests up.
UPLOAD_CHUNK: Final = 100
#: Rows reported by name in the final event (the counts cover every row).
MAX_REPORTED_ERRORS: Final = 50
WEB_PREFIX: Final = "web_activity."
#: Columns a lead file may carry that scoring does not read: outcomes and the generator's own.
IGNORED_COLUMNS: Final = frozenset(OUTCOME_COLUMNS) | frozenset(ORACLE_COLUMNS) | {"as_of"}
_OPTIONS: Final = ScoreOptions()


def csv_name(name: str) -> str:
    """Refuse a file whose name does not say CSV before anything is written."""
    if not name.lower().endswith(".csv"):
        raise InvalidInputError(f"`file`: {name or 'the file'} must be a .csv file of leads")
    return name


def _mapped(frame: pl.DataFrame, mapping: ColumnMapping) -> pl.DataFrame:
    """The file's columns renamed to canonical ones by a team's mapping (the one it trains
    with: its outcome columns are not needed to score and are not read)."""
    renames = {column: field for field, column in mapping.fields.items()}
    if mapping.lead_id is not None:
        renames[mapping.lead_id] = "lead_id"
    for name in mapping.attributes.names():
        renames[name] = ATTRIBUTE_PREFIX + name
    missing = sorted(set(renames) - set(frame.columns))
    if missing:
        raise MappingError(f"column(s) {missing} named in the mapping are not in the file")
    return frame.select(list(renames)).rename(renames)


def read_lead_rows(
    path: Path, name: str, mapping: ColumnMapping | None, max_rows: int
) -> list[dict[str, str | None]]:
    """Every row of a lead CSV as text cells (each row validates alone later), after checking
    its header: a lead_id column, and no column scoring does not know."""
    options = mapping.read if mapping is not None else None
    try:
        frame = pl.read_csv(
            path,
            separator=options.delimiter if options else ",",
            null_values=options.null_values if options else None,
            infer_schema=False,
            n_rows=max_rows + 1,
        )
    except (pl.exceptions.PolarsError, UnicodeDecodeError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        detail = detail.replace(str(path), name)
        raise InvalidInputError(f"{name}: cannot be read as CSV ({detail})") from exc
    if frame.height > max_rows:
        raise PayloadTooLargeError(f"{name}: more than {max_rows:,} leads; split the file")
    if mapping is not None:
        frame = _mapped(frame, mapping)
    if "lead_id" not in frame.columns:
        raise InvalidInputError(
            f"{name}: no lead_id column (the header has: {', '.join(frame.columns[:12])}); "
            "name the columns as the README says for /leads/upload, or send a mapping"
        )
    unknown = [
        c
        for c in frame.columns
        if c not in LEAD_COLUMNS and c not in IGNORED_COLUMNS and not c.startswith(ATTRIBUTE_PREFIX)
    ]
    if unknown:
        raise InvalidInputError(
            f"{name}: unknown column(s) {', '.join(unknown[:12])}; a lead file has lead_id and "
            f"lead fields ({', '.join(c for c in LEAD_COLUMNS if c != 'as_of')}), custom fields "
            f"as {ATTRIBUTE_PREFIX}<name>, or a mapping"
        )
    if frame.height == 0:
        raise InvalidInputError(f"{name}: no leads (only a header)")
    kept = [c for c in frame.columns if c not in IGNORED_COLUMNS]
    return frame.select(kept).to_dicts()


def row_lead(row: dict[str, str | None]) -> dict[str, Any]:
    """A CSV row as the API's lead: empty cells are unknown, dotted columns nest, the
    interaction history is JSON text."""
    data: dict[str, Any] = {}
    web: dict[str, str] = {}
    attributes: dict[str, str] = {}
    for column, value in row.items():
        if value is None or value == "" or column == "lead_id":
            continue
        if column.startswith(WEB_PREFIX):
            web[column[len(WEB_PREFIX) :]] = value
        elif column.startswith(ATTRIBUTE_PREFIX):
            attributes[column[len(ATTRIBUTE_PREFIX) :]] = value
        elif column == "interaction_history":
            data[column] = orjson.loads(value)
        else:
            data[column] = value
    if web:
        data["web_activity"] = web
    if attributes:
        data["attributes"] = attributes
    return {"lead_id": row.get("lead_id"), "lead_data": data}


def _row_error(
    index: int, row: dict[str, str | None], detail: list[dict[str, str]]
) -> dict[str, Any]:
    """A failed row: its line in the file (the header is line 1), its id and what to fix."""
    return {"row": index + 2, "lead_id": row.get("lead_id"), "error": "validation_error",
            "detail": detail}  # fmt: skip


def validate_rows(
    rows: Sequence[dict[str, str | None]], first: int
) -> tuple[list[Lead], list[dict[str, Any]]]:
    """The rows that are valid leads, and an error for each one that is not (it fails alone)."""
    leads: list[Lead] = []
    errors: list[dict[str, Any]] = []
    for index, row in enumerate(rows, start=first):
        try:
            leads.append(Lead.model_validate(row_lead(row)))
        except orjson.JSONDecodeError as exc:
            detail = [{"field": "lead_data.interaction_history", "message": f"not JSON: {exc}",
                       "type": "json_invalid"}]  # fmt: skip
            errors.append(_row_error(index, row, detail))
        except ValidationError as exc:
            errors.append(_row_error(index, row, validation_detail(exc.errors(), root="lead")))
    return leads, errors


class LeadUploads(Background):
    """Runs the uploads a worker accepted, and on shutdown lets them finish before it stops."""

    def __init__(
        self,
        scoring: ScoringService,
        publisher: EventPublisher,
        directory: Path,
        *,
        max_rows: int,
        chunk: int = UPLOAD_CHUNK,
        drain_seconds: float = 15.0,
    ) -> None:
        self.scoring = scoring
        self.publisher = publisher
        self.directory = directory
        self.max_rows = max_rows
        self.chunk = chunk
        self.drain_seconds = drain_seconds
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def start_upload(
        self,
        session: AsyncSession,
        principal: Principal,
        upload: Path,
        name: str,
        mapping: tuple[str, bytes] | None,
    ) -> dict[str, Any]:
        """Read and check a lead CSV, then score it once `session` commits; the file is the
        service's from here and is removed as soon as it has been read (or refused)."""
        try:
            spec = None
            if mapping is not None:
                spec = await asyncio.to_thread(
                    parse_mapping, mapping[1], f"mapping {mapping[0] or 'field'}"
                )
            rows = await asyncio.to_thread(read_lead_rows, upload, name, spec, self.max_rows)
        finally:
            upload.unlink(missing_ok=True)
        batch_id = uuid.uuid4().hex
        after_commit(session, lambda: self._launch(principal, batch_id, rows))
        return {"batch_id": batch_id, "total": len(rows), "status": "accepted"}

    def task(self, batch_id: str) -> asyncio.Task[None] | None:
        """The task of an upload this worker is still scoring."""
        return self._tasks.get(batch_id)

    def _launch(
        self, principal: Principal, batch_id: str, rows: list[dict[str, str | None]]
    ) -> None:
        task = asyncio.create_task(self._run(principal, batch_id, rows), name=f"upload-{batch_id}")
        self._tasks[batch_id] = task
        task.add_done_callback(lambda _: self._finished(batch_id, task))

    def _finished(self, batch_id: str, task: asyncio.Task[None]) -> None:
        self._tasks.pop(batch_id, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("lead upload %s failed", batch_id, exc_info=task.exception())

    def _emit(self, team: int, batch_id: str, done: int, total: int, status: str,
              outcome: dict[str, Any] | None = None) -> None:  # fmt: skip
        if self.publisher.wants(team, events.EventType.BATCH_PROCESSING):
            self.publisher.emit(
                events.batch_processing(team, batch_id, done, total, status, outcome)
            )

    async def _run(
        self, principal: Principal, batch_id: str, rows: list[dict[str, str | None]]
    ) -> None:
        team = principal.team_id
        total = len(rows)
        succeeded = 0
        errors: list[dict[str, Any]] = []
        self._emit(team, batch_id, 0, total, "started")
        try:
            for first in range(0, total, self.chunk):
                leads, bad = validate_rows(rows[first : first + self.chunk], first)
                errors += bad
                if leads:
                    await self.scoring.score_leads(principal, leads, _OPTIONS)
                succeeded += len(leads)
                done = min(first + self.chunk, total)
                if done < total:
                    self._emit(team, batch_id, done, total, "in_progress")
                await asyncio.sleep(0)  # let requests in between chunks
        except BaseException as exc:
            # Interrupted (shutdown past the drain) or a chunk the service could not score:
            # what was scored is stored; the rest is reported as not scored.
            reason = "interrupted: server shutdown" if isinstance(exc, asyncio.CancelledError) \
                else f"{type(exc).__name__}: {exc}"[:500]  # fmt: skip
            self._emit(team, batch_id, succeeded + len(errors), total, "failed",
                       self._outcome(total, succeeded, errors) | {"error": reason})  # fmt: skip
            raise
        self._emit(team, batch_id, total, total, "completed",
                   self._outcome(total, succeeded, errors))  # fmt: skip

    @staticmethod
    def _outcome(total: int, succeeded: int, errors: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "succeeded": succeeded,
            "failed": len(errors),
            "not_scored": total - succeeded - len(errors),
            "errors": errors[:MAX_REPORTED_ERRORS],
        }

    async def close(self) -> None:
        """Let running uploads finish (bounded), then stop the rest, reporting them failed."""
        tasks = list(self._tasks.values())
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=self.drain_seconds)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
