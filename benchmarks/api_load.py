"""HTTP benchmarks of the scoring API with wrk: latency, throughput, batch, memory over time.

Run: `uv run python benchmarks/api_load.py [--soak-seconds 300] [--redis-clients]` (needs `wrk`,
and `redis-server` + PostgreSQL binaries for the two-worker run: `scripts/test-services.sh`
provides them). `--redis-clients` first compares resp.py, redis-py and coredis on a private Redis
(benchmarks/redis_clients.py). Everything binds to 127.0.0.1. Prints figures; BENCHMARKS.md
records them.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import redis_clients

ROOT = Path(__file__).resolve().parents[1]
WRK = ROOT / "benchmarks" / "wrk"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli(env: dict[str, str], *args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "leadscore", *args], env=env, capture_output=True, text=True,
        check=True,
    ).stdout.strip()  # fmt: skip


class Server:
    """`leadscore serve` in the background, on a free loopback port."""

    def __init__(
        self, env: dict[str, str], workers: int, log: Path | None = None, wait: float = 120
    ) -> None:
        """Start and wait until healthy; `log` keeps the server's stderr in that file."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        sink = log.open("w") if log is not None else subprocess.PIPE
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "leadscore", "serve", "--workers", str(workers),
                 "--port", str(self.port)],
                env=env, stdout=subprocess.DEVNULL, stderr=sink, text=True,
            )  # fmt: skip
        finally:
            if log is not None and not isinstance(sink, int):
                sink.close()  # the child holds its own copy of the descriptor
        deadline = time.monotonic() + wait
        while True:
            try:
                if httpx.get(f"{self.url}/api/v1/ml/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()  # never leave a half-started server behind
                raise RuntimeError(self.errors()[-2000:])
            time.sleep(0.2)

    def errors(self) -> str:
        """What the server wrote on stderr (its log file, or the pipe once it has exited)."""
        if self.log is not None:
            return self.log.read_text(errors="replace")
        return self.process.communicate()[1]

    def worker_pids(self) -> list[int]:
        out = subprocess.run(
            ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True
        ).stdout.split()
        # uvicorn with several workers: the parent spawns them (and a resource tracker).
        workers = [int(p) for p in out if "spawn_main" in _cmdline(int(p))]
        return workers or [self.process.pid]

    def stop(self) -> None:
        self.process.terminate()
        self.process.communicate(timeout=30)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except OSError:
        return ""


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of processes (and their reaped children), from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total / ticks


def pids_named(name: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", name], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wrk(
    url: str, seconds: int, connections: int, threads: int, script: str | None
) -> dict[str, float]:
    """Run wrk and parse its latency distribution (ms) and requests/s."""
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script:
        command += ["-s", str(WRK / script)]
    run = subprocess.run([*command, url], capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise RuntimeError(
            f"wrk failed ({run.returncode}): {run.stderr.strip()} {run.stdout[-500:]}"
        )
    out = run.stdout
    result: dict[str, float] = {}
    for pct, value, unit in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M):
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
        result[f"p{pct}"] = float(value) * scale
    result["rps"] = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non_2xx"] = float(errors.group(1)) if errors else 0.0
    sockets = re.search(r"Socket errors: (.*)", out)
    if sockets:
        print(f"  wrk socket errors: {sockets.group(1)}")
    return result


def show(name: str, r: dict[str, float]) -> None:
    print(
        f"{name:<46} p50 {r['p50']:.3f} ms  p90 {r['p90']:.3f} ms  p99 {r['p99']:.3f} ms  "
        f"{r['rps']:,.0f} req/s  non-2xx {int(r['non_2xx'])}"
    )


def base_env(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "LEADSCORE_HOME": str(home),
        "LEADSCORE_JWT_SECRET": secrets.token_urlsafe(48),
        "LEADSCORE_RATE_LIMIT_PER_MINUTE": "1000000000",
        "OMP_NUM_THREADS": "1",
    }


def single_worker(home: Path, seconds: int) -> None:
    env = base_env(home)
    env["LEADSCORE_BENCH_KEY"] = cli(env, "keys", "create", "--team", "bench", "--role", "agent")
    os.environ["LEADSCORE_BENCH_KEY"] = env["LEADSCORE_BENCH_KEY"]
    server = Server(env, workers=1)
    try:
        wrk(server.url, 3, 1, 1, "score.lua")  # warm-up
        score = wrk(server.url, seconds, 1, 1, "score.lua")
        health = wrk(f"{server.url}/api/v1/ml/health", seconds, 1, 1, None)
        batch = wrk(server.url, seconds, 1, 1, "batch.lua")
        show("POST /score, 1 connection (explanations)", score)
        show("GET /health, 1 connection", health)
        print(f"{'':<46} score p50 / health p50 = {score['p50'] / health['p50']:.2f}")
        show("POST /batch-score 100 leads, 1 connection", batch)
        print(f"{'':<46} = {batch['rps'] * 100:,.0f} leads/s")
        performance = httpx.get(
            f"{server.url}/api/v1/ml/metrics/performance",
            headers={"X-API-Key": env["LEADSCORE_BENCH_KEY"]},
        ).json()
        print(f"service-side per-lead latency: {performance['latency_ms']}")
    finally:
        server.stop()


def two_workers(home: Path, seconds: int, soak: int) -> None:
    services = Path(tempfile.mkdtemp(prefix="bench-services-", dir="/tmp"))
    subprocess.run([str(ROOT / "scripts/test-services.sh"), "start", str(services)], check=True,
                   capture_output=True)  # fmt: skip
    try:
        urls = dict(re.findall(r"export (\w+)=(\S+)", (services / "env").read_text()))
        env = base_env(home)
        env["LEADSCORE_REDIS_URL"] = urls["LEADSCORE_TEST_REDIS_URL"]
        env["LEADSCORE_DATABASE_URL"] = urls["LEADSCORE_TEST_POSTGRES_URL"]
        env["LEADSCORE_BENCH_KEY"] = cli(
            env, "keys", "create", "--team", "bench", "--role", "agent"
        )
        os.environ["LEADSCORE_BENCH_KEY"] = env["LEADSCORE_BENCH_KEY"]
        server = Server(env, workers=2)
        try:
            wrk(server.url, 3, 8, 1, "score.lua")
            groups = {
                "workers": server.worker_pids(),
                "postgres": pids_named("postgres"),
                "redis": pids_named("redis-server"),
            }
            for connections in (8, 16, 32, 64):
                before = {k: cpu_seconds(v) for k, v in groups.items()}
                wrk_before = os.times().children_user + os.times().children_system
                result = wrk(server.url, seconds, connections, 1, "score.lua")
                show(f"2 workers, PostgreSQL+Redis, {connections} connections", result)
                spent = {k: cpu_seconds(v) - before[k] for k, v in groups.items()}
                spent["wrk"] = os.times().children_user + os.times().children_system - wrk_before
                requests = result["rps"] * seconds
                print(f"{'':<46} CPU per score: " + ", ".join(
                    f"{k} {v * 1e6 / requests:.0f} us" for k, v in spent.items()
                ) + f"; total {sum(spent.values()) * 1e6 / requests:.0f} us")  # fmt: skip
            if soak:
                pids = server.worker_pids()
                samples: list[list[float]] = []
                loader = subprocess.Popen(
                    ["wrk", "-t1", "-c4", f"-d{soak}s", "-s", str(WRK / "score.lua"), server.url],
                    stdout=subprocess.DEVNULL,
                )
                started = time.monotonic()
                while loader.poll() is None:
                    samples.append([rss_mib(p) for p in pids])
                    time.sleep(min(15, max(soak / 20, 1)))
                elapsed = time.monotonic() - started
                for i, pid in enumerate(pids):
                    series = [s[i] for s in samples]
                    print(
                        f"worker {pid}: RSS over {elapsed:.0f} s of load: first "
                        f"{series[0]:.0f} MiB, max {max(series):.0f} MiB, last "
                        f"{series[-1]:.0f} MiB, median {statistics.median(series):.0f} MiB"
                    )
        finally:
            server.stop()
    finally:
        subprocess.run([str(ROOT / "scripts/test-services.sh"), "stop", str(services)],
                       check=False, capture_output=True)  # fmt: skip
        shutil.rmtree(services, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--soak-seconds", type=int, default=300)
    parser.add_argument("--skip-two-workers", action="store_true")
    parser.add_argument("--skip-single-worker", action="store_true")
    parser.add_argument(
        "--redis-clients", action="store_true", help="compare the Redis clients' cost first"
    )
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; wrk runs on the same machine as the server")
    if args.redis_clients:
        redis_clients.with_private_redis(
            lambda url: redis_clients.compare(url, rounds=3, commands=20_000, concurrencies=(1, 64))
        )
    with tempfile.TemporaryDirectory(prefix="bench-home-", dir="/tmp") as home:
        if not args.skip_single_worker:
            single_worker(Path(home) / "single", args.seconds)
        if not args.skip_two_workers:
            two_workers(Path(home) / "two", args.seconds, args.soak_seconds)


if __name__ == "__main__":
    main()
