"""Received webhooks stored in groups: one INSERT and one commit for all that arrived together.

A webhook is answered only once its row is committed (nothing acknowledged is lost), but the
requests that arrive while a commit runs share the next one: the database does one round trip
per group, not per webhook. On SQLite a gate (an asyncio lock) keeps these commits and the
inbox worker's transactions from meeting in SQLite's own busy wait, whose sleeps grow to
tens of milliseconds, and each group is committed in one hop to a thread of its own
(`SqliteThread`); PostgreSQL needs neither.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadscore.core.db import SqliteThread, is_connection_error, transaction
from leadscore.core.lifecycle import Background
from leadscore.crm import repository as repo

BATCH_MAX: Final = 500
_Item = tuple[dict[str, Any], asyncio.Future[bool]]


class WebhookStore(Background):
    """Stores webhook rows in groups; `store` answers whether the row is new."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        gate: asyncio.Lock | None,
        sqlite: SqliteThread | None = None,
    ) -> None:
        self.sessions = sessions
        self.gate = gate
        self.sqlite = sqlite
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.commits = 0

    def start(self) -> None:
        """Start the task that commits groups."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="crm-store")

    async def store(self, row: dict[str, Any]) -> bool:
        """Commit one webhook row (with whatever arrived meanwhile); False for a repeat of a
        stored event. Raises what the database raised (an outage: the caller answers 429)."""
        if self._task is None or self._task.done():
            raise RuntimeError("the webhook store is not running")
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((row, future))
        return await future

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < BATCH_MAX and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    await self._write(batch)
                    return
                batch.append(item)
            await self._write(batch)

    async def _write(self, batch: Sequence[_Item]) -> None:
        """One INSERT for the group; a group the database refuses (not an outage) is written
        one row at a time, so one bad row fails alone."""
        try:
            new = await self._insert([row for row, _ in batch])
        except Exception as exc:  # given to the requests waiting on it, who answer for it
            if is_connection_error(exc) or len(batch) == 1:
                for _, future in batch:
                    _settle(future, exc)
                return
            for item in batch:
                await self._write([item])
            return
        taken: set[tuple[str, str]] = set()
        for row, future in batch:
            key = (row["provider"], row["event_id"])
            _settle(future, key in new and key not in taken)
            taken.add(key)

    async def _insert(self, rows: list[dict[str, Any]]) -> set[tuple[str, str]]:
        gate = self.gate if self.gate is not None else contextlib.nullcontext()
        async with gate:
            if self.sqlite is not None:
                new = await self.sqlite.run(lambda c: repo.store_webhooks_sqlite(c, rows))
            else:
                async with transaction(self.sessions) as session:
                    new = await repo.store_webhooks(session, rows)
        self.commits += 1
        return new

    async def close(self) -> None:
        """Commit what is queued, then stop."""
        if self._task is None:
            return
        self._queue.put_nowait(None)
        await self._task
        self._task = None
        if self.sqlite is not None:
            await asyncio.to_thread(self.sqlite.close)


def _settle(future: asyncio.Future[bool], result: bool | BaseException) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
