"""The one Redis client against real Redis servers: order, errors, cancellation, failures,
scripts, pub/sub across a restart, and TLS."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from leadscore.core.errors import ConfigurationError
from leadscore.core.resp import (
    RedisAddress,
    RespClient,
    RespError,
    RespReplyError,
    RespSubscriber,
    Script,
    pack,
)
from tests.services import dead_port, delete_prefixed, redis_url


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


class PrivateRedis:
    """A redis-server of this test's own (plain or TLS), so it can be stopped and restarted."""

    def __init__(self, root: Path, tls: Path | None = None) -> None:
        assert shutil.which("redis-server"), "redis-server is missing (.ci/run installs it)"
        self.root, self.tls, self.port = root, tls, dead_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.starts += 1
        log = self.root / f"redis-{self.starts}.log"
        ports = ["--port", str(self.port)]
        if self.tls is not None:
            ports = ["--port", "0", "--tls-port", str(self.port),
                     "--tls-cert-file", str(self.tls / "server.pem"),
                     "--tls-key-file", str(self.tls / "server.key"),
                     "--tls-ca-cert-file", str(self.tls / "ca.pem"),
                     "--tls-auth-clients", "no"]  # fmt: skip
        self.process = subprocess.Popen(
            ["redis-server", *ports, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.root), "--logfile", str(log)],
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while "Ready to accept connections" not in (log.read_text() if log.exists() else ""):
            assert self.process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "redis did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """Redis on TLS only, its certificate (for 127.0.0.1) signed by a CA made for this test."""
    assert shutil.which("openssl"), (
        "openssl is missing (.ci/run installs it: apt-get install openssl)"
    )
    certs = tmp_path / "certs"
    certs.mkdir()
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-subj", "/CN=leadscore test CA",
             "-keyout", certs / "ca.key", "-out", certs / "ca.pem")  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
             "-keyout", certs / "server.key", "-out", certs / "server.csr")  # fmt: skip
    (certs / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", certs / "server.csr", "-CA", certs / "ca.pem",
             "-CAkey", certs / "ca.key", "-CAcreateserial", "-days", "1",
             "-extfile", certs / "san.ext", "-out", certs / "server.pem")  # fmt: skip
    server = PrivateRedis(tmp_path, tls=certs)
    server.start()
    yield server
    server.stop()


async def test_a_script_unknown_to_redis_is_loaded_once_then_run_by_its_sha(prefix: str) -> None:
    client = RespClient(redis_url(), timeout_seconds=2.0)
    script = Script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    try:
        await client.execute("SCRIPT", "FLUSH")  # as after a Redis restart: no script cached
        assert await client.run_script(script, [f"{prefix}n"], [5]) == 5
        assert await client.execute("SCRIPT", "EXISTS", script.sha) == [1]
        assert await client.run_script(script, [f"{prefix}n"], [2]) == 7
        broken = Script("return redis.call('INCRBY', KEYS[1], 'x')")
        with pytest.raises(RespReplyError, match="not an integer"):
            await client.run_script(broken, [f"{prefix}n"], [])
    finally:
        await client.close()


async def test_the_client_reconnects_after_redis_restarts(private_redis: PrivateRedis) -> None:
    client = RespClient(private_redis.url, timeout_seconds=0.5)
    try:
        assert await client.execute("SET", "k", "before") == b"OK"
        private_redis.stop()
        with pytest.raises(RespError, match=r"connection lost|cannot connect"):
            await client.execute("GET", "k")
        with pytest.raises(RespError, match="cannot connect"):
            await client.execute("GET", "k")  # down: fails at once, no hang
        private_redis.start()
        assert await client.execute("GET", "k") is None  # a fresh, empty server
        assert await client.execute("SET", "k", "after") == b"OK"
    finally:
        await client.close()


async def _next_message(subscriber: RespSubscriber, seconds: float = 5.0) -> bytes:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        data = await subscriber.receive(wait=0.2)
        if data is not None:
            return data
    raise AssertionError("no message")


async def test_a_subscriber_gets_messages_in_order_and_resubscribes_after_a_restart(
    private_redis: PrivateRedis,
) -> None:
    publisher = RespClient(private_redis.url, timeout_seconds=0.5)
    subscriber = RespSubscriber(private_redis.url, "events", timeout_seconds=0.5)
    try:
        await subscriber.connect()
        for i in range(50):
            assert await publisher.execute("PUBLISH", "events", b"m\r\n%d" % i) == 1
        await publisher.execute("PUBLISH", "elsewhere", b"not ours")
        assert [await _next_message(subscriber) for _ in range(50)] == [
            b"m\r\n%d" % i for i in range(50)
        ]
        private_redis.stop()
        with pytest.raises(RespError):  # the lost connection is reported, not swallowed
            await _next_message(subscriber)
        with pytest.raises(RespError, match="cannot connect"):
            await subscriber.receive(wait=0.2)
        private_redis.start()
        await subscriber.connect()  # subscribes again on the new server
        assert await publisher.execute("PUBLISH", "events", b"after") == 1
        assert await _next_message(subscriber) == b"after"
    finally:
        await subscriber.close()
        await publisher.close()


async def test_a_quiet_subscription_is_pinged_and_stays_up(private_redis: PrivateRedis) -> None:
    subscriber = RespSubscriber(
        private_redis.url, "events", timeout_seconds=0.5, health_seconds=0.1
    )
    publisher = RespClient(private_redis.url, timeout_seconds=0.5)
    try:
        await subscriber.connect()
        for _ in range(6):  # several PING / pong rounds, none mistaken for a message
            assert await subscriber.receive(wait=0.1) is None
        clients = (await publisher.execute("CLIENT", "LIST")).decode().splitlines()
        assert any(" sub=1 " in c and " cmd=ping " in c for c in clients), clients
        await publisher.execute("PUBLISH", "events", b"still here")
        assert await _next_message(subscriber) == b"still here"
    finally:
        await subscriber.close()
        await publisher.close()


async def test_rediss_talks_tls_to_a_server_signed_by_the_configured_ca(
    tls_redis: PrivateRedis,
) -> None:
    assert tls_redis.tls is not None
    address = RedisAddress.parse(tls_redis.url, ca_file=tls_redis.tls / "ca.pem")
    client = RespClient(address, timeout_seconds=2.0)
    subscriber = RespSubscriber(address, "events", timeout_seconds=2.0)
    try:
        assert await client.execute("SET", "k", b"secret\x00bytes") == b"OK"
        assert await client.execute("GET", "k") == b"secret\x00bytes"
        await subscriber.connect()
        assert await client.execute("PUBLISH", "events", b"over tls") == 1
        assert await _next_message(subscriber) == b"over tls"
    finally:
        await subscriber.close()
        await client.close()


async def test_rediss_refuses_a_server_whose_certificate_it_cannot_verify(
    tls_redis: PrivateRedis,
) -> None:
    client = RespClient(tls_redis.url, timeout_seconds=2.0)  # the system CAs: not ours
    try:
        with pytest.raises(RespError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify"):
            await client.execute("PING")
    finally:
        await client.close()
    plain = RespClient(f"redis://127.0.0.1:{tls_redis.port}/0", timeout_seconds=0.5)
    try:
        with pytest.raises(RespError):  # plain RESP to a TLS port gets no answer
            await plain.execute("PING")
    finally:
        await plain.close()


def test_urls_are_parsed_once_and_bad_ones_refused(tmp_path: Path) -> None:
    address = RedisAddress.parse("rediss://user:p%40ss@redis.example:6390/2")
    assert (address.host, address.port, address.db) == ("redis.example", 6390, 2)
    assert (address.username, address.password, address.tls) == ("user", "p@ss", True)
    assert address.ssl_context is not None
    assert "p@ss" not in f"{address} {address!r}"
    assert RedisAddress.parse("redis://127.0.0.1").ssl_context is None
    with pytest.raises(ConfigurationError, match="redis:// or rediss://"):
        RedisAddress.parse("http://127.0.0.1:6379/0")
    with pytest.raises(ConfigurationError, match="redis://host:port/db"):
        RedisAddress.parse("redis://127.0.0.1:6379/cache")
    with pytest.raises(ConfigurationError, match="never uses TLS"):
        RedisAddress.parse("redis://127.0.0.1:6379/0", ca_file=tmp_path / "ca.pem")
    with pytest.raises(ConfigurationError, match="cannot read the Redis CA file"):
        RedisAddress.parse("rediss://127.0.0.1:6379/0", ca_file=tmp_path / "missing.pem")
    (tmp_path / "garbage.pem").write_text("not a certificate")
    with pytest.raises(ConfigurationError, match="cannot read the Redis CA file"):
        RedisAddress.parse("rediss://127.0.0.1:6379/0", ca_file=tmp_path / "garbage.pem")
