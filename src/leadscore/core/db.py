"""Database engines: SQLite (embedded default, WAL) or PostgreSQL, both through asyncio."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final, TypeVar

import asyncpg  # type: ignore[import-untyped]
import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

# Bounds so that no request waits on a dead database for long: a connection attempt, a
# checkout from a full pool, and one statement (generous: training reads whole histories).
CONNECT_TIMEOUT_SECONDS: Final = 1.0
POOL_TIMEOUT_SECONDS: Final = 1.0
COMMAND_TIMEOUT_SECONDS: Final = 60.0

#: What a lost, refused or timed-out database connection raises, raw or wrapped by SQLAlchemy.
CONNECTION_ERRORS: Final[tuple[type[Exception], ...]] = (
    OSError,  # ConnectionRefusedError, ConnectionResetError, TimeoutError (asyncpg's connect)
    sa_exc.DBAPIError,
    sa_exc.TimeoutError,  # no pooled connection within POOL_TIMEOUT_SECONDS
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08: the connection failed
    asyncpg.InterfaceError,  # a connection closed under a query
    # Class 57: shutting down or starting up (CannotConnectNow), sessions terminated by an
    # administrator or a crash, statements cancelled by a timeout.
    asyncpg.OperatorInterventionError,
)

# OSErrors of files, not of sockets: a missing model file is not a database outage.
_FILE_ERRORS: Final = (
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)


def is_connection_error(exc: BaseException) -> bool:
    """Whether `exc` means the database is unreachable (transient) rather than that it refused
    this statement (an integrity or data error, which retrying never fixes)."""
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated or isinstance(
            exc, sa_exc.OperationalError | sa_exc.InterfaceError
        ):
            return True
        return exc.orig is not None and is_connection_error(exc.orig)
    if isinstance(exc, sa_exc.SQLAlchemyError) and not isinstance(exc, sa_exc.TimeoutError):
        return False
    if isinstance(exc, _FILE_ERRORS):
        return False
    if isinstance(exc, CONNECTION_ERRORS):
        return True
    # The adapter wraps asyncpg's errors: the original is the cause.
    cause = exc.__cause__
    return cause is not None and cause is not exc and is_connection_error(cause)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


# JSON columns hold whole score results: orjson keeps their encoding off the hot path.
_JSON: dict[str, Any] = {"json_serializer": _dumps, "json_deserializer": orjson.loads}


def is_sqlite(url: str) -> bool:
    """SQLite needs its own pragmas and a file path that exists."""
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(url: str) -> AsyncEngine:
    """An engine tuned per backend: WAL + foreign keys on SQLite, a small pool on PostgreSQL."""
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 10}, **_JSON)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    # pre_ping replaces connections that died with the server: recovery needs no restart.
    return create_async_engine(
        url,
        pool_size=10,
        max_overflow=10,
        pool_pre_ping=True,
        pool_timeout=POOL_TIMEOUT_SECONDS,
        connect_args={
            "timeout": CONNECT_TIMEOUT_SECONDS,
            "command_timeout": COMMAND_TIMEOUT_SECONDS,
        },
        **_JSON,
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the writer; NORMAL syncs at checkpoints, so a process
    # crash loses nothing committed (a power cut may lose the last commits).
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


T = TypeVar("T")


class SqliteThread:
    """The same SQLite file through a synchronous engine, used from one thread of its own: a
    short unit of work on a hot path costs one thread hop, where aiosqlite hops once per
    driver call (a one-row insert and commit: 0.7 ms here, ~4 ms through the async engine)."""

    @classmethod
    def of(cls, url: str) -> SqliteThread | None:
        """One for a SQLite file; None for PostgreSQL or an in-memory database (another
        engine would not see it)."""
        if not is_sqlite(url) or make_url(url).database in (None, "", ":memory:"):
            return None
        return cls(url)

    def __init__(self, url: str) -> None:
        sync_url = make_url(url).set(drivername="sqlite")
        self._engine = sa.create_engine(sync_url, connect_args={"timeout": 10}, **_JSON)
        event.listen(self._engine, "connect", _sqlite_pragmas)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-direct")

    async def run(self, work: Callable[[sa.Connection], T]) -> T:
        """`work` in one transaction on the thread: committed if it returns, else rolled back."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._unit, work)

    def _unit(self, work: Callable[[sa.Connection], T]) -> T:
        with self._engine.begin() as connection:
            return work(connection)

    def close(self) -> None:
        """Finish the work queued, then release the file."""
        self._thread.shutdown(wait=True)
        self._engine.dispose()


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions whose objects stay readable after commit (no lazy reloads in async code)."""
    return async_sessionmaker(engine, expire_on_commit=False)


_AFTER_COMMIT: Final = "leadscore.after_commit"
_ON_ROLLBACK: Final = "leadscore.on_rollback"


def after_commit(session: AsyncSession, action: Callable[[], Awaitable[None] | None]) -> None:
    """Run `action` once the session's unit of work has committed (never if it rolls back):
    what other workers or tasks must see only once it is durable (a job, a cache eviction)."""
    session.info.setdefault(_AFTER_COMMIT, []).append(action)


def on_rollback(session: AsyncSession, action: Callable[[], object]) -> None:
    """Run `action` if the session's unit of work rolls back: undo what lives outside the
    database (a file the work would have owned)."""
    session.info.setdefault(_ON_ROLLBACK, []).append(action)


@asynccontextmanager
async def transaction(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One unit of work: committed once when the block ends, rolled back if it raises.

    The request session (`deps.SessionDep`), each CLI command and each background job open
    one; services only receive the session.
    """
    async with sessions() as session:
        try:
            async with session.begin():
                yield session
        except BaseException:
            for undo in session.info.pop(_ON_ROLLBACK, ()):
                undo()
            raise
        for action in session.info.pop(_AFTER_COMMIT, ()):
            done = action()
            if inspect.isawaitable(done):
                await done
