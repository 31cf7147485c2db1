"""PostgreSQL stopped under load, and the server killed under load: on real processes."""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from .conftest import Answer, Dependencies, Deployment, Load, lead, serve, wait_for

SCORE = "/api/v1/ml/score"
OUTCOMES = "/api/v1/ml/outcomes"
#: Every answer, during an outage too, within this (the brief's bound).
MAX_SECONDS = 2.0


def _summary(answers: list[Answer]) -> dict[str, dict[int, int]]:
    counts: dict[str, dict[int, int]] = {}
    for answer in answers:
        by_status = counts.setdefault(answer.name, {})
        by_status[answer.status] = by_status.get(answer.status, 0) + 1
    return counts


def test_postgres_stopped_under_load_answers_503_fast_and_recovers(
    deployment: Deployment, dependencies: Dependencies, tmp_path: Path
) -> None:
    agent = {"X-API-Key": deployment.keys["acme-agent"]}
    # A key no worker has cached: during the outage its lookup needs the database.
    fresh = {"X-API-Key": deployment.keys["spare-agent"]}
    occurred = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    with serve(deployment, tmp_path / "server.log") as server:
        seeds = [f"seed-{i}" for i in range(4)]
        for lead_id in seeds:
            assert httpx.post(server.url + SCORE, json=lead(lead_id), headers=agent).is_success

        def score(client: httpx.Client, i: int) -> tuple[str, httpx.Response, str | None]:
            lead_id = f"outage-{i}"
            return "score", client.post(SCORE, json=lead(lead_id), headers=agent), lead_id

        def latest(client: httpx.Client, i: int) -> tuple[str, httpx.Response, str | None]:
            return "latest", client.get(f"{SCORE}/{seeds[i % 4]}", headers=agent), None

        def history(client: httpx.Client, i: int) -> tuple[str, httpx.Response, str | None]:
            return "history", client.get(f"{SCORE}/{seeds[i % 4]}/history", headers=agent), None

        def status(client: httpx.Client, i: int) -> tuple[str, httpx.Response, str | None]:
            return "status", client.get("/api/v1/ml/model/status", headers=agent), None

        def outcome(client: httpx.Client, i: int) -> tuple[str, httpx.Response, str | None]:
            body = {"lead_id": seeds[i % 4], "outcome": "converted", "occurred_at": occurred}
            return "outcome", client.post(OUTCOMES, json=body, headers=agent), None

        outage_started = threading.Event()

        def cold_key(client: httpx.Client, i: int) -> tuple[str, httpx.Response, str | None]:
            time.sleep(0.05)
            if not outage_started.is_set():
                return latest(client, i)
            lead_id = f"fresh-{i}"
            return "fresh key", client.post(SCORE, json=lead(lead_id), headers=fresh), lead_id

        log_before = server.log_bytes()
        with Load(server.url, [score, latest, history, status, outcome, cold_key]) as load:
            time.sleep(2.0)
            down_at = time.monotonic()
            dependencies.stop_postgres()
            outage_started.set()
            time.sleep(8.0)
            dependencies.start_postgres()
            up_at = time.monotonic()

            def recovered() -> bool:
                window = load.between(time.monotonic() - 1.0, time.monotonic())
                names = {a.name for a in window if a.status == 200}
                return names >= {"score", "latest", "history", "status", "outcome", "fresh key"}

            recovery_seconds = wait_for(
                recovered,
                30,
                "every route answers 200 again (times since the restart)",
                lambda: load.recent(since=up_at),
            )
            time.sleep(1.0)
        log_bytes = server.log_bytes() - log_before

        answers = load.answers
        outage = load.between(down_at, up_at)
        print(f"\nanswers: {_summary(answers)}; during the outage: {_summary(outage)}")
        worst = max(answers, key=lambda a: a.seconds)
        print(
            f"worst latency {worst.seconds * 1000:.0f} ms ({worst.name} {worst.status}); "
            f"recovered {recovery_seconds:.1f} s after the restart; log {log_bytes} bytes"
        )
        assert len(outage) > 30
        assert {a.status for a in answers} <= {200, 503}, _summary(answers)
        assert worst.seconds < MAX_SECONDS
        refused = [a for a in answers if a.status == 503]
        # Reads that need the database, and a key never seen, are refused during the outage.
        assert {"history", "status", "outcome", "fresh key"} <= {a.name for a in refused}
        for answer in refused:
            assert answer.body is not None
            assert answer.body["error"] in ("database_unavailable", "persistence_backlog")
            assert int(answer.headers["retry-after"]) >= 1
        # The outage is logged as state changes and counts, not a traceback per request.
        log = server.log.read_text()
        assert "Traceback" not in log, log[-3000:]
        assert log_bytes < 50_000, log[-3000:]

        # Recovered without a restart: every score acknowledged (during the outage too) is
        # written, and reads see it.
        ok = {a.lead_id for a in answers if a.lead_id and a.status == 200}
        probe = httpx.get(f"{server.url}{SCORE}/seed-0/history", headers=agent)
        assert probe.status_code == 200
        acknowledged = {i for i in ok if i.startswith("outage-")}

        def stored() -> set[str]:
            return {
                row["lead_id"]
                for row in dependencies.query("SELECT DISTINCT lead_id FROM scores WHERE team_id = "
                                              "(SELECT id FROM teams WHERE name = 'acme')")
            }  # fmt: skip

        # Each worker's writer catches up on its own (the probe waited on one of them).
        wait_for(
            lambda: acknowledged <= stored(), 30, "every acknowledged score written",
            lambda: f"not written: {sorted(acknowledged - stored())[:20]}",
        )  # fmt: skip
        after = httpx.post(server.url + SCORE, json=lead("after-outage"), headers=agent)
        assert after.status_code == 200
        status = httpx.get(f"{server.url}/api/v1/ml/model/status", headers=agent).json()
        assert status["persistence"]["rejected_by_this_worker"] == 0  # an outage rejects none
        assert status["persistence"]["database_down"] is False
        again = httpx.get(f"{server.url}{SCORE}/after-outage/history", headers=agent)
        assert again.status_code == 200
        assert again.json()["scores"]


def test_kill_9_under_load_loses_no_acknowledged_durable_write(
    deployment: Deployment, dependencies: Dependencies, tmp_path: Path
) -> None:
    agent = {"X-API-Key": deployment.keys["globex-agent"]}
    occurred = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    with serve(deployment, tmp_path / "server.log", LEADSCORE_DURABLE_SCORES="true") as server:

        def make_score(thread: int):  # type: ignore[no-untyped-def]
            def score(client: httpx.Client, i: int) -> tuple[str, httpx.Response, str | None]:
                lead_id = f"crash-{thread}-{i}"
                return "score", client.post(SCORE, json=lead(lead_id), headers=agent), lead_id

            return score

        def outcome(client: httpx.Client, i: int) -> tuple[str, httpx.Response, str | None]:
            lead_id = f"crash-outcome-{i}"
            scored = client.post(SCORE, json=lead(lead_id), headers=agent)
            if scored.status_code != 200:
                return "score", scored, lead_id
            body = {"lead_id": lead_id, "outcome": "converted", "occurred_at": occurred}
            return "outcome", client.post(OUTCOMES, json=body, headers=agent), lead_id

        with Load(server.url, [make_score(0), make_score(1), make_score(2), outcome]) as load:
            time.sleep(4.0)
            server.kill()
            time.sleep(0.5)
    answers = load.answers
    scored = {a.lead_id for a in answers if a.status == 200 and a.lead_id}
    outcomes = {a.lead_id for a in answers if a.name == "outcome" and a.status == 200}
    print(f"\nanswers before the kill: {_summary(answers)}")
    assert len(scored) > 50
    assert len(outcomes) > 5
    team = "(SELECT id FROM teams WHERE name = 'globex')"
    stored_scores = {
        r["lead_id"]
        for r in dependencies.query(f"SELECT lead_id FROM scores WHERE team_id = {team}")
    }
    stored_outcomes = {
        r["lead_id"]
        for r in dependencies.query(f"SELECT lead_id FROM outcomes WHERE team_id = {team}")
    }
    assert scored - stored_scores == set()
    assert outcomes - stored_outcomes == set()


def test_a_durable_score_during_an_outage_is_refused_fast_and_written_after_it(
    deployment: Deployment, dependencies: Dependencies, tmp_path: Path
) -> None:
    agent = {"X-API-Key": deployment.keys["acme-admin"]}
    with (
        serve(deployment, tmp_path / "server.log", LEADSCORE_DURABLE_SCORES="true") as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        assert client.post(SCORE, json=lead("durable-before"), headers=agent).is_success
        dependencies.stop_postgres()
        try:
            started = time.monotonic()
            refused = client.post(SCORE, json=lead("durable-during"), headers=agent)
            seconds = time.monotonic() - started
        finally:
            dependencies.start_postgres()
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"] == "database_unavailable"
        assert int(refused.headers["retry-after"]) >= 1
        assert seconds < MAX_SECONDS
        # Not acknowledged, but not lost either: it was queued, and is written after.
        wait_for(
            lambda: bool(
                dependencies.query("SELECT 1 FROM scores WHERE lead_id = 'durable-during'")
            ),
            30,
            "the refused durable score is written once the database is back",
        )
        after = client.post(SCORE, json=lead("durable-after"), headers=agent)
        assert after.status_code == 200


def test_a_worker_respawned_during_an_outage_waits_for_the_database_and_the_others_serve(
    deployment: Deployment, dependencies: Dependencies, tmp_path: Path
) -> None:
    admin = {"X-API-Key": deployment.keys["acme-admin"]}  # cached by every worker (serve)
    with (
        serve(deployment, tmp_path / "server.log") as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        killed = server.worker_pid(deployment)
        assert killed is not None
        dependencies.stop_postgres()
        try:
            os.kill(killed, signal.SIGKILL)  # uvicorn respawns it: its startup needs the database
            during = [
                client.post(SCORE, json=lead(f"respawn-{i}"), headers=admin) for i in range(5)
            ]
            # Until the new worker met the outage (or, failing its startup, stopped them all).
            wait_for(
                lambda: (
                    "starting: waiting" in server.log.read_text()
                    or server.process.poll() is not None
                ),
                60,
                "the respawned worker reaches the database",
            )
            supervisor_alive = server.process.poll() is None
        finally:
            dependencies.start_postgres()
        # Both workers serve again: the survivor and the one that waited for the database.
        workers = server.wait_for_workers(deployment, 2, time.monotonic() + 30, without=killed)
        after = client.post(SCORE, json=lead("respawn-after"), headers=admin)
    log = server.log.read_text()
    assert supervisor_alive, log[-3000:]
    assert [r.status_code for r in during] == [200] * 5  # write-behind: the survivor scores
    assert len(workers) == 2
    assert after.status_code == 200
    assert "Application startup failed" not in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    assert "database down: starting: waiting up to 30 s" in log


def test_every_worker_reports_the_database_up_again_after_an_outage_without_writes(
    deployment: Deployment, dependencies: Dependencies, tmp_path: Path
) -> None:
    admin = {"X-API-Key": deployment.keys["acme-admin"]}  # cached by every worker (serve)
    with serve(deployment, tmp_path / "server.log") as server:
        dependencies.stop_postgres()
        try:
            # New connections: each worker refuses a read (its outage begins), none writes.
            refused = [
                httpx.get(f"{server.url}{SCORE}/nobody/history", headers=admin, timeout=10)
                for _ in range(8)
            ]
        finally:
            dependencies.start_postgres()
        reports: dict[int, bool] = {}
        deadline = time.monotonic() + 30
        while len(reports) < 2:
            assert time.monotonic() < deadline, reports
            status = httpx.get(f"{server.url}/api/v1/ml/model/status", headers=admin, timeout=10)
            if status.status_code == 200:
                body = status.json()
                reports[body["worker_pid"]] = body["persistence"]["database_down"]
    assert {r.status_code for r in refused} == {503}
    assert reports == dict.fromkeys(reports, False), reports
