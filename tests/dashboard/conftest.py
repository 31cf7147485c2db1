"""The command center in Debian's Chromium against a real server (SQLite is enough here):
every page fails its test on a console error or on a request to any other host."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Route, sync_playwright

from ..api.conftest import Deployment, ServerThread, deploy, lead

#: Screenshots of every view, for people to look at (git-ignored).
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
WAIT_MS = 10_000  # generous: the machine may be busy with benchmarks


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Deployment:
    """SQLite and the in-process cache and bus: the browser sees the same API either way."""
    return deploy("sqlite-memory", tmp_path_factory.mktemp("dashboard"), model_dir)


@pytest.fixture(scope="module")
def server(deployment: Deployment) -> Iterator[ServerThread]:
    running = deployment.start()
    yield running
    running.stop()


@pytest.fixture
def client(server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


@pytest.fixture(scope="module")
def browser(server: ServerThread) -> Iterator[Browser]:
    """Debian's chromium, failing if absent; after the server, as its loop blocks asyncio.run."""
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("chromium is not installed; `make test` installs it (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True)
        yield launched
        launched.close()


@dataclass
class Watched:
    """A page with what went wrong on it: console errors, page errors, foreign requests."""

    page: Page
    origin: str
    errors: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    sockets: list[str] = field(default_factory=list)

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def route(self, route: Route) -> None:
        """Requests to the server go through; any other host fails the test (and is aborted)."""
        parts = urlsplit(route.request.url)
        if f"{parts.scheme}://{parts.netloc}" == self.origin:
            route.continue_()
        else:
            self.foreign.append(route.request.url)
            route.abort()

    def expect_errors(self, *fragments: str) -> None:
        """The console errors so far are exactly these (in order); then start afresh."""
        assert len(self.errors) == len(fragments), self.errors
        for error, fragment in zip(self.errors, fragments, strict=True):
            assert fragment in error, self.errors
        self.errors.clear()

    def shot(self, name: str, *, full_page: bool = True) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=path, full_page=full_page)
        return path


@pytest.fixture
def open_page(browser: Browser, server: ServerThread) -> Iterator[Callable[..., Watched]]:
    """New pages (own context: own sessionStorage) that are checked when the test ends."""
    opened: list[Watched] = []

    def new(width: int = 1280, height: int = 900, scheme: str = "light") -> Watched:
        context = browser.new_context(
            viewport={"width": width, "height": height},
            color_scheme=scheme,  # type: ignore[arg-type]
        )
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        watched = Watched(page, server.url)
        context.route("**/*", watched.route)
        page.on("console", watched.console)
        page.on("pageerror", lambda error: watched.errors.append(f"pageerror: {error}"))
        page.on("websocket", lambda socket: watched.sockets.append(socket.url))
        opened.append(watched)
        return watched

    yield new
    for watched in opened:
        watched.page.context.close()
    for watched in opened:
        assert watched.foreign == [], f"requests to other hosts: {watched.foreign}"
        assert watched.errors == [], f"console errors: {watched.errors}"
        ws_origin = watched.origin.replace("http://", "ws://")
        assert all(url.startswith(ws_origin) for url in watched.sockets), watched.sockets


def sign_in(watched: Watched, key: str) -> None:
    """Sign in through the form, as a person would, and wait for the live socket."""
    page = watched.page
    page.goto(f"{watched.origin}/dashboard")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.locator("#live-status[data-state=live]").wait_for()


def score(
    client: httpx.Client, key: str, name: str, lead_id: str | None = None, **changes: Any
) -> dict[str, Any]:
    """Score a lead over the API (a new id unless given) and return the response."""
    lead_id = lead_id or f"dash_{uuid.uuid4().hex[:10]}"
    response = client.post(
        "/api/v1/ml/score", json=lead(lead_id, name=name, **changes), headers={"X-API-Key": key}
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result
