"""Scoring throughput through nginx (the shipped deploy/nginx.conf) in front of two replicas,
against the same two replicas reached directly, in the same run; and live events through it.

Run: `uv run python benchmarks/nginx.py [--seconds 10] [--rounds 2]` (needs `wrk`, nginx,
and PostgreSQL + Redis binaries: scripts/test-services.sh starts private ones). Two
`leadscore serve` processes (one worker each) share PostgreSQL and Redis, as replicas do.
"Direct" runs one wrk per replica at the same time, each with half the connections, and adds
their rates; "via nginx" runs one wrk with all of them against nginx. Rounds alternate so
that both see the same machine. Target: via nginx ≥ 85 % of direct. Everything binds
127.0.0.1; everything runs on the same machine (wrk, nginx, replicas, PostgreSQL, Redis).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))
from tests.deploy.proxy import Nginx, nginx_binary  # noqa: E402

from api_load import Server, base_env, cli, wrk  # noqa: E402
from leadscore.engine.defaults import load_or_build_default  # noqa: E402
from ws_fanout import latency  # noqa: E402


def direct(urls: list[str], seconds: int, connections: int) -> float:
    """Requests/s of one wrk per replica, run together, each with its share of connections."""
    with ThreadPoolExecutor(len(urls)) as pool:
        runs = list(
            pool.map(lambda url: wrk(url, seconds, connections // len(urls), 1, "score.lua"), urls)
        )
    failed = sum(r["non_2xx"] for r in runs)
    if failed:
        print(f"  direct: {failed:.0f} non-2xx answers")
    return sum(r["rps"] for r in runs)


def via(url: str, seconds: int, connections: int) -> float:
    result = wrk(url, seconds, connections, 1, "score.lua")
    if result["non_2xx"]:
        print(f"  via nginx: {result['non_2xx']:.0f} non-2xx answers")
    return result["rps"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--ws-clients", type=int, nargs="+", default=[1, 100])
    parser.add_argument("--events", type=int, default=200)
    args = parser.parse_args()
    binary = nginx_binary()
    if binary is None or shutil.which("wrk") is None:
        raise SystemExit("needs nginx and wrk (apt-get install nginx wrk)")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start; "
          "wrk, nginx, both replicas, PostgreSQL and Redis share them")  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="bench-nginx-", dir="/tmp"))
    # Its own directory: the PostgreSQL user must reach it, and a mkdtemp parent is private.
    services = Path(tempfile.mkdtemp(prefix="bench-nginx-services-", dir="/tmp"))
    script = str(ROOT / "scripts" / "test-services.sh")
    subprocess.run([script, "start", str(services)], check=True, capture_output=True)
    replicas: list[Server] = []
    proxy: Nginx | None = None
    try:
        urls = dict(re.findall(r"export (\w+)=(\S+)", (services / "env").read_text()))
        env = base_env(work / "home")
        env["LEADSCORE_REDIS_URL"] = urls["LEADSCORE_TEST_REDIS_URL"]
        env["LEADSCORE_DATABASE_URL"] = urls["LEADSCORE_TEST_POSTGRES_URL"]
        key = cli(env, "keys", "create", "--team", "bench", "--role", "agent")
        env["LEADSCORE_BENCH_KEY"] = os.environ["LEADSCORE_BENCH_KEY"] = key
        load_or_build_default(work / "home")  # once, before two replicas wait for it
        replicas = [
            Server(env, workers=1, log=work / f"replica{i}.log", wait=300) for i in range(2)
        ]
        addresses = [r.url.removeprefix("http://") for r in replicas]
        proxy = Nginx(work / "nginx", addresses, binary)
        direct([r.url for r in replicas], 3, 8)  # warm-up: models, pools, caches
        via(proxy.url, 3, 8)
        for connections in args.connections:
            ratios = []
            for _ in range(args.rounds):
                straight = direct([r.url for r in replicas], args.seconds, connections)
                proxied = via(proxy.url, args.seconds, connections)
                ratios.append(proxied / straight)
                print(
                    f"POST /score, {connections} connections: direct {straight:,.0f} req/s, "
                    f"via nginx {proxied:,.0f} req/s, ratio {proxied / straight:.1%}"
                )
            print(f"  median ratio at {connections} connections: {statistics.median(ratios):.1%}"
                  " (target ≥ 85 %)")  # fmt: skip
        print("live events: publish → receipt, through nginx, then straight to one replica")
        for n in args.ws_clients:
            print("  via nginx:", end=" ", flush=True)
            asyncio.run(latency(proxy.url, key, n, args.events, 0.01))
            print("  direct   :", end=" ", flush=True)
            asyncio.run(latency(replicas[0].url, key, n, args.events, 0.01))
    finally:
        if proxy is not None:
            proxy.stop()
        for replica in replicas:
            replica.stop()
        subprocess.run([script, "stop", str(services)], check=False, capture_output=True)
        shutil.rmtree(services, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
