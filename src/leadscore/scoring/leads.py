"""The leads list and one lead's page: each lead with its latest score, from the leads table."""

from __future__ import annotations

import base64
import binascii
import builtins
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadscore.auth.principal import Principal
from leadscore.core.errors import InvalidInputError, NotFoundError
from leadscore.core.timestamps import iso_z
from leadscore.core.writer import ScoreWriter
from leadscore.scoring import repository as repo
from leadscore.scoring.repository import SORT_COLUMNS, LeadFilter, ScoreRecord
from leadscore.scoring.service import history_entries

SORTS: Final = tuple(SORT_COLUMNS)
#: Leads read per query by `iter_leads`: one keyset page of the list's own query.
EXPORT_CHUNK: Final = 2000


class InvalidCursorError(InvalidInputError):
    """A cursor this list did not hand out, or one of another sort order."""

    code = "invalid_cursor"


def utc(moment: datetime, name: str) -> datetime:
    """An aware instant in UTC; one that leaves the calendar in UTC is bad input, not a 500."""
    try:
        return moment.astimezone(UTC)
    except OverflowError as exc:
        raise InvalidInputError(f"{name}: {moment.isoformat()} is out of range") from exc


def encode_cursor(sort: str, value: Any, lead_id: str) -> str:
    """The opaque keyset of the last lead of a page: its sort, sort value and lead id."""
    if isinstance(value, datetime):
        value = iso_z(value)
    raw = orjson.dumps([sort, value, lead_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str) -> tuple[Any, str]:
    """The keyset (sort value, lead id) of a cursor handed out for this sort; else 422."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        cursor_sort, value, lead_id = orjson.loads(raw)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise InvalidCursorError("cursor: not a cursor of this list") from exc
    if cursor_sort not in SORTS or not isinstance(lead_id, str):
        raise InvalidCursorError("cursor: not a cursor of this list")
    if cursor_sort != sort:
        raise InvalidCursorError(f"cursor: made for sort={cursor_sort}, not sort={sort}")
    if value is None:
        return None, lead_id
    try:
        if sort == "scored_at":
            return utc(datetime.fromisoformat(value), "cursor"), lead_id
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(value)
        return float(value), lead_id
    except (ValueError, TypeError) as exc:
        raise InvalidCursorError("cursor: not a cursor of this list") from exc


def item(row: Row[Any]) -> dict[str, Any]:
    summary = row.summary or {}
    return {
        "lead_id": row.lead_id,
        "name": row.name,
        "email": row.email,
        "source": row.source,
        "ml_score": row.ml_score,
        "classification": row.classification,
        "ml_confidence": row.ml_confidence,
        "qualification_needed": row.qualification_needed,
        "top_question": summary.get("top_question"),
        "reasons": summary.get("reasons") or [],
        "expected_commission": row.expected_commission,
        "change_points": row.change_points,
        "scored_at": iso_z(row.scored_at),
        "model_version": row.model_version,
    }


class LeadsService:
    """Reads a team's leads with their latest scores, after the writer's pending scores."""

    def __init__(self, writer: ScoreWriter[ScoreRecord]) -> None:
        self.writer = writer

    async def list(
        self,
        session: AsyncSession,
        principal: Principal,
        keep: LeadFilter,
        sort: str,
        limit: int,
        cursor: str | None,
    ) -> bytes:
        """One page of the team's leads, best first by `sort`, and the cursor of the next."""
        after = decode_cursor(cursor, sort) if cursor is not None else None
        if keep.scored_since is not None:
            keep = replace(keep, scored_since=utc(keep.scored_since, "scored_since"))
        await self.writer.barrier()  # a lead scored a moment ago is listed
        rows = await repo.lead_page(session, principal.team_id, sort, keep, after, limit + 1)
        page = rows[:limit]
        next_cursor = None
        if len(rows) > limit:
            last = page[-1]
            value = getattr(last, SORT_COLUMNS[sort].key)
            next_cursor = encode_cursor(sort, value, last.lead_id)
        return orjson.dumps({"leads": [item(row) for row in page], "next_cursor": next_cursor})

    def checked(self, keep: LeadFilter, sort: str) -> LeadFilter:
        """The filter with its instant in UTC, refused (422) before anything is read."""
        if sort not in SORTS:
            raise InvalidInputError(f"sort: one of {', '.join(SORTS)}, not {sort!r}")
        if keep.scored_since is not None:
            keep = replace(keep, scored_since=utc(keep.scored_since, "scored_since"))
        return keep

    async def iter_leads(
        self,
        sessions: async_sessionmaker[AsyncSession],
        principal: Principal,
        keep: LeadFilter,
        sort: str,
        chunk: int = EXPORT_CHUNK,
    ) -> AsyncIterator[builtins.list[dict[str, Any]]]:
        """Every lead the list would show for these filters, in its order, `chunk` at a time:
        each chunk is one keyset query in its own short read, so an export of any size holds
        one chunk in memory and no transaction open while the client reads."""
        keep = self.checked(keep, sort)
        await self.writer.barrier()
        after: tuple[Any, str] | None = None
        while True:
            async with sessions() as session:
                rows = await repo.lead_page(session, principal.team_id, sort, keep, after, chunk)
            if not rows:
                return
            yield [item(row) for row in rows]
            if len(rows) < chunk:
                return
            last = rows[-1]
            after = (getattr(last, SORT_COLUMNS[sort].key), last.lead_id)

    async def top(
        self, session: AsyncSession, principal: Principal, keep: LeadFilter, sort: str, limit: int
    ) -> builtins.list[dict[str, Any]]:
        """The first `limit` leads of the list for these filters, as the list shows them."""
        keep = self.checked(keep, sort)
        await self.writer.barrier()
        rows = await repo.lead_page(session, principal.team_id, sort, keep, None, limit)
        return [item(row) for row in rows]

    async def pipeline(self, session: AsyncSession, principal: Principal) -> dict[str, Any]:
        """Per class (hot, warm, cold): the team's leads and their expected commission."""
        await self.writer.barrier()
        found = {row.classification: row for row in await repo.class_pipeline(
            session, principal.team_id
        )}  # fmt: skip
        return {
            cls: {
                "leads": int(found[cls].leads) if cls in found else 0,
                "expected_commission": round(float(found[cls].commission), 2)
                if cls in found else 0.0,
                "with_commission": int(found[cls].with_commission) if cls in found else 0,
            }
            for cls in ("hot", "warm", "cold")
        }  # fmt: skip

    async def detail(
        self, session: AsyncSession, principal: Principal, lead_id: str, history_limit: int
    ) -> bytes:
        """A lead's latest data and score, and its history with the change of each score."""
        await self.writer.barrier()
        # One more than shown: the oldest entry shown gets its change too. The history is read
        # first: on SQLite each read sees its own moment, and the data read after it is then
        # at least as new as the latest score shown (never older, as a concurrent re-score
        # could otherwise make it).
        rows = await repo.score_history(session, principal.team_id, lead_id, history_limit + 1)
        lead = await repo.lead(session, principal.team_id, lead_id)
        if lead is None or not rows:
            raise NotFoundError(f"no lead {lead_id!r} in your team")
        return orjson.dumps(
            {
                "lead_id": lead_id,
                "lead_data": lead.data,
                "first_seen_at": iso_z(lead.first_seen_at),
                "updated_at": iso_z(lead.updated_at),
                "latest": rows[0].result,
                "history": history_entries(rows, history_limit),
            }
        )
