"""PostgreSQL stopped under load: what two workers answer, how fast, and how much they log.

Run: `uv run python benchmarks/faults.py [--outage 40] [--src DIR]` (PostgreSQL and Redis
binaries: `scripts/test-services.sh` starts private ones). Clients score, read the latest
score, the history and the model status, and use a key no worker has cached, while PostgreSQL
is stopped for `--outage` seconds and started again. `--src` runs the server from another
source tree (e.g. `git archive <commit> src | tar -x -C /tmp/old`, then `--src /tmp/old/src`)
to compare. Everything binds to 127.0.0.1. Prints figures; BENCHMARKS.md records them.
"""

from __future__ import annotations

import argparse
import copy
import glob
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from api_load import Server, cli
from leadscore.scoring.schemas import EXAMPLE_LEAD

ROOT = Path(__file__).resolve().parents[1]
SCORE = "/api/v1/ml/score"
Request = Callable[[httpx.Client, int], tuple[str, httpx.Response]]


def as_postgres(*command: str) -> list[str]:
    """PostgreSQL's tools refuse root: run them as the data directory's owner."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else list(command)


def pg_ctl(services: Path, port: int, action: str) -> None:
    binary = (sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True) or ["pg_ctl"])[0]
    data = str(services / "pg" / "data")
    extra = ["-m", "fast"] if action == "stop" else ["-l", str(services / "pg" / "postgres.log"),
                                                     "-o", f"-p {port}"]  # fmt: skip
    subprocess.run(as_postgres(binary, "-D", data, *extra, "-w", "-t", "60", action), check=True,
                   capture_output=True)  # fmt: skip


def lead(lead_id: str) -> dict[str, object]:
    body = copy.deepcopy(EXAMPLE_LEAD)
    body["lead_id"] = lead_id
    return body


class Run:
    """Client threads looping over requests; every answer kept as (time, route, status, s)."""

    def __init__(self, url: str, requests: list[Request]) -> None:
        self.url = url
        self.answers: list[tuple[float, str, int, float]] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._loop, args=(r,), daemon=True)
                        for r in requests]  # fmt: skip

    def _loop(self, request: Request) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            i = 0
            while not self.stop.is_set():
                i += 1
                started = time.monotonic()
                try:
                    name, response = request(client, i)
                    status = response.status_code
                except httpx.TransportError as exc:
                    name, status = f"({type(exc).__name__})", 0
                self.answers.append((started, name, status, time.monotonic() - started))


def measure(outage: float, src: str | None) -> None:
    services = Path(tempfile.mkdtemp(prefix="bench-faults-", dir="/tmp"))
    home = Path(tempfile.mkdtemp(prefix="bench-faults-home-"))
    subprocess.run([str(ROOT / "scripts/test-services.sh"), "start", str(services)], check=True,
                   capture_output=True)  # fmt: skip
    process: subprocess.Popen[str] | None = None
    try:
        urls = dict(re.findall(r"export (\w+)=(\S+)", (services / "env").read_text()))
        database = urls["LEADSCORE_TEST_POSTGRES_URL"]
        pg_port = int(database.rsplit(":", 1)[1].split("/")[0])
        env = {
            **os.environ,
            "LEADSCORE_HOME": str(home),
            "LEADSCORE_JWT_SECRET": secrets.token_urlsafe(48),
            "LEADSCORE_RATE_LIMIT_PER_MINUTE": "1000000000",
            "LEADSCORE_DATABASE_URL": database,
            "LEADSCORE_REDIS_URL": urls["LEADSCORE_TEST_REDIS_URL"],
            "OMP_NUM_THREADS": "1",
        }
        if src:
            env["PYTHONPATH"] = src
        cli(env, "db", "upgrade")
        agent = {"X-API-Key": cli(env, "keys", "create", "--team", "bench", "--role", "agent")}
        fresh = {"X-API-Key": cli(env, "keys", "create", "--team", "spare", "--role", "agent")}
        log = home / "server.log"
        server = Server(env, 2, log=log, wait=180)
        process, url = server.process, server.url
        for i in range(4):
            httpx.post(url + SCORE, json=lead(f"seed-{i}"), headers=agent).raise_for_status()
        down = threading.Event()

        def score(client: httpx.Client, i: int) -> tuple[str, httpx.Response]:
            return "POST /score", client.post(SCORE, json=lead(f"load-{i}"), headers=agent)

        def latest(client: httpx.Client, i: int) -> tuple[str, httpx.Response]:
            return "GET /score/{id}", client.get(f"{SCORE}/seed-{i % 4}", headers=agent)

        def history(client: httpx.Client, i: int) -> tuple[str, httpx.Response]:
            return "GET /score/{id}/history", client.get(
                f"{SCORE}/seed-{i % 4}/history", headers=agent
            )

        def status(client: httpx.Client, i: int) -> tuple[str, httpx.Response]:
            return "GET /model/status", client.get("/api/v1/ml/model/status", headers=agent)

        def new_key(client: httpx.Client, i: int) -> tuple[str, httpx.Response]:
            time.sleep(0.05)
            if not down.is_set():
                return latest(client, i)
            return "POST /score (uncached key)", client.post(
                SCORE, json=lead(f"fresh-{i}"), headers=fresh
            )

        run = Run(url, [score, score, latest, history, status, new_key])
        for thread in run.threads:
            thread.start()
        time.sleep(3.0)
        log_before = log.stat().st_size
        down_at = time.monotonic()
        pg_ctl(services, pg_port, "stop")
        down.set()
        time.sleep(outage)
        pg_ctl(services, pg_port, "start")
        up_at = time.monotonic()
        log_outage = log.stat().st_size - log_before
        recovered = None
        while time.monotonic() - up_at < 120:
            recent = {n for t, n, s, _ in run.answers[-200:] if s == 200 and t > up_at}
            if {"POST /score", "GET /score/{id}/history", "GET /model/status"} <= recent:
                recovered = time.monotonic() - up_at
                break
            time.sleep(0.2)
        time.sleep(2.0)
        run.stop.set()
        for thread in run.threads:
            thread.join(timeout=60)
        during = [a for a in run.answers if down_at <= a[0] < up_at]
        print(f"PostgreSQL stopped {up_at - down_at:.1f} s under load, 2 workers"
              f"{' (server from ' + src + ')' if src else ''}")  # fmt: skip
        by_route: dict[str, Counter[int]] = {}
        for _, name, code, _ in during:
            by_route.setdefault(name, Counter())[code] += 1
        for name, counts in sorted(by_route.items()):
            worst = max(s for _, n, _, s in during if n == name)
            print(f"  {name:<28} {dict(sorted(counts.items()))}  worst {worst * 1000:,.0f} ms")
        statuses = Counter(code for _, _, code, _ in run.answers)
        print(f"  all answers, before/during/after: {dict(sorted(statuses.items()))}")
        worst = max((s for _, _, _, s in during), default=0.0)
        print(f"  worst latency during the outage: {worst * 1000:,.0f} ms")
        after = f"{recovered:.1f} s after the restart" if recovered is not None else "NO"
        print(f"  every route answering 200 again: {after}")
        text = log.read_text(errors="replace")
        print(f"  server log during the outage: {log_outage:,} bytes; whole run: "
              f"{len(text.encode()):,} bytes, {text.count('Traceback')} tracebacks")  # fmt: skip
    finally:
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
        subprocess.run([str(ROOT / "scripts/test-services.sh"), "stop", str(services)],
                       capture_output=True)  # fmt: skip
        shutil.rmtree(services, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--outage", type=float, default=40.0, help="seconds PostgreSQL is down")
    parser.add_argument("--src", help="run the server from this source tree (PYTHONPATH)")
    args = parser.parse_args()
    measure(args.outage, args.src)


if __name__ == "__main__":
    main()
