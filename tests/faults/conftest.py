"""Private PostgreSQL and Redis per test module that a test can stop and restart, and
`leadscore serve --workers 2` against them, with its log in a file (its size is measured)."""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from leadscore.cli.keys import create_key
from leadscore.core.config import ServiceSettings
from leadscore.core.migrate import upgrade

from ..api.conftest import SECRET, Deployment, free_port, lead, worker_env

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "test-services.sh"
__all__ = ["Deployment", "lead"]


def _as_postgres(*command: str) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the data directory's owner."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else list(command)


@dataclass
class Dependencies:
    """The servers `scripts/test-services.sh start DIR` started, and switches for each."""

    root: Path
    postgres_url: str
    redis_url: str

    @property
    def pg_port(self) -> int:
        return int(urlsplit(self.postgres_url.replace("+asyncpg", "")).port or 5432)

    @property
    def redis_port(self) -> int:
        return int(urlsplit(self.redis_url).port or 6379)

    @property
    def _pg_ctl(self) -> str:
        candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
        return candidates[0] if candidates else "pg_ctl"

    def stop_postgres(self) -> None:
        """A fast shutdown: sessions are cut, new connections refused."""
        subprocess.run(
            _as_postgres(self._pg_ctl, "-D", str(self.root / "pg" / "data"), "-m", "fast", "-w",
                         "-t", "30", "stop"),
            check=True, capture_output=True, timeout=40,
        )  # fmt: skip

    def start_postgres(self) -> None:
        """Start it again on the same port (the servers under test keep their URL)."""
        subprocess.run(
            _as_postgres(self._pg_ctl, "-D", str(self.root / "pg" / "data"), "-l",
                         str(self.root / "pg" / "postgres.log"), "-o", f"-p {self.pg_port}", "-w",
                         "-t", "30", "start"),
            check=True, capture_output=True, timeout=40,
        )  # fmt: skip

    def stop_redis(self) -> None:
        """SHUTDOWN NOSAVE: Redis exits at once, every connection is dropped."""
        subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(self.redis_port), "shutdown", "nosave"],
            capture_output=True, timeout=10,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while self._redis_answers():
            assert time.monotonic() < deadline, "redis did not stop"
            time.sleep(0.05)

    def start_redis(self) -> None:
        """redis-server as the script starts it, on the same port."""
        subprocess.run(
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "yes", "--dir", str(self.root), "--pidfile",
             str(self.root / "redis.pid"), "--logfile", str(self.root / "redis.log")],
            check=True, capture_output=True, timeout=10,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not self._redis_answers():
            assert time.monotonic() < deadline, "redis did not start"
            time.sleep(0.05)

    def _redis_answers(self) -> bool:
        reply = subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(self.redis_port), "ping"],
            capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        return reply.stdout.strip() == "PONG"

    def query(self, sql: str, *args: Any) -> list[Any]:
        """Rows read over a connection of our own (not the server's)."""

        async def run() -> list[Any]:
            connection = await asyncpg.connect(self.postgres_url.replace("+asyncpg", ""))
            try:
                return list(await connection.fetch(sql, *args))
            finally:
                await connection.close()

        return asyncio.run(run())


@pytest.fixture(scope="module")
def dependencies() -> Iterator[Dependencies]:
    """A private PostgreSQL and Redis for this module (a short path: the socket must fit)."""
    root = Path(tempfile.mkdtemp(prefix="lsf-", dir="/tmp"))
    try:
        out = subprocess.run(
            ["bash", str(SCRIPT), "start", str(root)], check=True, capture_output=True,
            text=True, timeout=300,
        ).stdout  # fmt: skip
        found = dict(
            line.removeprefix("export ").split("=", 1) for line in out.splitlines() if "=" in line
        )
        yield Dependencies(
            root, found["LEADSCORE_TEST_POSTGRES_URL"], found["LEADSCORE_TEST_REDIS_URL"]
        )
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(root)], capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def deployment(
    dependencies: Dependencies, tmp_path_factory: pytest.TempPathFactory, model_dir: Path
) -> Deployment:
    """The module's database migrated, with keys for acme and globex (and a spare per role
    that no server has seen: its first use must reach the database)."""
    settings = ServiceSettings(
        home=tmp_path_factory.mktemp("home"),
        model_dir=model_dir,
        database_url=dependencies.postgres_url,
        redis_url=dependencies.redis_url,
        jwt_secret=SECRET,  # type: ignore[arg-type]
    )
    upgrade(settings.resolved_database_url)
    keys = {
        f"{team}-{role}": asyncio.run(create_key(settings, team, role, "fault tests"))
        for team in ("acme", "globex", "spare")
        for role in ("admin", "agent")
    }
    return Deployment("postgres-redis", settings, keys)


@dataclass
class Server:
    """A `leadscore serve` process group and the file its stderr goes to."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_bytes(self) -> int:
        return self.log.stat().st_size

    def worker_pid(self, deployment: Deployment) -> int | None:
        """The pid of the worker that answers a new connection, if one does."""
        with contextlib.suppress(httpx.TransportError):
            status = httpx.get(
                f"{self.url}/api/v1/ml/model/status",
                headers={"X-API-Key": deployment.keys["acme-admin"]}, timeout=5,
            )  # fmt: skip
            if status.status_code == 200:
                return int(status.json()["worker_pid"])
        return None

    def wait_for_workers(
        self, deployment: Deployment, workers: int, deadline: float, without: int = 0
    ) -> set[int]:
        """Wait until `workers` workers (other than `without`) answered: one healthy worker
        is not a started server, and a worker still starting when a test stops the database
        would start during the outage. Their pids (each has also cached acme-admin's key)."""
        seen: set[int] = set()
        while len(seen - {without}) < workers:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"{len(seen - {without})} of {workers} workers answered (exit code "
                    f"{self.process.poll()}): {self.log.read_text()[-2000:]}"
                )
            pid = self.worker_pid(deployment)
            if pid is None:
                time.sleep(0.2)
            else:
                seen.add(pid)
        return seen - {without}

    def kill(self) -> None:
        """kill -9 of the supervisor and its workers: no shutdown code runs."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


@contextlib.contextmanager
def serve(deployment: Deployment, log: Path, workers: int = 2, **extra: str) -> Iterator[Server]:
    """`leadscore serve --workers N` once healthy; stopped (or killed after 40 s) on exit."""
    port = free_port()
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "leadscore", "serve", "--workers", str(workers), "--port",
             str(port)],
            # No access lines: the outage tests bound what an outage itself logs.
            env=worker_env(deployment, **({"LEADSCORE_RATE_LIMIT_PER_MINUTE": "1000000",
                                           "LEADSCORE_ACCESS_LOG": "false"} | extra)),
            stdout=subprocess.DEVNULL, stderr=sink,
            start_new_session=True,
        )  # fmt: skip
    server = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        server.wait_for_workers(deployment, workers, time.monotonic() + 90)
    except RuntimeError:
        server.kill()
        raise
    try:
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                server.kill()
                pytest.fail(f"the server did not shut down within 40 s: {log.read_text()[-2000:]}")


@dataclass
class Answer:
    """One request of a load run: what was asked, what came back and how long it took."""

    name: str
    status: int  # 0: no HTTP answer at all (connection refused, timeout)
    seconds: float
    started: float
    body: dict[str, Any] | None
    headers: dict[str, str]
    lead_id: str | None = None


@dataclass
class Load:
    """Client threads running request makers in a loop until stopped (and at most `limit`
    requests each); every answer is kept."""

    url: str
    makers: list[Callable[[httpx.Client, int], tuple[str, httpx.Response, str | None]]]
    limit: int = 5_000
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _run(self, maker: Callable[[httpx.Client, int], tuple[str, httpx.Response, str | None]]
             ) -> None:  # fmt: skip
        with httpx.Client(base_url=self.url, timeout=10) as client:
            for i in range(self.limit):
                if self._stop.is_set():
                    return
                started = time.monotonic()
                try:
                    name, response, lead_id = maker(client, i)
                except httpx.TransportError as exc:
                    self.answers.append(
                        Answer(type(exc).__name__, 0, time.monotonic() - started, started, None, {})
                    )
                    time.sleep(0.05)
                    continue  # fmt: skip
                seconds = time.monotonic() - started
                try:
                    body = response.json()
                except ValueError:
                    body = None
                self.answers.append(
                    Answer(name, response.status_code, seconds, started,
                           body if isinstance(body, dict) else None, dict(response.headers),
                           lead_id)
                )  # fmt: skip

    def __enter__(self) -> Load:
        for maker in self.makers:
            thread = threading.Thread(target=self._run, args=(maker,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def between(self, start: float, end: float) -> list[Answer]:
        return [a for a in self.answers if start <= a.started < end]

    def recent(self, since: float, window: float = 2.0) -> str:
        """Per route: its (status, error code) pairs of the last `window` seconds, counted, and
        when it last answered 200 (seconds after `since`): what a failed recovery shows."""
        now = time.monotonic()
        lines = []
        for name in dict.fromkeys(a.name for a in self.answers):
            pairs: dict[tuple[int, str | None], int] = {}
            for answer in self.between(now - window, now + 1):
                if answer.name == name:
                    code = None if answer.body is None else answer.body.get("error")
                    pairs[answer.status, code] = pairs.get((answer.status, code), 0) + 1
            ok = [a.started for a in self.answers if a.name == name and a.status == 200]
            last = "never" if not ok else f"{max(ok) - since:+.1f} s"
            lines.append(f"  {name}: last {window:g} s {pairs or 'nothing'}; last 200 at {last}")
        return "\n".join(lines)


def wait_for(
    check: Callable[[], bool], seconds: float, what: str, explain: Callable[[], str] | None = None
) -> float:
    """Poll `check` (every 0.2 s, `seconds` at most); how long it took. On a timeout the
    message ends with `explain()` (what the system looked like then)."""
    started = time.monotonic()
    while True:
        with contextlib.suppress(httpx.TransportError):
            if check():
                return time.monotonic() - started
        if time.monotonic() - started >= seconds:
            detail = "" if explain is None else "\n" + explain()
            raise AssertionError(f"{what}: not within {seconds:g} s{detail}")
        time.sleep(0.2)
