"""The cost of one cache round trip through each Redis client: resp.py, redis-py, coredis.

Run: `uv run python benchmarks/redis_clients.py [--redis-url redis://127.0.0.1:6379/0]`, or as
part of `benchmarks/api_load.py --redis-clients`. Without a URL a private redis-server is
started (scripts/test-services.sh). The scoring path's shape: many concurrent coroutines on one
event loop (uvloop, as under uvicorn), each doing a GET (a miss) then a SET ... PX. The figure is
this process's CPU time per command (Redis's own CPU is not counted), plus wall-clock commands/s.
Clients are measured in interleaved rounds within one run, so a busy shared machine slows all
three alike; each figure is the median over the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import uvloop

from leadscore.core.resp import RespClient

ROOT = Path(__file__).resolve().parents[1]
# Not the service's 0.25 s: redis-py opening 64 connections at once on a loaded machine missed
# that bound; the benchmark measures the cost per command, not the failure.
TIMEOUT = 2.0
Command = Callable[[str], Awaitable[Any]]


async def _resp(url: str, stack: AsyncExitStack) -> tuple[Command, Command]:
    client = RespClient(url, TIMEOUT)
    stack.push_async_callback(client.close)

    async def get(key: str) -> Any:
        return await client.execute("GET", key)

    async def set_(key: str) -> Any:
        return await client.execute("SET", key, b"x" * 200, "PX", 60_000)

    return get, set_


async def _redis_py(url: str, stack: AsyncExitStack) -> tuple[Command, Command]:
    from redis.asyncio import Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    # As the bus and limiter configured it: bounded, never retried, one pool per client.
    client = Redis.from_url(
        url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT, retry=Retry(NoBackoff(), 0)
    )
    stack.push_async_callback(client.aclose)

    async def get(key: str) -> Any:
        return await client.get(key)

    async def set_(key: str) -> Any:
        return await client.set(key, b"x" * 200, px=60_000)

    return get, set_


async def _coredis(url: str, stack: AsyncExitStack) -> tuple[Command, Command]:
    import coredis
    from coredis.retry import NoRetryPolicy

    # coredis 6 clients are async context managers (anyio task groups hold the connections).
    client = await stack.enter_async_context(
        coredis.Redis.from_url(
            url, stream_timeout=TIMEOUT, connect_timeout=TIMEOUT, retry_policy=NoRetryPolicy()
        )
    )

    async def get(key: str) -> Any:
        return await client.get(key)

    async def set_(key: str) -> Any:
        return await client.set(key, b"x" * 200, px=60_000)

    return get, set_


CLIENTS = {"resp.py": _resp, "redis-py": _redis_py, "coredis": _coredis}


async def _round(url: str, name: str, concurrency: int, commands: int) -> tuple[float, float]:
    """CPU µs per command and commands per second for one client at one concurrency."""
    prefix = f"bench-redis:{uuid.uuid4().hex}:"
    async with AsyncExitStack() as stack:
        get, set_ = await CLIENTS[name](url, stack)
        per_task = commands // (2 * concurrency)

        async def worker(w: int) -> None:
            for i in range(per_task):
                key = f"{prefix}{w}:{i}"
                await get(key)
                await set_(key)

        await asyncio.gather(*(worker(w) for w in range(concurrency)))  # warm: connections open
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        done = per_task * 2 * concurrency
        # Keys expire in a minute; delete them now so rounds do not grow Redis's memory.
        drop = RespClient(url, 5.0)
        try:
            keys = await drop.execute("KEYS", prefix + "*")
            for start in range(0, len(keys), 1000):
                await drop.execute("DEL", *keys[start : start + 1000])
        finally:
            await drop.close()
    return cpu * 1e6 / done, done / wall


def compare(url: str, rounds: int, commands: int, concurrencies: tuple[int, ...]) -> None:
    """Print the table: for each concurrency, each client's median CPU µs/command and rate."""
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"Redis clients, {commands:,} commands (GET miss + SET PX, 200 B) per round, "
          f"{rounds} interleaved rounds, uvloop; median (min-max) CPU µs per command")  # fmt: skip
    for concurrency in concurrencies:
        costs: dict[str, list[float]] = {name: [] for name in CLIENTS}
        rates: dict[str, list[float]] = {name: [] for name in CLIENTS}
        for _ in range(rounds):
            for name in CLIENTS:
                cost, rate = uvloop.run(_round(url, name, concurrency, commands))
                costs[name].append(cost)
                rates[name].append(rate)
        for name in CLIENTS:
            c, r = costs[name], rates[name]
            print(
                f"  {concurrency:>3} concurrent  {name:<9} {statistics.median(c):6.1f} µs "
                f"({min(c):.1f}-{max(c):.1f})  {statistics.median(r):>9,.0f} commands/s"
            )


def with_private_redis(run: Callable[[str], None]) -> None:
    """Start a redis-server of our own (scripts/test-services.sh), run, and stop it."""
    services = Path(tempfile.mkdtemp(prefix="bench-redis-", dir="/tmp"))
    script = str(ROOT / "scripts/test-services.sh")
    try:
        subprocess.run([script, "start", str(services)], check=True, capture_output=True)
        urls = dict(re.findall(r"export (\w+)=(\S+)", (services / "env").read_text()))
        run(urls["LEADSCORE_TEST_REDIS_URL"])
    finally:
        subprocess.run([script, "stop", str(services)], check=False, capture_output=True)
        shutil.rmtree(services, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis-url", help="default: start a private redis-server")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--commands", type=int, default=20_000)
    args = parser.parse_args()

    def run(url: str) -> None:
        compare(url, args.rounds, args.commands, (1, 64))

    if args.redis_url:
        run(args.redis_url)
    else:
        with_private_redis(run)


if __name__ == "__main__":
    main()
