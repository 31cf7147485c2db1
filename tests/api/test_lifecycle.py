"""The model lifecycle end to end on two workers with PostgreSQL and Redis: score leads → post
outcomes → retrain → challenger → gate → shadow and split trials → comparison → promote → both
workers serve it (caches too) → rollback → the old version again."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from leadscore.engine.io import frame_to_leads
from leadscore.engine.synthetic import generate
from leadscore.models.holder import lead_share

from .conftest import Deployment, deploy, lead, serve_workers, wait_until_served

Headers = dict[str, str]


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Deployment:
    return deploy("postgres-redis", tmp_path_factory.mktemp("lifecycle"), model_dir)


@pytest.fixture(scope="module")
def url(lifecycle: Deployment) -> Iterator[str]:
    with serve_workers(lifecycle, 2) as running:
        yield running


def _leads(prefix: str, n: int, seed: int) -> list[dict[str, Any]]:
    frame = generate(n, seed=seed).drop("as_of")
    leads = [lead.model_dump(mode="json", exclude_none=True) for lead in frame_to_leads(frame)]
    return [body | {"lead_id": f"{prefix}_{i}"} for i, body in enumerate(leads)]


def _score(url: str, headers: Headers, leads: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    results = {}
    for start in range(0, len(leads), 100):
        response = httpx.post(f"{url}/api/v1/ml/batch-score", headers=headers, timeout=60,
                              json={"leads": leads[start : start + 100]})  # fmt: skip
        assert response.status_code == 200, response.text
        results |= {r["lead_id"]: r for r in response.json()["results"]}
    assert len(results) == len(leads)
    return results


def _post_outcomes(url: str, headers: Headers, converted: dict[str, bool]) -> None:
    """This team's buyers behave unlike the global model expects: its lowest scores convert."""
    now = datetime.now(UTC).isoformat()
    outcomes = [
        {"lead_id": lead_id, "outcome": "converted" if hit else "lost", "occurred_at": now}
        for lead_id, hit in converted.items()
    ]
    for start in range(0, len(outcomes), 1000):
        posted = httpx.post(f"{url}/api/v1/ml/outcomes", headers=headers, timeout=60,
                            json=outcomes[start : start + 1000])  # fmt: skip
        assert posted.status_code == 200, posted.text


def _inverted(scored: dict[str, dict[str, Any]]) -> dict[str, bool]:
    scores = {lead_id: r["ml_score"] for lead_id, r in scored.items()}
    cut = float(np.quantile(list(scores.values()), 0.3))
    return {lead_id: score <= cut for lead_id, score in scores.items()}


def _everywhere(url: str, headers: Headers, path: str, check: Any) -> dict[str, Any]:
    """Until 10 answers in a row (new connections: both workers) pass `check`."""
    deadline = time.monotonic() + 15
    while True:
        bodies = [httpx.get(f"{url}{path}", headers=headers).json() for _ in range(10)]
        if all(check(b) for b in bodies):
            return bodies[-1]
        assert time.monotonic() < deadline, f"not every worker got there: {bodies[-1]}"
        time.sleep(0.3)


def test_a_team_model_goes_from_outcomes_to_champion_and_back(
    url: str, lifecycle: Deployment
) -> None:
    agent = {"X-API-Key": lifecycle.keys["globex-agent"]}
    admin = {"X-API-Key": lifecycle.keys["globex-admin"]}
    other = {"X-API-Key": lifecycle.keys["acme-agent"]}
    history = _score(url, agent, _leads("past", 700, seed=41))
    [global_version] = {r["model_version"] for r in history.values()}
    _post_outcomes(url, agent, _inverted(history))

    started = httpx.post(f"{url}/api/v1/ml/models/train", json={}, headers=admin)
    assert started.status_code == 202, started.text
    job = started.json()["job"]
    deadline = time.monotonic() + 180
    while True:
        mine = [m for m in httpx.get(f"{url}/api/v1/ml/models", headers=admin).json()
                if m["team_id"] is not None]  # fmt: skip
        if mine:
            break
        assert time.monotonic() < deadline, "the training job never registered a challenger"
        time.sleep(0.5)
    [challenger] = mine
    team_version = challenger["version"]
    # Every worker reports the job, whichever ran it.
    done = _everywhere(url, admin, f"/api/v1/ml/models/jobs/{job}",
                       lambda j: j["state"] == "succeeded")  # fmt: skip
    assert done["version"] == team_version
    listed = _everywhere(url, admin, "/api/v1/ml/models/jobs", lambda js: js[0]["job"] == job)
    assert listed[0]["parent_version"] == global_version
    assert challenger["parent_version"] == global_version
    gate = httpx.get(f"{url}/api/v1/ml/models/{team_version}", headers=admin).json()["card"]["gate"]
    assert gate["passed"] is True, gate  # it learned what the global model gets wrong
    assert gate["challenger"]["auc"] > gate["champion"]["auc"] + 0.2

    # Shadow: the challenger scores every lead unseen; answers stay the champion's.
    trial = httpx.put(f"{url}/api/v1/ml/models/trial", json={"mode": "shadow", "team": True},
                      headers=admin)  # fmt: skip
    assert trial.status_code == 200, trial.text
    assert (trial.json()["mode"], trial.json()["challenger"]) == ("shadow", team_version)
    _everywhere(url, admin, "/api/v1/ml/model/status", lambda s: s["trial"]["mode"] == "shadow")
    fresh = _score(url, agent, _leads("fresh", 300, seed=42))
    assert {r["model_version"] for r in fresh.values()} == {global_version}
    _post_outcomes(url, agent, _inverted(fresh))
    report = _everywhere(url, admin, "/api/v1/ml/models/compare", lambda r: r["leads"] == 300)
    assert report["champion"]["version"] == global_version
    assert report["challenger"]["version"] == team_version
    assert report["scored_by_one_only"][global_version] == 700  # scored before the trial
    assert report["challenger"]["auc"] > report["champion"]["auc"] + 0.2
    assert report["challenger_not_worse"] is True
    assert report["auc_difference_ci"][0] > 0

    # Split: half the leads, chosen by a stable hash of lead_id, get the challenger's answer.
    split = httpx.put(f"{url}/api/v1/ml/models/trial", headers=admin,
                      json={"mode": "split", "share": 0.5, "team": True})  # fmt: skip
    assert split.status_code == 200, split.text
    _everywhere(url, admin, "/api/v1/ml/model/status", lambda s: s["trial"]["mode"] == "split")
    shared_leads = _leads("split", 200, seed=43)
    first = _score(url, agent, shared_leads)
    again = _score(url, agent, shared_leads)
    for lead_id, result in first.items():
        expected = team_version if lead_share(team_version, lead_id) < 0.5 else global_version
        assert result["model_version"] == again[lead_id]["model_version"] == expected
    assert 60 < sum(r["model_version"] == team_version for r in first.values()) < 140
    assert {r["model_version"] for r in _score(url, other, shared_leads).values()} == {
        global_version
    }  # another team runs no trial

    # Promotion: the gate passed, so no force; every worker, and the cache, follow.
    # A lead the split leaves with the champion, so its cached score is the old version's.
    probe_id = next(
        f"probe_{i}" for i in range(100) if lead_share(team_version, f"probe_{i}") >= 0.5
    )
    probe = lead(probe_id)
    before = [httpx.post(f"{url}/api/v1/ml/score", json=probe, headers=agent).json()
              for _ in range(2)]  # fmt: skip
    assert before[1]["cache_hit"] is True
    assert before[1]["model_version"] == global_version
    promoted = httpx.post(f"{url}/api/v1/ml/models/{team_version}/promote", json={},
                          headers=admin)  # fmt: skip
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["detail"]["trial"] == "ended"
    wait_until_served(url, agent, probe, team_version)
    assert httpx.get(f"{url}/api/v1/ml/models/trial?team=true", headers=admin).json()["mode"] == (
        "off"
    )
    wait_until_served(url, other, probe, global_version)  # acme keeps the global model

    # Rollback: one call, and both workers answer with the global model again.
    back = httpx.post(f"{url}/api/v1/ml/models/rollback", headers=admin)  # its own scope
    assert back.status_code == 200, back.text
    assert (back.json()["from_version"], back.json()["to_version"]) == (
        team_version, global_version
    )  # fmt: skip
    wait_until_served(url, agent, probe, global_version)
