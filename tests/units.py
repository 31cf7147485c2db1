"""Services called the way a CLI command calls them: each call its own unit of work."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadscore.core.db import transaction


class Committing:
    """Wraps a service whose methods take the session first: `await wrapped.method(...)` runs
    `method(session, ...)` in a transaction of its own, committed before it returns."""

    def __init__(self, service: Any, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.service = service
        self.sessions = sessions

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self.service, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            async with transaction(self.sessions) as session:
                return await method(session, *args, **kwargs)

        return call
