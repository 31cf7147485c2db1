"""Trials over HTTP on each backend: who may start one, what is refused and why, and a shadow
trial that stores the challenger's unseen scores without changing any answer."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx

from leadscore.engine.model import LeadModel
from tests.units import Committing

from .conftest import ServerThread, lead
from .test_live import open_ws, receive, subscribe, wait_for

Headers = Callable[[str], dict[str, str]]
TRIAL = "/api/v1/ml/models/trial"


def test_bad_trial_requests_are_refused_and_change_nothing(
    client: httpx.Client, as_role: Headers
) -> None:
    admin = as_role("acme-admin")
    for body in ({"mode": "canary"}, {"mode": "split", "share": 1.5}, {"mode": "split", "share": 0},
                 {"mode": "shadow", "extra": 1}, {}):  # fmt: skip
        response = client.put(TRIAL, json=body, headers=admin)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"] == "validation_error"
    assert client.put(TRIAL, json={"mode": "shadow", "team": True},
                      headers=as_role("acme-agent")).status_code == 403  # fmt: skip
    # No global models team is configured here: the global trial is the command line's.
    assert client.put(TRIAL, json={"mode": "shadow"}, headers=admin).status_code == 403
    refused = client.put(TRIAL, json={"mode": "shadow", "team": True}, headers=admin)
    assert refused.status_code == 409
    assert refused.json()["error"] == "trial_refused"
    assert "no challenger" in refused.json()["detail"]
    nothing = client.put(TRIAL, json={"mode": "off", "team": True}, headers=admin)
    assert nothing.status_code == 409
    assert client.get(f"{TRIAL}?team=true", headers=admin).json()["mode"] == "off"
    compare = client.get("/api/v1/ml/models/compare", headers=admin)
    assert compare.status_code == 409  # nothing to compare the champion with
    unknown = client.get("/api/v1/ml/models/compare?champion=abc&challenger=def", headers=admin)
    assert unknown.status_code == 404
    bad = client.get("/api/v1/ml/models/compare?champion=a/b", headers=admin)
    assert bad.status_code in (404, 422)


def test_a_shadow_trial_scores_unseen_and_ends_cleanly(
    server: ServerThread, client: httpx.Client, as_role: Headers, other_model_dir: Path
) -> None:
    admin, agent = as_role("globex-admin"), as_role("globex-agent")
    services = server.services
    registry = Committing(services.registry, services.sessions)
    team_id = server.call(registry.team_id("globex"))
    challenger = LeadModel.load(other_model_dir)
    server.call(registry.register(challenger, other_model_dir, team_id=team_id,
                                  trained_by="tests", as_challenger=True))  # fmt: skip
    champion = client.post("/api/v1/ml/score", json=lead("shadow_0"), headers=agent).json()
    with open_ws(server, admin) as ws:
        receive(ws)
        subscribe(ws, ["model_status"])
        started = client.put(TRIAL, json={"mode": "shadow", "team": True}, headers=admin)
        assert started.status_code == 200, started.text
        state = started.json()
        assert (state["mode"], state["scope"]) == ("shadow", str(team_id))
        assert (state["champion"], state["challenger"]) == (
            champion["model_version"], challenger.version_
        )  # fmt: skip
        event = wait_for(ws, "model_status", where=lambda m: m["data"]["status"] == "trial")
        assert event["data"]["detail"]["mode"] == "shadow"
    answers = [client.post("/api/v1/ml/score", json=lead(f"shadow_{i}"), headers=agent).json()
               for i in range(1, 21)]  # fmt: skip
    assert {a["model_version"] for a in answers} == {champion["model_version"]}  # never shown
    other_team = client.post("/api/v1/ml/score", json=lead("acme_1"), headers=as_role("acme-agent"))
    assert other_team.json()["model_version"] == champion["model_version"]
    deadline = time.monotonic() + 10
    while True:
        status = client.get("/api/v1/ml/model/status", headers=agent).json()["trial"]
        if status["shadow_scores"]["stored_by_this_worker"] >= 20:
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.1)
    assert status["challenger"] == challenger.version_
    assert status["shadow_scores"]["dropped"] == 0
    ended = client.put(TRIAL, json={"mode": "off", "team": True}, headers=admin)
    assert ended.status_code == 200, ended.text
    assert ended.json()["mode"] == "off"
    assert client.get("/api/v1/ml/model/status", headers=agent).json()["trial"] == {"mode": "off"}
    history = client.get(f"/api/v1/ml/models/{challenger.version_}", headers=admin).json()
    trials = [c for c in history["history"] if c["action"] == "trial"]
    assert [c["detail"]["mode"] for c in trials] == ["off", "shadow"]
