"""Exports of the leads list and the broker's PDF report, from the domains' services."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadscore.auth.principal import Principal
from leadscore.core.errors import InvalidInputError
from leadscore.qualification.service import QualificationService
from leadscore.reports import exports
from leadscore.reports.exports import FILE_CHUNK, MEDIA_TYPES, Format
from leadscore.reports.pdf import Paper, ReportData, render
from leadscore.scoring.leads import LeadsService
from leadscore.scoring.repository import LeadFilter
from leadscore.scoring.stats import StatsService

T = TypeVar("T")
#: The report's period when no `since` is given.
DEFAULT_PERIOD: Final = timedelta(days=30)
TOP_LEADS: Final = 15
QUEUE_ITEMS: Final = 15
#: What the report asks of the models domain: the serving model's status with its live
#: quality and drift, for a team (wired in the app, which holds the serving models).
ModelHealth = Callable[[AsyncSession, Principal], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Download:
    """A file to send: its name, media type and body, produced while it is sent."""

    filename: str
    media_type: str
    body: AsyncIterator[bytes]


def file_name(principal: Principal, kind: str, extension: str, now: datetime) -> str:
    """`leads-acme-20261202-0545.csv`: the team and the minute, safe in any file system."""
    team = re.sub(r"[^A-Za-z0-9_-]+", "-", principal.team_name).strip("-") or "team"
    return f"{kind}-{team}-{now:%Y%m%d-%H%M}.{extension}"


async def _file_body(path: Path) -> AsyncIterator[bytes]:
    """A finished file's bytes in chunks, removed once sent (or when the client goes)."""
    try:
        with path.open("rb") as handle:
            while block := await asyncio.to_thread(handle.read, FILE_CHUNK):
                yield block
    finally:
        path.unlink(missing_ok=True)


async def _primed(chunks: AsyncIterator[T]) -> AsyncIterator[T]:
    """The same chunks, the first already read: its errors come before the response starts."""
    try:
        first = await anext(chunks)
    except StopAsyncIteration:
        first = None

    async def replay() -> AsyncIterator[T]:
        if first is not None:
            yield first
        async for chunk in chunks:
            yield chunk

    return replay()


class ReportService:
    """Streams exports chunk by chunk and draws the report; reads through the domains' services."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        leads: LeadsService,
        stats: StatsService,
        qualification: QualificationService,
        health: ModelHealth,
    ) -> None:
        self.sessions = sessions
        self.leads = leads
        self.stats = stats
        self.qualification = qualification
        self.health = health

    async def export(
        self, principal: Principal, keep: LeadFilter, sort: str, fmt: Format
    ) -> Download:
        """The team's leads for these filters as a CSV or XLSX download, checked (422) and its
        first chunk read (503 if the database is down) before the first byte, the rest read a
        chunk at a time as it is sent."""
        if fmt not in ("csv", "xlsx"):
            raise InvalidInputError(f"format: csv or xlsx, not {fmt!r}")
        keep = self.leads.checked(keep, sort)
        name = file_name(principal, "leads", fmt, datetime.now(UTC))
        chunks = await _primed(self.leads.iter_leads(self.sessions, principal, keep, sort))
        if fmt == "csv":
            return Download(name, MEDIA_TYPES[fmt], exports.csv_body(chunks))
        return Download(name, MEDIA_TYPES[fmt], self._xlsx_body(chunks))

    async def _xlsx_body(self, chunks: AsyncIterator[list[dict[str, Any]]]) -> AsyncIterator[bytes]:
        """An XLSX is a zip finished only after its last row: built in a scratch file (rows
        flushed as they come, in constant memory), then sent from it."""
        path = exports.scratch_file(".xlsx")
        try:
            await self._write(chunks, "xlsx", path)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        async for block in _file_body(path):
            yield block

    async def write_file(
        self, principal: Principal, keep: LeadFilter, sort: str, fmt: Format, path: Path
    ) -> int:
        """The team's leads for these filters written to `path` in any format; the row count."""
        if fmt not in exports.FORMATS:
            raise InvalidInputError(f"format: one of {', '.join(exports.FORMATS)}, not {fmt!r}")
        keep = self.leads.checked(keep, sort)
        return await self._write(
            self.leads.iter_leads(self.sessions, principal, keep, sort), fmt, path
        )

    async def _write(
        self, chunks: AsyncIterator[list[dict[str, Any]]], fmt: Format, path: Path
    ) -> int:
        """Each chunk appended to the file in a thread (the loop keeps serving meanwhile)."""
        rows = 0
        if fmt in ("csv", "jsonl"):
            with path.open("wb") as handle:
                if fmt == "csv":
                    handle.write(exports.csv_header())
                async for chunk in chunks:
                    data = (
                        exports.csv_rows([exports.flat(lead) for lead in chunk])
                        if fmt == "csv" else exports.jsonl_rows(chunk)
                    )  # fmt: skip
                    await asyncio.to_thread(handle.write, data)
                    rows += len(chunk)
            return rows
        writer: exports.XlsxSheet | exports.ParquetFile = (
            exports.XlsxSheet(path, "Leads") if fmt == "xlsx" else exports.ParquetFile(path)
        )
        try:
            async for chunk in chunks:
                await asyncio.to_thread(writer.write, chunk)
                rows += len(chunk)
        finally:
            await asyncio.to_thread(writer.close)
        return rows

    def report_name(self, principal: Principal) -> str:
        """The report's file name: the team and the minute it was drawn."""
        return file_name(principal, "report", "pdf", datetime.now(UTC))

    async def report(
        self, session: AsyncSession, principal: Principal, since: datetime | None, paper: Paper
    ) -> bytes:
        """The broker's report over [since, now): pipeline, leads to call, conversion by band,
        score distribution, the qualification queue and the model's health, as a PDF."""
        now = datetime.now(UTC)
        if since is not None and since > now:
            raise InvalidInputError("since: must be in the past")
        start = since if since is not None else now - DEFAULT_PERIOD
        figures = await self.stats.figures(session, principal, start, now)
        data = ReportData(
            team=principal.team_name,
            since=datetime.fromisoformat(figures["since"]),
            until=datetime.fromisoformat(figures["until"]),
            pipeline=await self.leads.pipeline(session, principal),
            top_leads=await self.leads.top(session, principal, LeadFilter(), "score", TOP_LEADS),
            figures=figures,
            queue=await self.qualification.waiting(session, principal, QUEUE_ITEMS),
            health=await self.health(session, principal),
        )
        return await asyncio.to_thread(render, data, paper)
