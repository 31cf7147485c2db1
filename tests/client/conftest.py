"""Real servers for the client: the API's deployments (SQLite + memory, PostgreSQL + Redis),
and a small HTTP proxy in front of one that answers 503s or drops answers on purpose."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from leadscore.app import create_app

from ..api.conftest import Deployment, ServerThread, deploy, free_port


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


def start_on(deployment: Deployment, port: int) -> ServerThread:
    """A server of the deployment on a given port: the same address again after a restart."""
    thread = ServerThread(create_app(deployment.settings))
    thread.port = port
    thread.server.config.port = port
    return thread.start()


# Not passed on: the proxy frames its own answer, and httpx has already decoded the body.
_HOP_HEADERS = ("content-length", "transfer-encoding", "connection", "content-encoding")


@dataclass
class Fault:
    """What the proxy does to the next matching requests: answer `status` (with Retry-After)
    without forwarding, or forward and then hang up without answering ("drop")."""

    action: str
    times: int
    path: str = ""
    status: int = 503
    retry_after: str = "1"
    seen: list[str] = field(default_factory=list)


class FaultProxy:
    """An HTTP/1.1 proxy on a loopback port in front of a real server, speaking real HTTP."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.faults: list[Fault] = []
        #: (method, path, idempotency key) of every request that reached the proxy.
        self.requests: list[tuple[str, str, str | None]] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with httpx.AsyncClient(base_url=self.upstream, timeout=30) as upstream:
            self._upstream = upstream
            server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
            self._ready.set()
            async with server:
                await self._stop.wait()

    def start(self) -> FaultProxy:
        self._thread.start()
        assert self._ready.wait(10), "the proxy did not start"
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _fault(self, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.times > 0 and path == fault.path:
                fault.times -= 1
                fault.seen.append(path)
                return fault
        return None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
                lower = {k.lower(): v for k, v in headers.items()}
                body = await reader.readexactly(int(lower.get("content-length", "0")))
                self.requests.append((method, target, lower.get("idempotency-key")))
                fault = self._fault(target)
                if fault is not None and fault.action == "status":
                    payload = b'{"error":"database_unavailable","detail":"proxy outage"}'
                    writer.write(
                        f"HTTP/1.1 {fault.status} Service Unavailable\r\n"
                        f"content-type: application/json\r\nretry-after: {fault.retry_after}\r\n"
                        f"content-length: {len(payload)}\r\n\r\n".encode()
                        + payload
                    )
                    await writer.drain()
                    continue
                forward = {k: v for k, v in headers.items() if k.lower() not in ("host",)}
                response = await self._upstream.request(
                    method, target, content=body, headers=forward
                )
                if fault is not None and fault.action == "drop":
                    return  # the server acted; the client never hears its answer
                out = [f"HTTP/1.1 {response.status_code} {response.reason_phrase}"]
                for name, value in response.headers.items():
                    if name.lower() not in _HOP_HEADERS:
                        out.append(f"{name}: {value}")
                out.append(f"content-length: {len(response.content)}")
                writer.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + response.content)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()


@pytest.fixture
def proxy(server: ServerThread) -> Iterator[FaultProxy]:
    """A fault proxy in front of the module's server."""
    running = FaultProxy(server.url).start()
    yield running
    running.stop()
