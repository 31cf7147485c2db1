"""Write-behind persistence of scores: batched commits off the request path.

A score is put in the latest-score cache before the response (read-your-write from any
worker) and queued here; the writer commits queued scores every `interval` or `batch_max`
rows. A graceful shutdown drains the queue. A hard crash can lose the history rows of the
last interval (default 5 ms); with `durable=True` each request instead waits for the commit
of its batch (group commit), so nothing acknowledged is lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, Generic, TypeVar

from leadscore.core.errors import LeadScoreError
from leadscore.core.lifecycle import Background

log = logging.getLogger(__name__)
MAX_PENDING: Final = 100_000
RETRY_SECONDS: Final = (0.05, 0.2, 1.0, 5.0)

R = TypeVar("R")


class WriterOverloadedError(LeadScoreError):
    """The database is far behind: refuse new scores instead of holding unbounded memory."""

    status_code = 503
    code = "persistence_backlog"


class ScoreWriter(Background, Generic[R]):
    """Queues records (scores) and commits them in batches from one background task; a None
    record is a barrier whose future resolves once everything queued before it is written."""

    def __init__(
        self,
        persist: Callable[[Sequence[R]], Awaitable[None]],
        *,
        batch_max: int,
        interval_ms: float,
        durable: bool,
    ) -> None:
        self._persist = persist
        self._batch_max = batch_max
        self._interval = interval_ms / 1000.0
        self.durable = durable
        # None is the stop signal: the task finishes its batch, then exits.
        self._queue: asyncio.Queue[tuple[R | None, asyncio.Future[None] | None] | None] = (
            asyncio.Queue()
        )
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        self.failures = 0

    @property
    def pending(self) -> int:
        """Records accepted but not yet committed."""
        return self._queue.qsize()

    def start(self) -> None:
        """Start the background task (inside the running loop)."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="score-writer")

    async def submit(self, records: Sequence[R]) -> None:
        """Queue records; in durable mode, return only once they are committed."""
        if self._closing:
            raise WriterOverloadedError("the server is shutting down")
        if self._queue.qsize() + len(records) > MAX_PENDING:
            raise WriterOverloadedError("score history is not being written fast enough")
        futures: list[asyncio.Future[None]] = []
        loop = asyncio.get_running_loop()
        for record in records:
            future = loop.create_future() if self.durable else None
            if future is not None:
                futures.append(future)
            self._queue.put_nowait((record, future))
        if futures:
            await asyncio.gather(*futures)

    async def barrier(self) -> None:
        """Return once every score queued before this call is committed."""
        if self._task is None or self._task.done():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((None, future))
        await future

    async def _next_batch(self) -> tuple[list[tuple[R | None, asyncio.Future[None] | None]], bool]:
        """Up to `batch_max` items, waiting `interval` for company; and whether to stop."""
        first = await self._queue.get()
        if first is None:
            return [], True
        batch = [first]
        if self._interval > 0 and self._queue.qsize() < self._batch_max:
            await asyncio.sleep(self._interval)
        while len(batch) < self._batch_max and not self._queue.empty():
            item = self._queue.get_nowait()
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    async def _write(self, batch: list[tuple[R | None, asyncio.Future[None] | None]]) -> None:
        """Commit one batch, retrying with back-off: an accepted score is never dropped."""
        attempt = 0
        while True:
            try:
                records = [record for record, _ in batch if record is not None]
                if records:
                    await self._persist(records)
                break
            except Exception:  # the database is down or busy: keep the batch and retry
                self.failures += 1
                delay = RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)]
                log.exception("writing %d scores failed; retrying in %.2f s", len(batch), delay)
                attempt += 1
                await asyncio.sleep(delay)
        self.written += sum(1 for record, _ in batch if record is not None)
        for _, future in batch:
            if future is not None and not future.done():
                future.set_result(None)

    async def _run(self) -> None:
        stop = False
        while not stop:
            batch, stop = await self._next_batch()
            if batch:
                await self._write(batch)

    async def close(self) -> None:
        """Refuse new scores, commit every queued one, then stop: shutdown loses nothing."""
        self._closing = True
        if self._task is None:
            return
        self._queue.put_nowait(None)
        await self._task
