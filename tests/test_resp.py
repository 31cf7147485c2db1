"""The pipelined Redis connection against a real Redis: order, errors, cancellation, failures."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from leadscore.core.errors import ConfigurationError
from leadscore.core.resp import RespClient, RespError, pack
from tests.services import delete_prefixed, redis_url


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    name = f"leadscore-test:{uuid.uuid4().hex}:"
    yield name
    await delete_prefixed(redis_url(), name)


def test_commands_are_resp_arrays_of_bulk_strings() -> None:
    assert (
        pack("SET", "k", b"v\r\n", 5) == b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\r\n\r\n$1\r\n5\r\n"
    )


async def test_hundreds_of_concurrent_commands_each_get_their_own_reply(prefix: str) -> None:
    client = RespClient(redis_url(), timeout_seconds=2.0)
    try:

        async def round_trip(i: int) -> bytes | None:
            key = f"{prefix}{i}"
            assert await client.execute("SET", key, f"value-{i}", "PX", 60_000) == b"OK"
            reply: bytes | None = await client.execute("GET", key)
            return reply

        replies = await asyncio.gather(*(round_trip(i) for i in range(300)))
        assert replies == [f"value-{i}".encode() for i in range(300)]
        many = await client.execute_many([("GET", f"{prefix}{i}") for i in range(5)])
        assert many == [f"value-{i}".encode() for i in range(5)]
    finally:
        await client.close()


async def test_an_error_reply_fails_its_command_only(prefix: str) -> None:
    client = RespClient(redis_url(), timeout_seconds=2.0)
    try:
        await client.execute("SET", f"{prefix}text", "not a number")
        with pytest.raises(RespError, match="not an integer"):
            await client.execute("INCR", f"{prefix}text")
        assert await client.execute("GET", f"{prefix}text") == b"not a number"
    finally:
        await client.close()


async def test_a_cancelled_caller_does_not_shift_the_replies_of_others(prefix: str) -> None:
    client = RespClient(redis_url(), timeout_seconds=2.0)
    try:
        await client.execute("SET", f"{prefix}k", "mine")
        blocked = asyncio.ensure_future(client.execute("BLPOP", f"{prefix}empty", "0.2"))
        await asyncio.sleep(0.02)
        blocked.cancel()
        # Queued behind the blocking command on the same connection; its reply is skipped.
        assert await client.execute("GET", f"{prefix}k") == b"mine"
        assert blocked.cancelled()
    finally:
        await client.close()


async def test_a_stuck_connection_times_out_then_a_new_one_is_opened(prefix: str) -> None:
    client = RespClient(redis_url(), timeout_seconds=0.1)
    try:
        with pytest.raises(RespError, match="did not answer"):
            await client.execute("BLPOP", f"{prefix}empty", "1")  # holds the connection 1 s
        assert await client.execute("PING") == b"PONG"  # a fresh connection
    finally:
        await client.close()


async def test_a_connection_closed_by_the_server_fails_in_flight_commands_and_reconnects(
    prefix: str,
) -> None:
    client = RespClient(redis_url(), timeout_seconds=2.0)
    try:
        await client.execute("CLIENT", "SETNAME", f"{prefix.replace(':', '-')}victim")
        pending = asyncio.ensure_future(client.execute("BLPOP", f"{prefix}empty", "1"))
        await asyncio.sleep(0.02)
        admin = aioredis.from_url(redis_url())
        try:
            clients = await admin.client_list()
            [victim] = [c for c in clients if c["name"].endswith("victim")
                        and c["name"].startswith(prefix.replace(":", "-"))]  # fmt: skip
            await admin.client_kill_filter(_id=victim["id"])
        finally:
            await admin.aclose()
        with pytest.raises(RespError, match="connection lost"):
            await pending
        assert await client.execute("PING") == b"PONG"
    finally:
        await client.close()


async def test_the_database_number_of_the_url_is_selected(prefix: str) -> None:
    base = redis_url().rsplit("/", 1)[0]
    client = RespClient(f"{base}/3", timeout_seconds=2.0)
    admin = aioredis.from_url(f"{base}/3")
    try:
        await client.execute("SET", f"{prefix}db3", "here", "PX", 60_000)
        assert await admin.get(f"{prefix}db3") == b"here"
        await admin.delete(f"{prefix}db3")
    finally:
        await client.close()
        await admin.aclose()


def test_only_plain_redis_urls_are_accepted() -> None:
    with pytest.raises(ConfigurationError, match="redis://"):
        RespClient("rediss://127.0.0.1:6380/0", timeout_seconds=1.0)
