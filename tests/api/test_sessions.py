"""One commit boundary per request: a route's writes commit before its reply, all together,
or not at all; on a real server and both backends, with real HTTP clients."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import Session

from leadscore.auth import repository as auth_repo
from leadscore.core.db import after_commit, on_rollback, transaction

from .conftest import ServerThread

Headers = Callable[[str], dict[str, str]]
TEAM = "/api/v1/teams/me"
KEYS = "/api/v1/auth/keys"


class _LostAtCommit(Session):
    """A session whose commit fails as if the connection dropped at that moment."""


@event.listens_for(_LostAtCommit, "before_commit")
def _drop(_session: Session) -> None:
    raise OperationalError("COMMIT", {}, ConnectionResetError("connection reset by peer"))


@contextlib.contextmanager
def commits_fail(server: ServerThread) -> Iterator[None]:
    """Every request's commit fails while this is on; background writers are unaffected."""
    services = server.services
    healthy = services.sessions
    services.sessions = async_sessionmaker(
        services.engine, expire_on_commit=False, sync_session_class=_LostAtCommit
    )
    try:
        yield
    finally:
        services.sessions = healthy


def _commission(server: ServerThread, name: str) -> Any:
    """The team's stored commission rate, read through a connection of its own."""

    async def read() -> Any:
        async with transaction(server.services.sessions) as session:
            team = await auth_repo.team_by_name(session, name)
            assert team is not None
            return team.commission_rate

    return server.call(read())


def test_a_reply_comes_after_its_commit(
    server: ServerThread, client: httpx.Client, as_role: Headers
) -> None:
    admin = as_role("globex-admin")
    for rate in (0.021, 0.034):
        changed = client.patch(TEAM, json={"commission_rate": rate}, headers=admin)
        assert changed.status_code == 200, changed.text
        assert _commission(server, "globex") == rate  # durable the moment the 200 arrived


def test_a_commit_that_fails_answers_503_and_nothing_is_kept_or_acted_on(
    server: ServerThread, client: httpx.Client, as_role: Headers
) -> None:
    admin = as_role("globex-admin")
    before = client.get(TEAM, headers=admin).json()
    spare = client.post(KEYS, json={"name": "spare", "role": "viewer"}, headers=admin).json()
    keys_before = client.get(KEYS, headers=admin).json()
    with commits_fail(server):
        changed = client.patch(TEAM, json={"commission_rate": 0.0789}, headers=admin)
        created = client.post(KEYS, json={"name": "lost", "role": "viewer"}, headers=admin)
        revoked = client.delete(f"{KEYS}/{spare['id']}", headers=admin)
    for answer in (changed, created, revoked):
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"] == "database_unavailable"
        assert int(answer.headers["retry-after"]) >= 1
    assert client.get(TEAM, headers=admin).json() == before
    assert client.get(KEYS, headers=admin).json() == keys_before
    # The revocation was rolled back: the key still works.
    assert client.get(TEAM, headers={"X-API-Key": spare["key"]}).status_code == 200


def test_after_commit_runs_only_once_committed_and_on_rollback_only_on_failure(
    server: ServerThread,
) -> None:
    seen: list[str] = []

    async def units() -> None:
        async with transaction(server.services.sessions) as session:
            after_commit(session, lambda: seen.append("committed"))
            on_rollback(session, lambda: seen.append("undone"))
            assert seen == []  # nothing runs before the commit
        with pytest.raises(RuntimeError):
            await failing()

    async def failing() -> None:
        async with transaction(server.services.sessions) as session:
            after_commit(session, lambda: seen.append("never"))
            on_rollback(session, lambda: seen.append("rolled back"))
            raise RuntimeError("the work failed")

    server.call(units())
    assert seen == ["committed", "rolled back"]
