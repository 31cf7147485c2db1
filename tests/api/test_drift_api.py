"""GET /api/v1/ml/model/drift over HTTP: shifted leads raise the alert (and its event), the
usual mix does not; each team sees only its own."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from leadscore.engine.io import frame_to_leads
from leadscore.engine.synthetic import generate

from .conftest import ServerThread
from .test_live import nothing_more, open_ws, receive, subscribe, wait_for

Headers = Callable[[str], dict[str, str]]


def recent(n: int, seed: int) -> list[dict[str, Any]]:
    """Generated leads moved in time so that, scored now, each looks as it did at its `as_of`:
    the very population the model was trained on, lead ages included."""
    frame = generate(n, seed=seed)
    now = datetime.now(UTC)
    leads = []
    for lead, as_of in zip(frame_to_leads(frame.drop("as_of")), frame["as_of"], strict=True):
        shift = now - as_of
        data = lead.lead_data
        history = [i.model_copy(update={"timestamp": i.timestamp + shift})
                   for i in data.interaction_history]  # fmt: skip
        moved = data.model_copy(update={
            "created_at": data.created_at + shift if data.created_at else None,
            "interaction_history": history,
        })  # fmt: skip
        leads.append({"lead_id": lead.lead_id,
                      "lead_data": moved.model_dump(mode="json", exclude_none=True)})  # fmt: skip
    return leads


def score_all(client: httpx.Client, leads: list[dict[str, Any]], headers: dict[str, str]) -> None:
    for start in range(0, len(leads), 100):
        response = client.post(
            "/api/v1/ml/batch-score", json={"leads": leads[start : start + 100]}, headers=headers
        )
        assert response.status_code == 200, response.text


def test_drift_alerts_on_a_shifted_mix_and_not_on_the_usual_one(
    server: ServerThread, client: httpx.Client, as_role: Headers
) -> None:
    early = client.get("/api/v1/ml/model/drift", headers=as_role("acme-viewer"))
    assert early.status_code == 200
    assert early.json()["alert"] is False  # nothing scored yet: nothing to compare
    assert "fewer than" in early.json()["detail"]
    usual = recent(600, seed=51)
    score_all(client, usual, as_role("globex-agent"))
    calm = client.get("/api/v1/ml/model/drift", headers=as_role("globex-viewer")).json()
    assert calm["rows"] == 600
    assert calm["alert"] is False, (calm["score_psi"], list(calm["feature_psi"].items())[:6])
    with (
        open_ws(server, as_role("acme-viewer")) as acme,
        open_ws(server, as_role("globex-viewer")) as globex,
    ):
        for ws in (acme, globex):
            receive(ws)
            subscribe(ws, ["model_status"])
        never_engaged = [
            lead for lead in recent(4_000, seed=52)
            if (lead["lead_data"].get("web_activity") or {}).get("properties_viewed", 0) <= 1
        ]  # fmt: skip
        score_all(client, never_engaged[:600], as_role("acme-agent"))
        report = client.get("/api/v1/ml/model/drift", headers=as_role("acme-viewer")).json()
        assert report["alert"] is True, report
        assert "properties_viewed" in report["drifted_features"]
        event = wait_for(acme, "model_status", where=lambda m: m["data"]["status"] == "drift_alert")
        assert event["data"]["detail"]["drifted_features"] == report["drifted_features"]
        assert nothing_more(globex, "model_status", 0.5)  # another team's alert stays its own
