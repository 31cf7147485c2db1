"""Retraining a team model from outcomes posted over HTTP: job, lease, gate, challenger."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

from leadscore.engine.io import frame_to_leads
from leadscore.engine.synthetic import generate
from leadscore.models.training import MIN_TEAM_LEADS

from .conftest import Deployment, ServerThread
from .test_live import open_ws, receive, subscribe, wait_for

Headers = Callable[[str], dict[str, str]]


@pytest.fixture(scope="module")
def history() -> pl.DataFrame:
    return generate(MIN_TEAM_LEADS + 100, seed=31).drop("as_of")


def test_a_team_model_trains_on_its_outcomes_and_waits_as_challenger(
    server: ServerThread, client: httpx.Client, as_role: Headers, history: pl.DataFrame
) -> None:
    agent, admin = as_role("globex-agent"), as_role("globex-admin")
    too_early = client.post("/api/v1/ml/models/train", json={}, headers=admin)
    assert too_early.status_code == 422, too_early.text  # no outcomes yet: the global model serves
    # No body: the team's own scope, which has no champion yet (never the global model).
    nothing = client.post("/api/v1/ml/models/rollback", headers=admin)
    assert nothing.status_code == 409, nothing.text
    assert "has no champion of its own" in nothing.json()["detail"]
    leads = [lead.model_dump(mode="json", exclude_none=True) for lead in frame_to_leads(history)]
    for start in range(0, len(leads), 100):
        scored = client.post(
            "/api/v1/ml/batch-score", json={"leads": leads[start : start + 100]}, headers=agent
        )
        assert scored.json()["succeeded"] == len(leads[start : start + 100])
    now = datetime.now(UTC).isoformat()
    outcomes: list[dict[str, Any]] = []
    for row in history.iter_rows(named=True):
        if row["closed"]:
            outcomes.append({"lead_id": row["lead_id"], "outcome": "closed", "occurred_at": now,
                             "sale_price": row["sale_price"] or None})  # fmt: skip
        elif row["converted"]:
            outcomes.append({"lead_id": row["lead_id"], "outcome": "converted", "occurred_at": now})
        else:
            outcomes.append({"lead_id": row["lead_id"], "outcome": "lost", "occurred_at": now})
    posted = client.post("/api/v1/ml/outcomes", json=outcomes, headers=agent)
    assert posted.status_code == 200, posted.text
    status = client.get("/api/v1/ml/model/status", headers=as_role("globex-viewer")).json()
    quality = status["live_quality"]["versions"][status["version"]]
    assert quality["n"] == len(outcomes)  # every scored lead now has its outcome
    assert 0.6 < quality["auc"] <= 1.0  # the scores did rank the converts first
    assert 0.0 < quality["brier"] < 0.25
    assert sum(b["n"] for b in quality["reliability"]) == len(outcomes)
    assert client.post("/api/v1/ml/models/train", json={}, headers=agent).status_code == 403
    with open_ws(server, admin) as ws:
        receive(ws)
        subscribe(ws, ["model_status"])
        started = client.post("/api/v1/ml/models/train", headers=admin)  # no body: defaults
        assert started.status_code == 202, started.text
        job = started.json()["job"]
        running = client.get(f"/api/v1/ml/models/jobs/{job}", headers=admin)
        assert running.status_code == 200, running.text
        assert (running.json()["state"], running.json()["finished_at"]) == ("running", None)
        busy = client.post("/api/v1/ml/models/train", json={}, headers=admin)
        assert busy.status_code == 409  # one job per team at a time
        assert busy.json()["error"] == "training_in_progress"
        progress = []
        while not progress or progress[-1]["status"] not in ("challenger", "training_failed"):
            event = wait_for(ws, "model_status", timeout=120,
                             where=lambda m: m["data"]["detail"].get("job") == job)  # fmt: skip
            progress.append(event["data"])
        assert [p["status"] for p in progress] == ["training_started", "challenger"], progress
    mine = [m for m in client.get("/api/v1/ml/models", headers=admin).json()
            if m["team_id"] is not None]  # fmt: skip
    [challenger] = mine
    assert challenger["aliases"] == [f"challenger@team:{challenger['team_id']}"]
    assert challenger["trained_at"] is not None
    deadline = time.monotonic() + 10  # the job records its end just after its last event
    while (done := client.get(f"/api/v1/ml/models/jobs/{job}", headers=admin).json())[
        "state"
    ] == "running":
        assert time.monotonic() < deadline, done
        time.sleep(0.1)
    assert (done["state"], done["version"], done["error"]) == ("succeeded", challenger["version"],
                                                                None)  # fmt: skip
    assert done["started_at"] <= done["finished_at"]
    assert done["actor"].startswith("key ")
    jobs = client.get("/api/v1/ml/models/jobs", headers=admin).json()
    assert jobs[0]["job"] == job
    assert client.get(f"/api/v1/ml/models/jobs/{job}", headers=agent).status_code == 403
    foreign = client.get(f"/api/v1/ml/models/jobs/{job}", headers=as_role("acme-admin"))
    assert foreign.status_code == 404  # another team's job does not exist for it
    assert job not in {
        j["job"] for j in client.get("/api/v1/ml/models/jobs", headers=as_role("acme-admin")).json()
    }
    assert challenger["trained_by"].startswith("key ")
    detail = client.get(f"/api/v1/ml/models/{challenger['version']}", headers=admin).json()
    gate = detail["card"]["gate"]
    assert gate["n"] >= 50
    assert len(gate["auc_difference_ci"]) == 2
    assert "conversion" in detail["card"]["metrics"]
    # The gate decides: promotion without force succeeds exactly when it passed.
    promote = client.post(
        f"/api/v1/ml/models/{challenger['version']}/promote", json={}, headers=admin
    )
    assert promote.status_code == (200 if gate["passed"] else 409), (gate, promote.text)
    if not gate["passed"]:
        forced = client.post(f"/api/v1/ml/models/{challenger['version']}/promote",
                             json={"force": True, "reason": "tests"}, headers=admin)  # fmt: skip
        assert forced.status_code == 200, forced.text
    global_version = client.get("/api/v1/ml/model/status", headers=as_role("acme-viewer")).json()
    back = client.post("/api/v1/ml/models/rollback", headers=admin)  # no body: the team's own
    assert back.status_code == 200, back.text
    assert back.json()["scope"] == str(challenger["team_id"])
    assert back.json()["detail"] == {"fallback": "global"}  # its first own model: back to global
    assert back.json()["to_version"] == global_version["version"]
    again = client.post("/api/v1/ml/models/rollback", json={"team": True}, headers=admin)
    assert again.status_code == 409
    # Other teams never see this team's model.
    others = client.get("/api/v1/ml/models", headers=as_role("acme-admin")).json()
    assert challenger["version"] not in {m["version"] for m in others}


def test_the_schedule_retrains_teams_with_enough_outcomes(
    deployment: Deployment, as_role: Headers
) -> None:
    """Runs after the test above: globex has its outcomes; acme has none."""
    admin = as_role("globex-admin")
    scheduled = deployment.start(retrain_interval_hours=0.0005)  # every 1.8 s
    try:
        with httpx.Client(base_url=scheduled.url, timeout=30) as http:
            before = {m["version"] for m in http.get("/api/v1/ml/models", headers=admin).json()}
            deadline = time.monotonic() + 120
            while True:
                models = http.get("/api/v1/ml/models", headers=admin).json()
                new = [m for m in models if m["version"] not in before]
                if new:
                    break
                assert time.monotonic() < deadline, "the schedule never retrained globex"
                time.sleep(0.5)
            assert new[0]["trained_by"] == "schedule"
            assert new[0]["team_id"] is not None
            acme = http.get("/api/v1/ml/models", headers=as_role("acme-admin")).json()
            assert all(m["team_id"] is None for m in acme)  # no outcomes: no team model
    finally:
        scheduled.stop()


def test_recalibration_keeps_the_trees_and_waits_as_challenger(
    client: httpx.Client, as_role: Headers
) -> None:
    """Runs after the tests above: globex has 600 leads with outcomes."""
    admin = as_role("globex-admin")
    serving = client.get("/api/v1/ml/model/status", headers=as_role("globex-viewer")).json()
    response = client.post("/api/v1/ml/models/recalibrate", headers=admin)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["parent_version"] == serving["version"]
    assert result["version"] != serving["version"]  # new calibration: a new artifact
    detail = client.get(f"/api/v1/ml/models/{result['version']}", headers=admin).json()
    assert detail["card"]["recalibrated"]["from_version"] == serving["version"]
    assert "conversion" in detail["card"]["recalibrated"]["heads"]
    assert detail["aliases"] == [f"challenger@team:{result['team_id']}"]
    assert detail["trained_by"].endswith("(recalibration)")
    assert result["gate"]["n"] >= 50
    # Same trees: the challenger ranks the hold-out exactly as the champion does.
    gate = result["gate"]
    assert abs(gate["challenger"]["auc"] - gate["champion"]["auc"]) < 0.02
    nobody = client.post("/api/v1/ml/models/recalibrate", headers=as_role("acme-admin"))
    assert nobody.status_code == 422  # acme has no outcomes


def test_an_uploaded_crm_export_trains_a_team_model(
    deployment: Deployment, client: httpx.Client, as_role: Headers, tmp_path: Path
) -> None:
    """Runs after the tests above: acme has no outcomes of its own, only its CRM history."""
    from ..engine.test_mapping import GOOD, export

    admin = as_role("acme-admin")
    url = "/api/v1/ml/models/train/export"
    crm = export(tmp_path, n=800, positives=200).read_bytes()
    mapping = ("crm.yaml", GOOD.encode(), "application/yaml")

    def upload(files: dict[str, tuple[str, bytes, str]], who: dict[str, str]) -> httpx.Response:
        return client.post(url, files=files, data={"promote": "false"}, headers=who)

    good = {"export": ("crm.csv", crm, "text/csv"), "mapping": mapping}
    assert upload(good, as_role("acme-agent")).status_code == 403
    refusals = [
        ({"export": ("crm.xls", crm, "application/octet-stream")}, "unsupported file type"),
        ({"export": ("crm.parquet", b"not parquet", "application/octet-stream")}, "cannot be read"),
        ({"export": ("crm.csv", crm, "text/csv"),
          "mapping": ("m.yaml", b"outcomes: {}", "application/yaml")}, "outcomes.conversion"),
        ({"export": ("crm.csv", export(tmp_path, n=400).read_bytes(), "text/csv"),
          "mapping": mapping}, "has 400 leads with outcomes; a team model needs 500"),
    ]  # fmt: skip
    for files, message in refusals:
        refused = upload(files, admin)
        assert refused.status_code == 422, refused.text
        assert message in refused.json()["detail"]
    assert upload({}, admin).status_code == 422  # no file at all
    started = upload(good, admin)
    assert started.status_code == 202, started.text
    deadline = time.monotonic() + 120
    while True:
        mine = [m for m in client.get("/api/v1/ml/models", headers=admin).json()
                if m["team_id"] is not None]  # fmt: skip
        if mine:
            break
        assert time.monotonic() < deadline, "the upload never became a challenger"
        time.sleep(0.5)
    detail = client.get(f"/api/v1/ml/models/{mine[0]['version']}", headers=admin).json()
    assert "800 of them from a CRM export" in detail["card"]["training_data"]["description"]
    assert detail["trained_by"].startswith("key ")
    uploads = deployment.settings.home / "uploads"
    assert uploads.is_dir()  # the export was streamed to a file there ...
    while list(uploads.iterdir()):  # ... which goes once its job is done
        assert time.monotonic() < deadline, "the upload's file outlived its job"
        time.sleep(0.1)
    small = deployment.start(max_upload_bytes=4096)
    try:
        with httpx.Client(base_url=small.url, timeout=30) as http:
            too_big = http.post(url, files=good, headers=admin)
    finally:
        small.stop()
    assert too_big.status_code == 413
