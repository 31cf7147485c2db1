"""A real server per backend: uvicorn on a loopback port, SQLite + memory or PostgreSQL + Redis."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import uvicorn
from starlette.applications import Starlette

from leadscore.app import create_app
from leadscore.cli.keys import create_key
from leadscore.cli.serve import uvicorn_options
from leadscore.core.config import ServiceSettings
from leadscore.core.migrate import upgrade
from leadscore.core.timestamps import iso_z
from leadscore.deps import Services
from leadscore.scoring.schemas import EXAMPLE_LEAD

from ..services import postgres_url, redis_url, reset_postgres

SECRET = "test-secret-7Qm2Vx9Lk4Pz8Rw3Ht6Jn1Bc5Fd0Gs"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _reset_redis(url: str) -> None:
    client = aioredis.from_url(url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


class ServerThread:
    """Runs one app under uvicorn in a thread; stopping it is a graceful shutdown."""

    def __init__(self, app: Starlette, **uvicorn_overrides: Any) -> None:
        self.app = app
        self.port = free_port()
        options = {k: v for k, v in uvicorn_options().items() if k not in ("loop", "log_level")}
        options |= uvicorn_overrides
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", **options)
        )
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        await self.server.serve()

    def call(self, coroutine: Any, timeout: float = 10.0) -> Any:
        """Run a coroutine on the server's own loop (e.g. a hub call) and return its result."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def services(self) -> Services:
        services: Services = self.app.state.services
        return services

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@dataclass
class Deployment:
    """A backend combination with its settings and the keys of two teams."""

    name: str
    settings: ServiceSettings
    keys: dict[str, str]

    def start(self, **overrides: Any) -> ServerThread:
        settings = self.settings.model_copy(update=overrides)
        return ServerThread(create_app(settings)).start()


def deploy(name: str, home: Path, model_dir: Path) -> Deployment:
    """Migrate a fresh database of the named backend pair and create keys for two teams."""
    if name == "sqlite-memory":
        database, cache = f"sqlite+aiosqlite:///{home / 'leadscore.db'}", None
    else:
        database, cache = postgres_url(), redis_url()
        asyncio.run(reset_postgres(database))
        asyncio.run(_reset_redis(cache))
    settings = ServiceSettings(
        home=home,
        model_dir=model_dir,
        database_url=database,
        redis_url=cache,
        jwt_secret=SECRET,  # type: ignore[arg-type]
        cors_origins=["https://crm.example.com"],
    )
    upgrade(settings.resolved_database_url)
    keys = {
        f"{team}-{role}": asyncio.run(create_key(settings, team, role, "tests"))
        for team in ("acme", "globex")
        for role in ("admin", "agent", "viewer")
    }
    return Deployment(name, settings, keys)


@pytest.fixture(scope="module", params=["sqlite-memory", "postgres-redis"])
def deployment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, model_dir: Path
) -> Deployment:
    """Each backend combination, freshly migrated, with keys for teams acme and globex."""
    return deploy(request.param, tmp_path_factory.mktemp(request.param), model_dir)


@pytest.fixture(scope="module")
def server(deployment: Deployment) -> Iterator[ServerThread]:
    """A running server for the module's backend."""
    running = deployment.start()
    yield running
    running.stop()


@pytest.fixture
def client(server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


@pytest.fixture
def as_role(deployment: Deployment) -> Callable[[str], dict[str, str]]:
    """Headers for a team-role key, e.g. as_role("acme-agent")."""
    return lambda who: {"X-API-Key": deployment.keys[who]}


def lead(lead_id: str, **changes: Any) -> dict[str, Any]:
    """The contract's example lead under a new id, with some lead data changed."""
    body = copy.deepcopy(EXAMPLE_LEAD)
    body["lead_id"] = lead_id
    body["lead_data"].update(changes)
    return body


def batch_lead(lead_id: str) -> dict[str, Any]:
    """A lead as a batch item: options belong to the batch, not to each lead."""
    return {k: v for k, v in lead(lead_id).items() if k != "options"}


def hot_data() -> dict[str, Any]:
    """Lead data that scores hot (well above 70) with the default model: six quick, long email
    replies in the last hours, timed from now so the lead stays hot on any day the suite runs."""
    now = datetime.now(UTC)
    return {
        "timeline": "1-3 months",
        "web_activity": {"properties_viewed": 60, "repeat_listing_views": 20, "favorites": 15,
                         "saved_searches": 5},
        "interaction_history": [
            {"timestamp": iso_z(now - timedelta(hours=2 + i)), "type": "email_response",
             "response_time_hours": 0.2, "message_length": 400, "questions_asked": 6}
            for i in range(6)
        ],
    }  # fmt: skip


# Lead data that scores cold with the default model.
COLD = {"pre_approved": False, "timeline": "just browsing", "budget_range": None,
        "web_activity": None, "interaction_history": []}  # fmt: skip


def worker_env(deployment: Deployment, **extra: str) -> dict[str, str]:
    """The environment `leadscore serve` reads for this deployment (acme runs the models)."""
    settings = deployment.settings
    env = {
        **os.environ,
        "LEADSCORE_HOME": str(settings.home),
        "LEADSCORE_MODEL_DIR": str(settings.model_dir),
        "LEADSCORE_DATABASE_URL": settings.resolved_database_url,
        "LEADSCORE_JWT_SECRET": SECRET,
        "LEADSCORE_GLOBAL_MODELS_TEAM": "acme",
    }
    env.pop("LEADSCORE_REDIS_URL", None)
    if settings.redis_url:
        env["LEADSCORE_REDIS_URL"] = settings.redis_url
    return env | extra


@dataclass
class ServeProcess:
    """A running `leadscore serve` process (its own process group) and its URL."""

    process: subprocess.Popen[str]
    url: str


@contextlib.contextmanager
def serve_process(deployment: Deployment, workers: int, **extra: str) -> Iterator[ServeProcess]:
    """`leadscore serve --workers N` as a process, once healthy; stopped (or reaped) on exit."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "leadscore", "serve", "--workers", str(workers), "--port",
         str(port)],
        env=worker_env(deployment, **extra),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: the workers can be killed with it
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"{url}/api/v1/ml/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            raise RuntimeError(f"server did not start: {process.communicate()[1][-2000:]}")
        time.sleep(0.2)
    try:
        yield ServeProcess(process, url)
    finally:
        if process.poll() is not None:  # killed by the test: reap what is left of its group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
        else:
            process.terminate()
            try:
                _, errors = process.communicate(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)  # never leave workers behind
                _, errors = process.communicate()
                pytest.fail(f"the server did not shut down within 40 s: {errors[-2000:]}")


@contextlib.contextmanager
def serve_workers(deployment: Deployment, workers: int, **extra: str) -> Iterator[str]:
    """`leadscore serve --workers N` as a process; its URL once healthy; stopped on exit."""
    with serve_process(deployment, workers, **extra) as served:
        yield served.url


def versions_served(url: str, headers: dict[str, str], lead: dict[str, Any], n: int) -> set[str]:
    """The model versions of n scores, each over a new connection (so both workers answer)."""
    seen = set()
    for _ in range(n):
        response = httpx.post(f"{url}/api/v1/ml/score", json=lead, headers=headers)
        assert response.status_code == 200, response.text
        seen.add(response.json()["model_version"])
    return seen


def wait_until_served(
    url: str, headers: dict[str, str], lead: dict[str, Any], version: str
) -> None:
    """Until 30 scores in a row, on both workers, come from `version` (15 s at most)."""
    deadline = time.monotonic() + 15
    while versions_served(url, headers, lead, 30) != {version}:
        assert time.monotonic() < deadline, f"{version} never served by every worker"
        time.sleep(0.5)
