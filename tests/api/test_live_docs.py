"""The live-events examples of docs/websocket.md, run as written: the browser snippet in
headless Chromium, the Python example in its own interpreter, both against a running server."""

from __future__ import annotations

import json
import re
import select
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from .conftest import COLD, Deployment, ServerThread, hot_data, lead

DOCS = Path(__file__).resolve().parents[2] / "docs" / "websocket.md"
DOC_URL = "ws://127.0.0.1:8000"  # what the snippet connects to; swapped for the test server
DOC_TOKEN = '"eyJ..."'  # the snippet's placeholder token; swapped for a real JWT
HEARTBEAT_SECONDS = 0.3
IDLE_TIMEOUT_SECONDS = 1.5
WAIT_SECONDS = 10.0  # generous: the machine may be busy with benchmarks


def docs_block(section: str, language: str) -> str:
    """The one code block of a docs section."""
    text = DOCS.read_text(encoding="utf-8")
    found = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert found is not None, f"{DOCS} has no '## {section}' section"
    blocks = re.findall(rf"^```{language}\n(.*?)^```", found.group(1), re.M | re.S)
    assert len(blocks) == 1, f"'## {section}' should hold one {language} block"
    block: str = blocks[0]
    return block


def browser_snippet() -> str:
    """The html block of the docs' Browser section, so a change to the docs is tested too."""
    snippet = docs_block("Browser", "html")
    assert snippet.count(DOC_URL) == 1, f"the snippet should connect to {DOC_URL} once"
    assert snippet.count(DOC_TOKEN) == 1, f"the snippet should hold the placeholder {DOC_TOKEN}"
    return snippet


@dataclass
class Tab:
    """A browser page running the snippet, with every console.log it made (as JS values)."""

    page: Page
    lines: list[list[Any]] = field(default_factory=list)

    def record(self, message: ConsoleMessage) -> None:
        self.lines.append([arg.json_value() for arg in message.args])

    def wait_for(self, wanted: Callable[[list[Any]], bool], what: str) -> list[Any]:
        """The first logged line that matches; the page's own clock runs while waiting."""
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            for line in self.lines:
                if wanted(line):
                    return line
            self.page.wait_for_timeout(50)  # Playwright delivers console events only in its calls
        raise AssertionError(f"the browser never logged {what}; it logged {self.lines}")

    def closed(self) -> list[list[Any]]:
        return [line for line in self.lines if line and line[0] == "closed"]


@pytest.fixture(scope="module")
def server(deployment: Deployment) -> Iterator[ServerThread]:
    """A server with a short heartbeat, so idle and ping behaviour shows within seconds."""
    running = deployment.start(
        ws_heartbeat_seconds=HEARTBEAT_SECONDS, ws_idle_timeout_seconds=IDLE_TIMEOUT_SECONDS
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser(server: ServerThread) -> Iterator[Browser]:
    """Debian's chromium, failing if absent; after the server, as its loop blocks asyncio.run."""
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail(
            "chromium is not installed; `make test` installs it as root "
            "(apt-get install -y chromium) and tests/api/test_live_docs.py needs it"
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def token(client: httpx.Client, deployment: Deployment) -> str:
    """A real JWT for an agent, exchanged for the key as the snippet's comment says."""
    response = client.post(
        "/api/v1/auth/token", headers={"X-API-Key": deployment.keys["acme-agent"]}
    )
    assert response.status_code == 200, response.text
    jwt: str = response.json()["access_token"]
    return jwt


@pytest.fixture
def open_snippet(browser: Browser, server: ServerThread) -> Iterator[Callable[..., Tab]]:
    """Load the snippet (URL and token swapped, optionally one more edit) in fresh pages."""
    pages: list[Page] = []

    def load(token: str, edit: Callable[[str], str] = lambda html: html) -> Tab:
        html = browser_snippet().replace(DOC_URL, f"ws://127.0.0.1:{server.port}")
        html = edit(html.replace(DOC_TOKEN, json.dumps(token)))
        page = browser.new_page()
        pages.append(page)
        tab = Tab(page)
        page.on("console", tab.record)
        page.on("pageerror", lambda error: tab.lines.append(["pageerror", str(error)]))
        page.set_content(html)
        return tab

    yield load
    for page in pages:
        page.close()


def live_connections(client: httpx.Client, deployment: Deployment) -> list[dict[str, Any]]:
    response = client.get(
        "/api/v1/ml/ws/connections", headers={"X-API-Key": deployment.keys["acme-admin"]}
    )
    assert response.status_code == 200, response.text
    connections: list[dict[str, Any]] = response.json()["connections"]
    return connections


def wait_for_subscription(
    tab: Tab, client: httpx.Client, deployment: Deployment, known: set[str]
) -> dict[str, Any]:
    """The snippet's new connection once the server shows the documented subscription."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        for connection in live_connections(client, deployment):
            if connection["id"] not in known and connection["subscriptions"]["events"]:
                assert connection["subscriptions"] == {
                    "events": ["escalation", "lead_scored"],
                    "filters": {"min_score": 70.0, "classification": None},
                }
                return connection
        tab.page.wait_for_timeout(100)
    raise AssertionError(f"the snippet never subscribed; the browser logged {tab.lines}")


def score(client: httpx.Client, deployment: Deployment, name: str, changes: dict[str, Any]) -> Any:
    lead_id = f"browser_{name}_{uuid.uuid4().hex[:8]}"
    response = client.post(
        "/api/v1/ml/score",
        json=lead(lead_id, **changes),
        headers={"X-API-Key": deployment.keys["acme-agent"]},
    )
    assert response.status_code == 200, response.text
    return response.json()


def logged_score(tab: Tab, scored: dict[str, Any]) -> list[Any]:
    """The snippet's line for this lead: id, score and the top reasons' sentences."""
    line = tab.wait_for(lambda ln: ln[:1] == [scored["lead_id"]], f"lead {scored['lead_id']}")
    assert line == [
        scored["lead_id"],
        scored["ml_score"],
        [reason["text"] for reason in scored["reasons"][:3]],
    ]
    return line


def test_snippet_logs_hot_leads_and_its_filter_drops_cold_ones(
    open_snippet: Callable[..., Tab], token: str, client: httpx.Client, deployment: Deployment
) -> None:
    known = {c["id"] for c in live_connections(client, deployment)}
    tab = open_snippet(token)
    wait_for_subscription(tab, client, deployment, known)
    cold = score(client, deployment, "cold", COLD)
    hot = score(client, deployment, "hot", hot_data())
    assert cold["ml_score"] < 70 <= hot["ml_score"]
    logged_score(tab, hot)
    # One connection delivers in order: had the cold lead passed the filter, it would be here.
    assert [line for line in tab.lines if cold["lead_id"] in line] == []
    assert tab.closed() == []


def test_snippet_answers_pings_so_the_server_keeps_it_open(
    open_snippet: Callable[..., Tab], token: str, client: httpx.Client, deployment: Deployment
) -> None:
    known = {c["id"] for c in live_connections(client, deployment)}
    tab = open_snippet(token)
    mine = wait_for_subscription(tab, client, deployment, known)
    opened = time.monotonic()

    def without_pong(html: str) -> str:
        """The same snippet minus its ping answer: proves the wait below is long enough."""
        kept = [line for line in html.splitlines() if '"ping"' not in line]
        assert len(kept) == len(html.splitlines()) - 1, "the snippet should answer ping on a line"
        return "\n".join(kept)

    mute = open_snippet(token, without_pong)
    mute.wait_for(lambda ln: ln[:2] == ["closed", 4408], "the unanswering copy closed for idling")
    # The snippet went quiet first (it subscribed first): unanswered, it would be closed by now.
    settled = time.monotonic() + 1.0  # time for its close to reach the page, had there been one
    while time.monotonic() < settled or time.monotonic() - opened < 1.5 * IDLE_TIMEOUT_SECONDS:
        tab.page.wait_for_timeout(100)
    assert tab.closed() == [], "the snippet's socket was closed although it answered pings"
    (now,) = [c for c in live_connections(client, deployment) if c["id"] == mine["id"]]
    assert now["state"] == "open"
    assert now["messages_received"] >= 3  # its subscribe, then a pong for every ping since
    logged_score(tab, score(client, deployment, "hot_later", hot_data()))


def test_snippet_logs_close_code_4401_for_a_bad_token(open_snippet: Callable[..., Tab]) -> None:
    tab = open_snippet("not-a-jwt")
    line = tab.wait_for(lambda ln: ln[:1] == ["closed"], "a close")
    assert line[:2] == ["closed", 4401]
    assert line[2], "the close reason should say what was wrong"


def test_the_python_example_prints_hot_leads_only(
    server: ServerThread, client: httpx.Client, deployment: Deployment, tmp_path: Path
) -> None:
    example = docs_block("Python (`websockets`)", "python")
    assert example.count(DOC_URL) == 1
    assert example.count('"lsk_..."') == 1
    example = example.replace(DOC_URL, f"ws://127.0.0.1:{server.port}")
    example = example.replace('"lsk_..."', json.dumps(deployment.keys["acme-viewer"]))
    script = tmp_path / "watch.py"
    script.write_text(example)
    known = {c["id"] for c in live_connections(client, deployment)}
    with subprocess.Popen(
        [sys.executable, "-u", str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    ) as watcher:  # fmt: skip
        try:
            deadline = time.monotonic() + WAIT_SECONDS
            while not [
                c for c in live_connections(client, deployment)
                if c["id"] not in known and c["subscriptions"]["events"] == ["lead_scored"]
            ]:  # fmt: skip
                assert watcher.poll() is None, watcher.communicate()
                assert time.monotonic() < deadline, "the example never subscribed"
                time.sleep(0.05)
            cold = score(client, deployment, "py_cold", COLD)
            hot = score(client, deployment, "py_hot", hot_data())
            assert (cold["classification"], hot["classification"]) == ("cold", "hot")
            assert watcher.stdout is not None
            ready, _, _ = select.select([watcher.stdout], [], [], WAIT_SECONDS)
            assert ready, "the example printed nothing for the hot lead"
            line = watcher.stdout.readline().split()
            assert line == [hot["lead_id"], str(hot["ml_score"])]  # the cold lead was filtered out
            time.sleep(IDLE_TIMEOUT_SECONDS + 2 * HEARTBEAT_SECONDS)
            assert watcher.poll() is None, "the example should answer pings and stay connected"
        finally:
            watcher.kill()
