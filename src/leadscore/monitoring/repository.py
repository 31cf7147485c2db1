"""The health check's own query: a real round trip to the database."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


async def ping(session: AsyncSession) -> None:
    """A real round trip to the database."""
    await session.execute(text("SELECT 1"))
