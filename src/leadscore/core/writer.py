"""Write-behind persistence of scores: batched commits off the request path.

A score is put in the latest-score cache before the response (read-your-write from any
worker) and queued here; the writer commits queued scores every `interval` or `batch_max`
rows. A graceful shutdown drains the queue. A hard crash can lose the history rows of the
last interval (default 5 ms); with `durable=True` each request instead waits for the commit
of its batch (group commit), so nothing acknowledged is lost.

A lost database keeps the batch and retries it with back-off (nothing accepted is dropped);
a batch the database refuses (an integrity or data error, which no retry fixes) is retried
one record at a time, and the records refused alone are set aside, counted and logged, so
one bad record never holds up every score queued behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Final, Generic, TypeVar

from leadscore.core.db import is_connection_error
from leadscore.core.errors import DatabaseUnavailableError, LeadScoreError
from leadscore.core.lifecycle import Background
from leadscore.core.logs import DependencyLog

log = logging.getLogger(__name__)
MAX_PENDING: Final = 100_000
RETRY_SECONDS: Final = (0.05, 0.2, 1.0, 2.0)
#: How long a request waits on the writer (a durable commit, a barrier) before answering 503
#: while the database is failing…
WAIT_SECONDS: Final = 1.0
#: …and at most while it is up but slow (a busy SQLite file): late, not refused as unavailable.
SLOW_SECONDS: Final = 10.0
#: How long a shutdown keeps retrying while the database is unreachable before giving up.
DRAIN_SECONDS: Final = 30.0
#: The last records set aside, kept for inspection.
SET_ASIDE_KEPT: Final = 100

R = TypeVar("R")
_Item = tuple[R | None, asyncio.Future[bool] | None]


class WriterOverloadedError(LeadScoreError):
    """The database is far behind: refuse new scores instead of holding unbounded memory."""

    status_code = 503
    code = "persistence_backlog"


class RecordRejectedError(LeadScoreError):
    """The database refused the record itself (not an outage): it was set aside, not stored."""

    status_code = 500
    code = "persistence_rejected"


class ScoreWriter(Background, Generic[R]):
    """Queues records (scores) and commits them in batches from one background task; a None
    record is a barrier whose future resolves once everything queued before it is written.

    With a `key`, the latest record of each key not committed yet can be read back
    (`unwritten`): a read that misses the cache still finds a score acknowledged a moment ago.
    """

    def __init__(
        self,
        persist: Callable[[Sequence[R]], Awaitable[None]],
        *,
        batch_max: int,
        interval_ms: float,
        durable: bool,
        key: Callable[[R], Hashable] | None = None,
        database: DependencyLog | None = None,
        wait_seconds: float = WAIT_SECONDS,
    ) -> None:
        self._persist = persist
        self._batch_max = batch_max
        self._interval = interval_ms / 1000.0
        self.durable = durable
        self._key = key
        self.database = database or DependencyLog(log, "database (score writer)")
        self.wait_seconds = wait_seconds
        # None is the stop signal: the task finishes its batch, then exits.
        self._queue: asyncio.Queue[_Item[R] | None] = asyncio.Queue()
        self._unwritten: dict[Hashable, R] = {}
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._in_flight = 0
        #: A commit failed for the database: retried in its back-off, then until the writer
        #: has caught up on what queued meanwhile (a wait then is a 503, not a long delay).
        self._retrying = False
        self.written = 0
        self.failures = 0
        self.rejected = 0
        self.set_aside: deque[tuple[R, str]] = deque(maxlen=SET_ASIDE_KEPT)

    @property
    def pending(self) -> int:
        """Records accepted but not yet committed."""
        return self._queue.qsize()

    def unwritten(self, key: Hashable) -> R | None:
        """The latest accepted record under `key` that is not committed yet, if any."""
        return self._unwritten.get(key)

    def start(self) -> None:
        """Start the background task (inside the running loop)."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="score-writer")

    async def submit(self, records: Sequence[R], *, wait: bool = False) -> None:
        """Queue records; in durable mode, return only once they are committed (503 when that
        takes over `wait_seconds`: not acknowledged, though still queued and written later).
        `wait` asks for the commit too, without the 503: the answer is only delayed."""
        if self._closing:
            raise WriterOverloadedError("the server is shutting down")
        if self._queue.qsize() + len(records) > MAX_PENDING:
            raise WriterOverloadedError("score history is not being written fast enough")
        futures: list[asyncio.Future[bool]] = []
        loop = asyncio.get_running_loop()
        waits = self.durable or wait
        for record in records:
            future = loop.create_future() if waits else None
            if future is not None:
                futures.append(future)
            if self._key is not None:
                self._unwritten[self._key(record)] = record
            self._queue.put_nowait((record, future))
        if not futures:
            return
        done = await self._committed(futures)
        if len(done) < len(futures):
            if self.durable:
                raise DatabaseUnavailableError(
                    f"the score was not committed within {self.wait_seconds:g} s; "
                    "it is queued, but not acknowledged"
                )
            return
        if self.durable and not all(future.result() for future in futures):
            raise RecordRejectedError("the database refused this score; it was set aside")

    async def barrier(self) -> None:
        """Return once every score queued before this call is committed; 503 after
        `wait_seconds` (the database is down or far behind), so no request hangs on it."""
        if self._task is None or self._task.done():
            return
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((None, future))
        if not await self._committed([future]):
            raise DatabaseUnavailableError(
                f"recent scores are not written yet ({self.pending} queued): "
                "the database is unreachable or far behind"
            )

    async def _committed(
        self, futures: Sequence[asyncio.Future[bool]]
    ) -> set[asyncio.Future[bool]]:
        """The futures committed within `wait_seconds`, or later while the writer's commits
        succeed (slow, not failing) up to `SLOW_SECONDS`: a 503 says the database is
        unavailable or the writer is still catching up after it was, never that it is slow."""
        done, pending = await asyncio.wait(futures, timeout=self.wait_seconds)
        deadline = time.monotonic() + SLOW_SECONDS - self.wait_seconds
        while pending and not self._retrying and time.monotonic() < deadline:
            more, pending = await asyncio.wait(pending, timeout=0.05)
            done |= more
        return done

    async def _next_batch(self) -> tuple[list[_Item[R]], bool]:
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

    async def _commit(self, records: Sequence[R]) -> Exception | None:
        """Persist records, retrying with back-off while the database is unreachable; the
        error when the database refuses them (retrying would never help), else None."""
        attempt = 0
        while True:
            try:
                await self._persist(records)
            except Exception as exc:  # classified: an outage is retried, a refusal returned
                if not is_connection_error(exc):
                    self._retrying = False
                    self.database.up()  # it answered, if only to refuse
                    return exc
                self.failures += 1
                self._retrying = True
                delay = RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)]
                self.database.down(
                    f"writing {len(records)} scores failed ({type(exc).__name__}: "
                    f"{str(exc)[:200]}); retrying every {RETRY_SECONDS[-1]:g} s at most",
                    refused=0 if attempt else 1,
                )
                attempt += 1
                await asyncio.sleep(delay)
            else:
                if self._queue.empty():  # caught up on what queued during an outage
                    self._retrying = False
                self.database.up()
                return None

    async def _write(self, batch: list[_Item[R]]) -> None:
        """Commit one batch; when refused, each record alone, setting aside those refused."""
        records = [record for record, _ in batch if record is not None]
        self._in_flight = len(records)
        refused: set[int] = set()
        if records:
            error = await self._commit(records)
            if error is not None:
                for record in records:
                    alone = await self._commit([record])
                    if alone is not None:
                        refused.add(id(record))
                        self._reject(record, alone)
        self._in_flight = 0
        self.written += len(records) - len(refused)
        for written, future in batch:
            if written is not None and self._key is not None:
                key = self._key(written)
                if self._unwritten.get(key) is written:
                    del self._unwritten[key]
            if future is not None and not future.done():
                future.set_result(id(written) not in refused)

    def _reject(self, record: R, error: Exception) -> None:
        reason = f"{type(error).__name__}: {str(error)[:300]}"
        self.rejected += 1
        self.set_aside.append((record, reason))
        log.error("a score the database refuses was set aside (%d so far): %s", self.rejected,
                  reason)  # fmt: skip

    async def _run(self) -> None:
        stop = False
        while not stop:
            batch, stop = await self._next_batch()
            if batch:
                await self._write(batch)

    async def close(self, drain_seconds: float = DRAIN_SECONDS) -> None:
        """Refuse new scores, commit every queued one, then stop: shutdown loses nothing,
        unless the database stays unreachable for `drain_seconds` (then it does not hang:
        the scores still queued are counted in one error line)."""
        self._closing = True
        if self._task is None:
            return
        self._queue.put_nowait(None)
        done, _ = await asyncio.wait([self._task], timeout=drain_seconds)
        if done:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        lost = self._in_flight
        while not self._queue.empty():
            item = self._queue.get_nowait()
            lost += item is not None and item[0] is not None
        log.error("shutdown: %d scores not written, the database stayed unreachable for "
                  "%g s", lost, drain_seconds)  # fmt: skip
