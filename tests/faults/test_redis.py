"""Redis killed under load: scoring goes on, health says degraded, and all recovers."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from .conftest import Dependencies, Deployment, Load, Server, lead, serve, wait_for

SCORE = "/api/v1/ml/score"
HEALTH = "/api/v1/ml/health"
MAX_SECONDS = 2.0


@pytest.fixture(scope="module")
def server(
    deployment: Deployment, dependencies: Dependencies, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """Two workers sharing the module's PostgreSQL and Redis."""
    with serve(deployment, tmp_path_factory.mktemp("server") / "server.log") as running:
        yield running


@pytest.fixture
def redis_down(dependencies: Dependencies) -> Iterator[None]:
    """Redis stopped for the test, started again after it whatever happens."""
    dependencies.stop_redis()
    try:
        yield
    finally:
        dependencies.start_redis()


def _health(url: str) -> str:
    response = httpx.get(url + HEALTH, timeout=5)
    return str(response.json()["status"]) if response.status_code == 200 else "unhealthy"


def test_redis_killed_under_load_scoring_goes_on_and_recovers(
    server: Server, deployment: Deployment, dependencies: Dependencies
) -> None:
    agent = {"X-API-Key": deployment.keys["acme-agent"]}

    def score(client: httpx.Client, i: int) -> tuple[str, httpx.Response, str | None]:
        lead_id = f"redis-{i}"
        return "score", client.post(SCORE, json=lead(lead_id), headers=agent), lead_id

    def repeat(client: httpx.Client, i: int) -> tuple[str, httpx.Response, str | None]:
        return "repeat", client.post(SCORE, json=lead("redis-repeat"), headers=agent), None

    def health(client: httpx.Client, i: int) -> tuple[str, httpx.Response, str | None]:
        time.sleep(0.1)
        return "health", client.get(HEALTH), None

    assert _health(server.url) == "healthy"
    log_before = server.log_bytes()
    with Load(server.url, [score, repeat, health]) as load:
        time.sleep(1.5)
        down_at = time.monotonic()
        dependencies.stop_redis()
        try:
            wait_for(lambda: _health(server.url) == "degraded", 5, "health reports degraded")
            time.sleep(4.0)
        finally:
            dependencies.start_redis()
        up_at = time.monotonic()
        recovery = wait_for(lambda: _health(server.url) == "healthy", 20, "health recovers")
        time.sleep(1.0)
    log_bytes = server.log_bytes() - log_before
    outage = load.between(down_at, up_at)
    scores = [a for a in load.answers if a.name != "health"]
    during = [a for a in outage if a.name != "health"]
    worst = max(scores, key=lambda a: a.seconds)
    print(f"\n{len(during)} scores during the outage, statuses {sorted({a.status for a in during})}"
          f"; worst {worst.seconds * 1000:.0f} ms; healthy {recovery:.1f} s after the restart; "
          f"log {log_bytes} bytes")  # fmt: skip
    assert len(during) > 20
    assert {a.status for a in scores} == {200}
    assert worst.seconds < MAX_SECONDS
    healths = [a for a in outage if a.name == "health"]
    assert healths
    assert all(a.status == 200 for a in healths)
    degraded = [a for a in healths if a.body and a.body["status"] == "degraded"]
    assert degraded
    assert all(a.body and a.body["checks"]["cache"]["status"] == "error" for a in degraded)
    # The cache works again: a repeat of the same lead is a hit once more.
    with httpx.Client(base_url=server.url) as client:
        client.post(SCORE, json=lead("after-redis"), headers=agent)
        again = client.post(SCORE, json=lead("after-redis"), headers=agent)
    assert again.status_code == 200
    assert again.json()["cache_hit"] is True
    assert "Traceback" not in server.log.read_text()[-20_000:]
    assert log_bytes < 20_000


@pytest.mark.usefixtures("redis_down")
def test_read_your_write_while_redis_is_down(server: Server, deployment: Deployment) -> None:
    """A score answered 200 is found by an immediate read, on the same worker or the other."""
    agent = {"X-API-Key": deployment.keys["globex-agent"]}
    assert _health(server.url) == "degraded"
    missing = []
    with httpx.Client(base_url=server.url, timeout=10) as kept:
        for i in range(150):
            lead_id = f"ryw-{i}"
            # Half over one kept-alive connection (one worker), half over a new connection
            # each time (either worker: the read may land on the one that did not score).
            if i % 2:
                scored = kept.post(SCORE, json=lead(lead_id), headers=agent)
                read = kept.get(f"{SCORE}/{lead_id}", headers=agent)
            else:
                scored = httpx.post(server.url + SCORE, json=lead(lead_id), headers=agent)
                read = httpx.get(f"{server.url}{SCORE}/{lead_id}", headers=agent)
            assert scored.status_code == 200, scored.text
            if read.status_code != 200:
                missing.append((lead_id, read.status_code))
            else:
                assert read.json()["lead_id"] == lead_id
    assert missing == []
