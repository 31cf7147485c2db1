"""Outcomes: what happened to a team's leads, recorded durably and idempotently."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, model_validator
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from leadscore.auth.principal import Principal
from leadscore.core.db import after_commit, on_rollback
from leadscore.core.errors import LeadScoreError, NotFoundError
from leadscore.core.idempotency import IdempotencyStore, Once
from leadscore.core.writer import ScoreWriter
from leadscore.outcomes import repository as repo

MAX_OUTCOMES: Final = 1000
CLOCK_SKEW: Final = timedelta(minutes=5)
EARLIEST: Final = datetime(2000, 1, 1, tzinfo=UTC)
#: A deal that closed cannot also be lost, nor the reverse.
EXCLUSIVE: Final = {"closed": "lost", "lost": "closed"}
#: With several workers, a lead scored a moment ago by another one is written by that worker's
#: score writer within its flush interval: wait this long for it before answering 404.
OTHER_WRITERS_SECONDS: Final = 2.0
_POLL_SECONDS: Final = 0.1


class ConflictError(LeadScoreError):
    """The request contradicts what is already recorded; nothing was changed."""

    status_code = 409
    code = "conflict"


class OutcomeIn(BaseModel):
    """One outcome of a lead the team has scored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lead_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,100}$")
    outcome: Literal["converted", "closed", "lost"]
    occurred_at: AwareDatetime
    sale_price: float | None = Field(default=None, gt=0, le=1e10)
    closed_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _consistent(self) -> OutcomeIn:
        """A sale price and a closing date describe a closed deal, and nothing is in the future."""
        if self.outcome != "closed" and (self.sale_price is not None or self.closed_at):
            raise ValueError("sale_price and closed_at belong to a 'closed' outcome only")
        latest = datetime.now(UTC) + CLOCK_SKEW
        if self.occurred_at > latest or (self.closed_at and self.closed_at > latest):
            raise ValueError("an outcome cannot be in the future")
        if self.occurred_at < EARLIEST or (self.closed_at and self.closed_at < EARLIEST):
            raise ValueError(f"an outcome before {EARLIEST:%Y-%m-%d} is not a lead of this system")
        if self.closed_at and self.closed_at < self.occurred_at - timedelta(days=366):
            raise ValueError("closed_at is more than a year before occurred_at")
        return self


_ONE = TypeAdapter(OutcomeIn)
_MANY = TypeAdapter(Annotated[list[OutcomeIn], Field(min_length=1, max_length=MAX_OUTCOMES)])


def parse_outcomes(body: bytes) -> list[OutcomeIn]:
    """One outcome (a JSON object) or a list of them; errors name the item and the field."""
    if body.lstrip()[:1] == b"[":
        return _MANY.validate_json(body)
    return [_ONE.validate_json(body)]


def _same(row: repo.OutcomeRecord, item: OutcomeIn) -> bool:
    closed_at = item.closed_at or (item.occurred_at if item.outcome == "closed" else None)
    return (row.occurred_at, row.sale_price, row.closed_at) == (
        item.occurred_at,
        item.sale_price,
        closed_at,
    )


def _refuse_conversion_after_loss(
    index: int, item: OutcomeIn, existing: dict[tuple[str, str], repo.OutcomeRecord]
) -> None:
    """A lead may convert and then be lost (the deal fell through), never the reverse: a
    conversion dated after the lead's loss contradicts it, whichever of the two came first."""
    converted_at: datetime | None
    lost_at: datetime | None
    if item.outcome == "converted":
        lost, converted_at = existing.get((item.lead_id, "lost")), item.occurred_at
        lost_at = lost.occurred_at if lost is not None else None
    elif item.outcome == "lost":
        converted = existing.get((item.lead_id, "converted"))
        converted_at = converted.occurred_at if converted is not None else None
        lost_at = item.occurred_at
    else:
        return
    if converted_at is not None and lost_at is not None and converted_at > lost_at:
        raise ConflictError(
            f"item {index}: lead {item.lead_id!r} was lost on {lost_at:%Y-%m-%d %H:%M} UTC; "
            f"it cannot have converted after that ({converted_at:%Y-%m-%d %H:%M} UTC)"
        )


class OutcomeService:
    """Records outcomes for the caller's team; all of a request or none of it."""

    def __init__(
        self,
        writer: ScoreWriter[Any],
        other_writers_seconds: float = 0.0,
        idempotency: IdempotencyStore | None = None,
    ) -> None:
        self.writer = writer
        self.other_writers_seconds = other_writers_seconds
        self.idempotency = idempotency
        self._releases: set[asyncio.Task[None]] = set()

    async def record(
        self,
        session: AsyncSession,
        principal: Principal,
        items: Sequence[OutcomeIn],
        once: Once | None = None,
    ) -> bytes:
        """Store new outcomes (committed with the request, before the reply); repeats change
        nothing; a retry with the request's idempotency key gets the first answer."""
        store = self.idempotency
        if store is None or once is None:
            return await self._record_all(session, principal, items)
        team = principal.team_id
        stored = await store.reserve(team, "outcomes", once)
        if stored is not None:
            return stored
        try:
            answer = await self._record_all(session, principal, items)
        except BaseException:
            await store.release(team, "outcomes", once)
            raise
        # The answer is replayed only once it is durable; a failed commit frees the key.
        after_commit(session, lambda: store.complete(team, "outcomes", once, answer))
        on_rollback(session, lambda: self._release_later(store, team, once))
        return answer

    def _release_later(self, store: IdempotencyStore, team: int, once: Once) -> None:
        """Rollback hooks are synchronous: free the key in a task the service keeps alive."""
        task = asyncio.get_running_loop().create_task(store.release(team, "outcomes", once))
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def _record_all(
        self, session: AsyncSession, principal: Principal, items: Sequence[OutcomeIn]
    ) -> bytes:
        await self.writer.barrier()  # a lead scored a moment ago is in the database now
        team = principal.team_id
        lead_ids = sorted({item.lead_id for item in items})
        now = datetime.now(UTC)
        try:
            return await self._record(session, team, items, lead_ids, now)
        except IntegrityError as exc:  # the same outcome arrived in a concurrent request
            raise ConflictError("an outcome of these leads was recorded meanwhile; retry") from exc

    async def _unknown(self, session: AsyncSession, team: int, lead_ids: list[str]) -> list[str]:
        """The leads without a score, after giving other workers' writers time to commit."""
        deadline = time.monotonic() + self.other_writers_seconds
        while True:
            known = await repo.known_leads(session, team, lead_ids)
            unknown = [lead_id for lead_id in lead_ids if lead_id not in known]
            if not unknown or time.monotonic() >= deadline:
                return unknown
            # Read committed (PostgreSQL; SQLite runs each read on its own): the next read sees
            # what other workers committed meanwhile.
            await asyncio.sleep(_POLL_SECONDS)
            lead_ids = unknown

    async def _record(
        self,
        session: AsyncSession,
        team: int,
        items: Sequence[OutcomeIn],
        lead_ids: list[str],
        now: datetime,
    ) -> bytes:
        unknown = await self._unknown(session, team, lead_ids)
        if unknown:
            raise NotFoundError(f"no score for these leads of your team: {unknown[:20]}")
        existing = await repo.lead_outcomes(session, team, lead_ids)
        results: list[dict[str, Any]] = []
        new: list[repo.OutcomeRecord] = []
        for index, item in enumerate(items):
            found = existing.get((item.lead_id, item.outcome))
            if found is not None:
                if not _same(found, item):
                    raise ConflictError(
                        f"item {index}: lead {item.lead_id!r} already has a different "
                        f"{item.outcome!r} outcome (occurred_at {found.occurred_at:%Y-%m-%d})"
                    )
                results.append({"lead_id": item.lead_id, "outcome": item.outcome,
                                "status": "unchanged"})  # fmt: skip
                continue
            rival = EXCLUSIVE.get(item.outcome)
            if rival is not None and (item.lead_id, rival) in existing:
                raise ConflictError(
                    f"item {index}: lead {item.lead_id!r} is already {rival!r}; "
                    f"it cannot also be {item.outcome!r}"
                )
            _refuse_conversion_after_loss(index, item, existing)
            record = repo.OutcomeRecord(
                team_id=team,
                lead_id=item.lead_id,
                outcome=item.outcome,
                occurred_at=item.occurred_at,
                sale_price=item.sale_price,
                closed_at=item.closed_at
                or (item.occurred_at if item.outcome == "closed" else None),
                recorded_at=now,
            )
            existing[(item.lead_id, item.outcome)] = record
            new.append(record)
            results.append({"lead_id": item.lead_id, "outcome": item.outcome,
                            "status": "recorded"})  # fmt: skip
        await repo.save_outcomes(session, new)
        return orjson.dumps(
            {
                "recorded": len(new),
                "unchanged": len(items) - len(new),
                "results": results,
            }
        )
