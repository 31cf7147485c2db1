"""The PostgreSQL and Redis servers the suite runs against are real and reachable."""

from __future__ import annotations

import uuid

import asyncpg
import redis.asyncio as aioredis

from .services import postgres_url, redis_url


async def test_postgres_answers_queries_and_keeps_rows() -> None:
    """select 1, then a temporary table created, filled, read back and dropped."""
    dsn = postgres_url().replace("postgresql+asyncpg://", "postgresql://", 1)
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        assert await conn.fetchval("select 1") == 1
        await conn.execute("create temporary table probe (id integer primary key, name text)")
        await conn.executemany(
            "insert into probe (id, name) values ($1, $2)", [(1, "alpha"), (2, "beta")]
        )
        rows = await conn.fetch("select id, name from probe order by id")
        assert [tuple(row) for row in rows] == [(1, "alpha"), (2, "beta")]
        await conn.execute("drop table probe")
        assert await conn.fetchval("select to_regclass('pg_temp.probe')") is None
    finally:
        await conn.close()


async def test_redis_sets_reads_and_deletes_a_key_with_ttl() -> None:
    """SET with a TTL, GET it back, DEL it."""
    client = aioredis.from_url(redis_url(), socket_timeout=10)
    key = f"leadscore:test:{uuid.uuid4().hex}"
    try:
        assert await client.ping()
        assert await client.set(key, "value", ex=60)
        assert await client.get(key) == b"value"
        assert 0 < await client.ttl(key) <= 60
        assert await client.delete(key) == 1
        assert await client.get(key) is None
    finally:
        await client.delete(key)
        await client.aclose()
