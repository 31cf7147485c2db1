"""The one Redis client of the cache, the bus and the limiter: many commands on one connection.

Every score reads and writes the cache. Through redis-py each command cost ~70 µs of Python
(pool checkout, retry wrapper, per-command parsing layers), through coredis more (BENCHMARKS.md,
"Redis client"). Redis answers the commands of one connection in order, so a single connection
can carry every concurrent request: each command is one write and one future, replies resolve
the oldest futures first, and hiredis parses them. Pub/sub takes a connection of its own
(`RespSubscriber`), since a subscribed connection carries nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, cast
from urllib.parse import unquote, urlsplit

import hiredis

from leadscore.core.errors import ConfigurationError

Arg = bytes | str | int
#: How long a SUBSCRIBE or a subscriber's PING may take before its connection counts as dead.
SUBSCRIBE_TIMEOUT_SECONDS: Final = 5.0
#: An idle subscription is PINGed this often, so a silently dead connection is noticed.
SUBSCRIBER_HEALTH_SECONDS: Final = 30.0


class RespError(Exception):
    """Redis did not answer in time, the connection failed, or Redis replied with an error."""


class RespReplyError(RespError):
    """Redis answered this command with an error reply (the connection is fine)."""

    def __init__(self, reply: str) -> None:
        super().__init__(f"redis error: {reply}")
        self.reply = reply


def pack(*args: Arg) -> bytes:
    """One command in RESP: an array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


@dataclass(frozen=True)
class RedisAddress:
    """Where Redis is and how to log in, parsed once from `redis://` or `rediss://` (TLS)."""

    host: str
    port: int
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    ca_file: Path | None = None
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)

    @classmethod
    def parse(cls, url: str, ca_file: Path | None = None) -> RedisAddress:
        """Refuse what would fail or mislead later: an unknown scheme, a bad database number, a
        CA file that cannot be read or that would be ignored (plain redis://)."""
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ConfigurationError(
                f"the Redis URL must be redis:// or rediss:// (TLS), not {parts.scheme}://"
            )
        try:
            port = parts.port or 6379
            db = int(parts.path.lstrip("/") or 0)
        except ValueError as exc:
            raise ConfigurationError(f"the Redis URL is not redis://host:port/db: {exc}") from exc
        tls = parts.scheme == "rediss"
        if ca_file is not None and not tls:
            raise ConfigurationError(
                "a Redis CA file is set but the Redis URL is redis://, which never uses TLS: "
                "use rediss://"
            )
        context = None
        if tls:
            try:
                context = ssl.create_default_context(
                    cafile=str(ca_file) if ca_file is not None else None
                )
            except (OSError, ssl.SSLError) as exc:
                raise ConfigurationError(f"cannot read the Redis CA file {ca_file}: {exc}") from exc
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=port,
            db=db,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            tls=tls,
            ca_file=ca_file,
            ssl_context=context,
        )

    def __str__(self) -> str:
        """host:port for messages; never the password."""
        return f"{'rediss' if self.tls else 'redis'}://{self.host}:{self.port}/{self.db}"


def as_address(redis: RedisAddress | str) -> RedisAddress:
    """Components take a parsed address (the settings') or, in tests and tools, a URL."""
    return redis if isinstance(redis, RedisAddress) else RedisAddress.parse(redis)


@dataclass(frozen=True)
class Script:
    """A Lua script run by its SHA1, so each call sends 40 bytes, not the source."""

    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())


class _Connection(asyncio.Protocol):
    """The socket, the parser, and the futures of the commands awaiting their replies.

    Replies that no command awaits (pub/sub messages) go to `pushes` when given; on a command
    connection such a reply means the stream is out of step, and the connection fails.
    """

    def __init__(self, timeout_seconds: float, pushes: asyncio.Queue[Any] | None = None) -> None:
        self.timeout = timeout_seconds
        self.loop = asyncio.get_running_loop()
        self.reader = hiredis.Reader()
        self.pending: deque[tuple[asyncio.Future[Any], float]] = deque()
        self.pushes = pushes
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
        futures = [self.loop.create_future() for _ in range(replies)]
        if futures:
            deadline = time.monotonic() + self.timeout
            self.pending.extend((future, deadline) for future in futures)
            if self._watchdog is None:
                self._watchdog = self.loop.call_later(self.timeout, self._check)
        self.transport.write(data)
        return futures

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        pending = self.pending
        while (reply := self.reader.gets()) is not False:
            if not pending:
                if self.pushes is not None:
                    self.pushes.put_nowait(reply)
                    continue
                self.fail(RespError(f"redis sent a reply nobody asked for: {reply!r:.80}"))
                return
            future, _ = pending.popleft()
            if future.done():  # its caller was cancelled
                continue
            if isinstance(reply, hiredis.ReplyError):
                future.set_exception(RespReplyError(str(reply)))
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
            if self.pushes is not None:
                self.pushes.put_nowait(error)  # wakes the subscriber waiting for a message
        while self.pending:
            future, _ = self.pending.popleft()
            if not future.done():
                future.set_exception(error)
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self.transport is not None:
            self.transport.abort()


async def _open(
    address: RedisAddress, timeout: float, pushes: asyncio.Queue[Any] | None = None
) -> _Connection:
    """Connect (TLS for rediss://), then AUTH and SELECT as the URL says, within `timeout`."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            _, connection = await loop.create_connection(
                lambda: _Connection(timeout, pushes),
                address.host,
                address.port,
                ssl=address.ssl_context,
                server_hostname=address.host if address.ssl_context is not None else None,
            )
            setup: list[tuple[Arg, ...]] = []
            if address.password is not None:
                login = (address.username,) if address.username else ()
                setup.append(("AUTH", *login, address.password))
            if address.db:
                setup.append(("SELECT", address.db))
            if setup:
                futures = connection.send(b"".join(pack(*c) for c in setup), len(setup))
                try:
                    for future in futures:
                        await future
                except BaseException as exc:
                    connection.fail(RespError(f"redis refused the connection setup: {exc}"))
                    raise
    except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
        raise RespError(f"cannot connect to redis at {address}: {exc}") from exc
    return connection


class RespClient:
    """Commands over one shared connection, opened on first use and after any failure."""

    def __init__(self, redis: RedisAddress | str, timeout_seconds: float) -> None:
        self.address = as_address(redis)
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

    async def run_script(self, script: Script, keys: list[Arg], args: list[Arg]) -> Any:
        """EVALSHA; when Redis does not know the script (restarted, flushed), load it once."""
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)
        try:
            return await self.execute(*command)
        except RespReplyError as exc:
            if not exc.reply.startswith("NOSCRIPT"):
                raise
        await self.execute("SCRIPT", "LOAD", script.source)
        return await self.execute(*command)

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
        self._connection = await _open(self.address, self.timeout)
        return self._connection

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


class RespSubscriber:
    """One connection in subscribe mode; after a failure the next `receive` reconnects and
    subscribes again, so a Redis restart costs only what was published while it was down."""

    def __init__(
        self,
        redis: RedisAddress | str,
        channel: str,
        timeout_seconds: float,
        health_seconds: float = SUBSCRIBER_HEALTH_SECONDS,
    ) -> None:
        self.address = as_address(redis)
        self.channel = channel
        self.timeout = timeout_seconds
        self.health_seconds = health_seconds
        self._connection: _Connection | None = None
        self._pushes: asyncio.Queue[Any] = asyncio.Queue()
        self._heard_at = 0.0
        self._pinged_at: float | None = None

    async def connect(self) -> None:
        """Subscribe, returning once Redis confirmed: nothing published after is missed.
        Raises RespError when Redis does not answer."""
        if self._connection is not None and self._connection.usable:
            return
        self._drop()
        pushes: asyncio.Queue[Any] = asyncio.Queue()
        connection = await _open(self.address, self.timeout, pushes)
        try:
            connection.send(pack("SUBSCRIBE", self.channel), 0)
            async with asyncio.timeout(SUBSCRIBE_TIMEOUT_SECONDS):
                reply = await pushes.get()
            if isinstance(reply, RespError):
                raise reply
            if isinstance(reply, hiredis.ReplyError):
                raise RespReplyError(str(reply))
            if not (isinstance(reply, list) and reply[:1] == [b"subscribe"]):
                raise RespError(f"redis answered SUBSCRIBE with {reply!r:.80}")
        except TimeoutError as exc:
            connection.fail(RespError("redis did not confirm SUBSCRIBE"))
            raise RespError(f"redis at {self.address} did not confirm SUBSCRIBE") from exc
        except BaseException:
            connection.fail(RespError("subscription abandoned"))
            raise
        self._connection, self._pushes = connection, pushes
        self._heard_at, self._pinged_at = time.monotonic(), None

    async def receive(self, wait: float) -> bytes | None:
        """The next message's data, or None when nothing came within `wait` seconds.

        Raises RespError when the connection failed or Redis stopped answering PINGs; the next
        call reconnects and re-subscribes.
        """
        await self.connect()
        connection = self._connection
        assert connection is not None
        try:
            reply = await asyncio.wait_for(self._pushes.get(), wait)
        except TimeoutError:
            self._check_health(connection)
            return None
        if isinstance(reply, RespError):
            self._drop()
            raise reply
        self._heard_at, self._pinged_at = time.monotonic(), None
        if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message":
            return cast("bytes", reply[2])
        return None  # a PING's pong, a subscribe confirmation

    def _check_health(self, connection: _Connection) -> None:
        """PING a quiet subscription; a PING unanswered for long means a dead connection."""
        now = time.monotonic()
        if self._pinged_at is not None and now - self._pinged_at > SUBSCRIBE_TIMEOUT_SECONDS:
            self._drop()
            raise RespError(f"redis did not answer PING within {SUBSCRIBE_TIMEOUT_SECONDS:.0f} s")
        if self._pinged_at is None and now - self._heard_at > self.health_seconds:
            connection.send(pack("PING"), 0)
            self._pinged_at = now

    def _drop(self) -> None:
        if self._connection is not None:
            self._connection.fail(RespError("subscription closed"))
            self._connection = None

    async def close(self) -> None:
        """Close the connection (Redis drops the subscription with it)."""
        self._drop()
