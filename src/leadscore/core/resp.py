"""A lean Redis client for the scoring path: one connection, many commands in flight.

Every score reads and writes the cache. Through redis-py each command cost ~70 µs of Python
(pool checkout, retry wrapper, per-command parsing layers): a sixth of a worker's time. Redis
answers the commands of one connection in order, so a single connection can carry every
concurrent request: each command is one write and one future, replies resolve the oldest
futures first, and hiredis parses them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import hiredis

from leadscore.core.errors import ConfigurationError

Arg = bytes | str | int


class RespError(Exception):
    """Redis did not answer in time, the connection failed, or Redis replied with an error."""


def pack(*args: Arg) -> bytes:
    """One command in RESP: an array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class _Connection(asyncio.Protocol):
    """The socket, the parser, and the futures of the commands awaiting their replies."""

    def __init__(self, timeout_seconds: float) -> None:
        self.timeout = timeout_seconds
        self.loop = asyncio.get_running_loop()
        self.reader = hiredis.Reader()
        self.pending: deque[tuple[asyncio.Future[Any], float]] = deque()
        self.transport: asyncio.Transport | None = None
        self.failure: RespError | None = None
        self._watchdog: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport does not subclass asyncio.Transport; it has the same methods.
        self.transport = cast("asyncio.Transport", transport)

    @property
    def usable(self) -> bool:
        return self.failure is None and self.transport is not None

    def send(self, data: bytes, replies: int) -> list[asyncio.Future[Any]]:
        """Write commands at once; one future per expected reply, in order."""
        if self.failure is not None:
            raise self.failure
        assert self.transport is not None
        deadline = time.monotonic() + self.timeout
        futures = [self.loop.create_future() for _ in range(replies)]
        self.pending.extend((future, deadline) for future in futures)
        self.transport.write(data)
        if self._watchdog is None:
            self._watchdog = self.loop.call_later(self.timeout, self._check)
        return futures

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        pending = self.pending
        while (reply := self.reader.gets()) is not False:
            future, _ = pending.popleft()
            if future.done():  # its caller was cancelled
                continue
            if isinstance(reply, hiredis.ReplyError):
                future.set_exception(RespError(f"redis error: {reply}"))
            else:
                future.set_result(reply)

    def _check(self) -> None:
        """Replies come in order: when the oldest is late, the connection is stuck."""
        self._watchdog = None
        if not self.pending:
            return
        late = self.pending[0][1] - time.monotonic()
        if late <= 0:
            self.fail(RespError(f"redis did not answer within {self.timeout * 1000:.0f} ms"))
            return
        self._watchdog = self.loop.call_later(late, self._check)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RespError(f"redis connection lost: {exc or 'closed by the server'}"))

    def fail(self, error: RespError) -> None:
        """Fail every command in flight; the client opens a new connection next time."""
        if self.failure is None:
            self.failure = error
        while self.pending:
            future, _ = self.pending.popleft()
            if not future.done():
                future.set_exception(error)
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self.transport is not None:
            self.transport.abort()


class RespClient:
    """Commands over one shared connection, opened on first use and after any failure."""

    def __init__(self, url: str, timeout_seconds: float) -> None:
        parts = urlsplit(url)
        if parts.scheme != "redis":
            raise ConfigurationError(
                f"the cache's Redis URL must be redis://, not {parts.scheme}://"
            )
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 6379
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password is not None else None
        self.db = int(parts.path.lstrip("/") or 0)
        self.timeout = timeout_seconds
        self._connection: _Connection | None = None
        self._connecting: asyncio.Future[_Connection] | None = None
        self._closed = False

    async def execute(self, *args: Arg) -> Any:
        """One command's reply."""
        [future] = (await self._ready()).send(pack(*args), 1)
        return await future

    async def execute_many(self, commands: list[tuple[Arg, ...]]) -> list[Any]:
        """Several commands in one write; every reply, or the first error."""
        futures = (await self._ready()).send(b"".join(pack(*c) for c in commands), len(commands))
        replies = await asyncio.gather(*futures, return_exceptions=True)
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
        return replies

    async def _ready(self) -> _Connection:
        if self._closed:
            raise RespError("client closed")
        connection = self._connection
        if connection is not None and connection.usable:
            return connection
        attempt = self._connecting
        if attempt is None:  # concurrent callers share one attempt
            attempt = self._connecting = asyncio.ensure_future(self._connect())
            attempt.add_done_callback(self._attempt_done)
        return await asyncio.shield(attempt)

    def _attempt_done(self, attempt: asyncio.Future[_Connection]) -> None:
        """Forget a finished attempt, even when every caller that waited was cancelled."""
        if self._connecting is attempt:
            self._connecting = None
        if not attempt.cancelled():
            attempt.exception()  # retrieved: its callers got it, or nobody was left to

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout):
                _, connection = await loop.create_connection(
                    lambda: _Connection(self.timeout), self.host, self.port
                )
                setup: list[tuple[Arg, ...]] = []
                if self.password is not None:
                    login = (self.username,) if self.username else ()
                    setup.append(("AUTH", *login, self.password))
                if self.db:
                    setup.append(("SELECT", self.db))
                if setup:
                    futures = connection.send(b"".join(pack(*c) for c in setup), len(setup))
                    try:
                        for future in futures:
                            await future
                    except BaseException as exc:
                        connection.fail(RespError(f"redis refused the connection setup: {exc}"))
                        raise
        except (OSError, TimeoutError) as exc:
            raise RespError(f"cannot connect to redis at {self.host}:{self.port}: {exc}") from exc
        self._connection = connection
        return connection

    async def close(self) -> None:
        """Close the connection; commands in flight fail, later ones too."""
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError, RespError):
                await self._connecting
        if self._connection is not None:
            self._connection.fail(RespError("client closed"))
            self._connection = None
