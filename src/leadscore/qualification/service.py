"""The qualification queue: leads whose score needs answers enter it, a person (or the LLM)
claims and resolves them, and the answers re-score the lead."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from pydantic import ValidationError
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from leadscore.auth.principal import Principal
from leadscore.core.db import after_commit
from leadscore.core.errors import InvalidInputError, NotFoundError
from leadscore.core.tables import EscalationRow
from leadscore.core.timestamps import iso_z
from leadscore.core.writer import ScoreWriter
from leadscore.engine.schema import Lead, LeadData
from leadscore.live import events
from leadscore.live.events import EventPublisher
from leadscore.outcomes.service import ConflictError, OutcomeIn, OutcomeService
from leadscore.qualification import repository as repo
from leadscore.qualification.schemas import Answers, ResolveRequest
from leadscore.scoring.repository import ScoreRecord
from leadscore.scoring.service import ScoringService

#: Where a unit of work keeps the leads it resolved: their re-score must not reopen them.
_SETTLED: Final = "leadscore.qualification.settled"
#: Who resolves an open escalation whose lead's new score needs no qualifying.
RESCORED: Final = "rescored"
LLM: Final = "llm"
#: The queue's work when no status is asked for.
WAITING: Final = ("open", "claimed")


class InvalidCursorError(InvalidInputError):
    """A cursor this list did not hand out, or one of another status filter."""

    code = "invalid_cursor"


def actor(principal: Principal) -> str:
    """Who a key is in the queue's columns: its id and role."""
    return f"key {principal.key_id} ({principal.role})"


def encode_cursor(statuses: Sequence[str], last_id: int) -> str:
    """The opaque keyset of a page's last escalation, tied to the status filter."""
    raw = orjson.dumps([",".join(statuses), last_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, statuses: Sequence[str]) -> int:
    """The last id of the previous page; 422 for a cursor of another list or filter."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        made_for, last_id = orjson.loads(raw)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise InvalidCursorError("cursor: not a cursor of this list") from exc
    if isinstance(last_id, bool) or not isinstance(last_id, int) or not 0 <= last_id < 2**63:
        raise InvalidCursorError("cursor: not a cursor of this list")
    if made_for != ",".join(statuses):
        raise InvalidCursorError(f"cursor: made for status={made_for}")
    return last_id


def _ask_next(result: dict[str, Any] | None) -> list[dict[str, Any]]:
    return list(((result or {}).get("qualification") or {}).get("ask_next") or [])


def _when(moment: datetime | None) -> str | None:
    return iso_z(moment) if moment is not None else None


def item(row: Row[Any]) -> dict[str, Any]:
    """One escalation as the API shows it, from a `repository.view` row."""
    esc: EscalationRow = row[0]
    return {
        "id": esc.id,
        "lead_id": esc.lead_id,
        "name": row.name,
        "status": esc.status,
        "reasons": esc.reasons,
        "opened_at": iso_z(esc.opened_at),
        "ml_score_at_open": esc.ml_score,
        "ml_confidence_at_open": esc.ml_confidence,
        "ml_score": row.current_score,
        "ml_confidence": row.current_confidence,
        "classification": row.classification,
        "qualification_needed": row.qualification_needed,
        "ask_next": _ask_next(row.latest_result),
        "claimed_by": esc.claimed_by,
        "claimed_at": _when(esc.claimed_at),
        "answers": esc.answers,
        "notes": esc.notes,
        "resolved_by": esc.resolved_by,
        "resolved_at": _when(esc.resolved_at),
        "outcome": esc.outcome,
        "llm_state": esc.llm_state,
        "llm_attempts": esc.llm_attempts,
        "updated_at": iso_z(esc.updated_at),
    }


def _score_of(row: Row[Any]) -> dict[str, Any]:
    """What an event needs of the lead's latest score, from a `repository.view` row."""
    return {
        "lead_id": row[0].lead_id,
        "ml_score": row.current_score,
        "classification": row.classification,
        "ml_confidence": row.current_confidence,
        "model_version": row.model_version,
    }


class QualificationService:
    """The team's queue of leads to qualify, fed by every score and emptied by answers."""

    def __init__(
        self,
        scoring: ScoringService,
        outcomes: OutcomeService,
        events: EventPublisher,
        writer: ScoreWriter[ScoreRecord],
    ) -> None:
        self.scoring = scoring
        self.outcomes = outcomes
        self.events = events
        self.writer = writer
        #: Called once escalations opened are committed (the LLM qualifier wakes up).
        self.on_opened: list[Callable[[], None]] = []

    def _emit_after_commit(self, session: AsyncSession, built: list[events.Event]) -> None:
        """Announce these events once the unit of work that made them has committed."""
        if not built:
            return

        def emit() -> None:
            for event in built:
                self.events.emit(event)

        after_commit(session, emit)

    def _wake(self) -> None:
        for wake in self.on_opened:
            wake()

    async def on_scores(self, session: AsyncSession, records: Sequence[ScoreRecord]) -> None:
        """The score hook: a lead whose latest score needs qualifying enters its team's
        queue (once while open); an open one whose lead no longer needs it resolves itself.
        Two statements per batch, in the batch's transaction; events once committed."""
        latest: dict[tuple[int, str], ScoreRecord] = {}
        for record in records:
            latest[(record.team_id, record.lead_id)] = record
        settled: set[tuple[int, str]] = session.info.get(_SETTLED, set())
        now = datetime.now(UTC)
        to_open = [
            {
                "team_id": r.team_id, "lead_id": r.lead_id, "status": "open",
                "reasons": list((r.result.get("qualification") or {}).get("reasons") or []),
                "ml_score": r.ml_score, "ml_confidence": r.result["ml_confidence"],
                "opened_at": now, "llm_attempts": 0, "updated_at": now,
            }
            for key, r in latest.items()
            if r.escalation_recommended and key not in settled
        ]  # fmt: skip
        confident = [key for key, r in latest.items() if not r.escalation_recommended]
        opened = await repo.open_many(session, to_open)
        resolved = await repo.resolve_open(session, confident, RESCORED, now)
        built: list[events.Event] = []
        for rows, status in ((opened, "open"), (resolved, "resolved")):
            for row in rows:
                if not self.events.wants(row.team_id, events.EventType.ESCALATION):
                    continue
                record = latest[(row.team_id, row.lead_id)]
                result = record.result
                built.append(
                    events.escalation(
                        row.team_id, record.lead_data.get("name"), result, None,
                        status=status, escalation_id=row.id,
                        reasons=(result.get("qualification") or {}).get("reasons") or (),
                        by=RESCORED if status == "resolved" else None,
                    )
                )  # fmt: skip
        self._emit_after_commit(session, built)
        if opened and self.on_opened:
            after_commit(session, self._wake)

    async def list(
        self,
        session: AsyncSession,
        principal: Principal,
        status: str | None,
        limit: int,
        cursor: str | None,
    ) -> bytes:
        """A page of the team's queue, oldest first (default: open and claimed)."""
        statuses = (status,) if status is not None else WAITING
        after = decode_cursor(cursor, statuses) if cursor is not None else None
        await self.writer.barrier()  # a lead escalated a moment ago is listed
        rows = await repo.page(session, principal.team_id, statuses, after, limit + 1)
        page = rows[:limit]
        next_cursor = encode_cursor(statuses, page[-1][0].id) if len(rows) > limit else None
        return orjson.dumps(
            {"escalations": [item(row) for row in page], "next_cursor": next_cursor}
        )

    async def waiting(
        self, session: AsyncSession, principal: Principal, limit: int
    ) -> dict[str, Any]:
        """The queue's work at a glance: counts by status and its oldest `limit` items."""
        await self.writer.barrier()
        counts = await repo.count_by_status(session, principal.team_id, WAITING)
        rows = await repo.page(session, principal.team_id, WAITING, None, limit)
        return {
            "counts": {status: counts.get(status, 0) for status in WAITING},
            "escalations": [item(row) for row in rows],
        }

    async def _view(self, session: AsyncSession, team_id: int, escalation_id: int) -> Row[Any]:
        row = await repo.view(session, team_id, escalation_id)
        if row is None:
            raise NotFoundError(f"no escalation {escalation_id} in your team")
        return row

    async def claim(self, session: AsyncSession, principal: Principal, escalation_id: int) -> bytes:
        """Take an open escalation: the team sees who is qualifying the lead."""
        team = principal.team_id
        who = actor(principal)
        if not await repo.claim(session, team, escalation_id, who, datetime.now(UTC)):
            row = await self._view(session, team, escalation_id)
            raise ConflictError(f"escalation {escalation_id} is {row[0].status}, not open")
        row = await self._view(session, team, escalation_id)
        self._announce(session, row, "claimed", who)
        return orjson.dumps(item(row))

    def _announce(self, session: AsyncSession, row: Row[Any], status: str, by: str) -> None:
        team = row[0].team_id
        if self.events.wants(team, events.EventType.ESCALATION):
            event = events.escalation(
                team, row.name, _score_of(row), None, status=status, escalation_id=row[0].id,
                reasons=row[0].reasons, by=by,
            )  # fmt: skip
            self._emit_after_commit(session, [event])

    async def resolve(
        self,
        session: AsyncSession,
        principal: Principal,
        escalation_id: int,
        request: ResolveRequest,
    ) -> bytes:
        """Resolve with a person's answers: merged into the lead's data, the lead re-scored,
        the outcome (if any) recorded as a label; all in the request's unit of work."""
        await self.writer.barrier()  # the lead's latest data is in the database
        row = await repo.get(session, principal.team_id, escalation_id)
        if row is None:
            raise NotFoundError(f"no escalation {escalation_id} in your team")
        outcome = _outcome_in(row.lead_id, request)
        score = await self.settle(
            session, principal, row, request.answers(), request.notes,
            outcome.outcome if outcome else None, actor(principal), WAITING,
        )  # fmt: skip
        if outcome is not None:
            await self.outcomes.record(session, principal, [outcome])
        view = await self._view(session, principal.team_id, escalation_id)
        return orjson.dumps(item(view) | {"score": score})

    async def settle(
        self,
        session: AsyncSession,
        principal: Principal,
        row: EscalationRow,
        answers: Answers,
        notes: str | None,
        outcome: str | None,
        by: str,
        from_statuses: Sequence[str],
    ) -> dict[str, Any]:
        """Resolve an escalation still in one of `from_statuses` (else 409), merge its answers
        into the lead's data and re-score the lead in this unit of work: the score's body."""
        data = await repo.lead_data(session, row.team_id, row.lead_id) or {}
        try:
            lead_data = LeadData.model_validate(data | answers.lead_fields())
        except ValidationError as exc:
            fields = ", ".join(sorted({_answer_name(e["loc"]) for e in exc.errors()}))
            raise InvalidInputError(
                f"{fields}: the lead's data with these answers is not valid: "
                + "; ".join(e["msg"] for e in exc.errors())
            ) from exc
        now = datetime.now(UTC)
        values = {
            "resolved_by": by, "resolved_at": now, "updated_at": now, "outcome": outcome,
            "answers": answers.model_dump(exclude_none=True),
        } | ({"notes": notes} if notes is not None else {})  # fmt: skip
        if not await repo.mark_resolved(session, row.id, values, from_statuses):
            raise ConflictError(f"escalation {row.id} is not {' or '.join(from_statuses)}")
        session.info.setdefault(_SETTLED, set()).add((row.team_id, row.lead_id))
        [body] = await self.scoring.score_in(
            session, principal, [Lead(lead_id=row.lead_id, lead_data=lead_data)]
        )
        if self.events.wants(row.team_id, events.EventType.ESCALATION):
            event = events.escalation(
                row.team_id, lead_data.name, body, None, status="resolved",
                escalation_id=row.id, reasons=row.reasons, by=by,
            )  # fmt: skip
            self._emit_after_commit(session, [event])
        return body


def _answer_name(loc: Sequence[int | str]) -> str:
    """The request field behind a lead_data field an answer filled."""
    field = str(loc[0]) if loc else "lead_data"
    return {"budget_range": "budget"}.get(field, field)


def _outcome_in(lead_id: str, request: ResolveRequest) -> OutcomeIn | None:
    """The resolution's outcome as the outcomes service takes it; 422 naming the field."""
    if request.outcome is None:
        return None
    try:
        return OutcomeIn.model_validate(
            {"lead_id": lead_id, **request.outcome.model_dump(exclude_none=True)}
        )
    except ValidationError as exc:
        raise InvalidInputError("outcome: " + "; ".join(e["msg"] for e in exc.errors())) from exc
