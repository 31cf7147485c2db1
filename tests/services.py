"""Addresses of the real PostgreSQL and Redis servers that `make test` starts for the suite."""

from __future__ import annotations

import os
import socket

import pytest

POSTGRES_URL_VAR = "LEADSCORE_TEST_POSTGRES_URL"
REDIS_URL_VAR = "LEADSCORE_TEST_REDIS_URL"


def _service_url(variable: str, service: str) -> str:
    """The URL in `variable`; skip the test without it, or fail under CI."""
    url = os.environ.get(variable, "").strip()
    if url:
        return url
    message = (
        f"{variable} is not set: no {service} server for this test; "
        "`make test` starts one (scripts/test-services.sh)"
    )
    if os.environ.get("CI"):
        raise RuntimeError(f"{message}; CI must never skip real-database tests")
    pytest.skip(message)


def postgres_url() -> str:
    """SQLAlchemy URL (postgresql+asyncpg://...) of the test PostgreSQL database."""
    return _service_url(POSTGRES_URL_VAR, "PostgreSQL")


def redis_url() -> str:
    """URL (redis://...) of the test Redis server."""
    return _service_url(REDIS_URL_VAR, "Redis")


async def reset_postgres(url: str) -> None:
    """Drop everything in the test database's public schema: each user starts from nothing."""
    import asyncpg

    connection = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        await connection.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    finally:
        await connection.close()


def dead_port() -> int:
    """A loopback port nothing listens on: bound by the OS, then released."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def delete_prefixed(url: str, prefix: str) -> None:
    """Remove only one test's keys, so tests sharing one Redis never touch each other's."""
    from redis.asyncio import Redis

    admin = Redis.from_url(url)
    try:
        keys = [key async for key in admin.scan_iter(match=prefix + "*")]
        if keys:
            await admin.delete(*keys)
    finally:
        await admin.aclose()
