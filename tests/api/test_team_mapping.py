"""A team's own CRM fields over HTTP: its mapping stored, learned by its model, scored with."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import polars as pl

from .conftest import ServerThread

Headers = Callable[[str], dict[str, str]]
URL = "/api/v1/ml/mapping"
MAPPING: dict[str, Any] = {
    "outcomes": {"conversion": {"column": "converted", "positive": [True]}},
    "attributes": {"categorical": ["agent"], "numeric": ["open_house_visits"]},
}
#: How often each agent's leads convert in the team's history: its strongest signal.
RATES = {"Dana": 0.7, "Sam": 0.25, "Lee": 0.03}


def history(tmp_path: Path, rows: int = 1200) -> bytes:
    """A canonical export (no mapping needed) whose outcomes follow the agent and the visits."""
    rng = np.random.default_rng(5)
    agents = rng.choice(list(RATES), rows)
    visits = rng.integers(0, 4, rows)
    p = np.array([RATES[a] for a in agents]) * (0.6 + 0.2 * visits)
    frame = pl.DataFrame({
        "lead_id": [f"h{i}" for i in range(rows)],
        "source": rng.choice(["zillow", "referral", "website"], rows),
        "attributes.agent": agents,
        "attributes.open_house_visits": visits,
        "converted": rng.random(rows) < np.minimum(p, 0.95),
    })  # fmt: skip
    path = tmp_path / "history.csv"
    frame.write_csv(path)
    return path.read_bytes()


def test_a_mapping_is_set_read_and_refused_when_wrong(
    client: httpx.Client, as_role: Headers
) -> None:
    admin, agent = as_role("globex-admin"), as_role("globex-agent")
    missing = client.get(URL, headers=admin)
    assert missing.status_code == 404, missing.text
    assert "no mapping yet" in missing.json()["detail"]
    assert client.put(URL, json=MAPPING, headers=agent).status_code == 403
    refusals = [
        ({"outcomes": {}}, "outcomes.conversion is required"),
        ({**MAPPING, "attributes": {"text": ["notes"]}}, "attributes.text: Extra inputs"),
        ({**MAPPING, "fields": {"favourite_colour": "c"}}, "unknown canonical field"),
        ({**MAPPING, "row_order": "random"}, "row_order: Input should be 'time'"),
    ]
    for document, message in refusals:
        refused = client.put(URL, json=document, headers=admin)
        assert refused.status_code == 422, refused.text
        assert message in refused.json()["detail"]
    assert client.get(URL, headers=admin).status_code == 404  # nothing refused was stored
    stored = client.put(URL, json=MAPPING, headers=admin)
    assert stored.status_code == 200, stored.text
    assert stored.json()["attributes"] == MAPPING["attributes"] | {"boolean": [], "date": []}
    read = client.get(URL, headers=agent)
    assert read.status_code == 200
    assert read.json() == stored.json()
    assert client.get(URL, headers=as_role("acme-admin")).status_code == 404  # its own only


def _score(client: httpx.Client, headers: dict[str, str], lead_id: str,
           attributes: dict[str, Any] | None) -> dict[str, Any]:  # fmt: skip
    data: dict[str, Any] = {"source": "website"}
    if attributes is not None:
        data["attributes"] = attributes
    answer = client.post("/api/v1/ml/score", json={"lead_id": lead_id, "lead_data": data},
                         headers=headers)  # fmt: skip
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_the_team_model_learns_its_fields_and_scores_with_them(
    server: ServerThread, client: httpx.Client, as_role: Headers, tmp_path: Path
) -> None:
    """Runs after the test above: globex's mapping declares `agent` and `open_house_visits`."""
    admin = as_role("globex-admin")
    files = {"export": ("history.csv", history(tmp_path), "text/csv")}
    started = client.post("/api/v1/ml/models/train/export", files=files,
                          data={"promote": "false"}, headers=admin)  # fmt: skip
    assert started.status_code == 202, started.text
    deadline = time.monotonic() + 120
    while not (mine := [m for m in client.get("/api/v1/ml/models", headers=admin).json()
                        if m["team_id"] is not None]):  # fmt: skip
        assert time.monotonic() < deadline, "the export never became a challenger"
        time.sleep(0.5)
    version = mine[0]["version"]
    detail = client.get(f"/api/v1/ml/models/{version}", headers=admin).json()
    assert {"agent", "open_house_visits"} <= set(detail["card"]["features"])
    promoted = client.post(f"/api/v1/ml/models/{version}/promote", json={}, headers=admin)
    assert promoted.status_code == 200, promoted.text  # through the gate: no force
    while _score(client, admin, "probe", None)["model_version"] != version:
        assert time.monotonic() < deadline, "the promoted model never served"
        time.sleep(0.2)
    dana = _score(client, admin, "d1", {"agent": "Dana", "open_house_visits": 3})
    lee = _score(client, admin, "l1", {"agent": "Lee", "open_house_visits": 0})
    unknown = _score(client, admin, "u1", {"agent": "Someone new", "open_house_visits": "two"})
    without = _score(client, admin, "n1", None)
    assert dana["ml_score"] > lee["ml_score"] + 20, (dana["ml_score"], lee["ml_score"])
    # The reasons name the team's own field and its value, in its words.
    texts = [r["text"] for r in dana["reasons"] if r["feature"] == "agent"]
    assert texts, dana["reasons"]
    assert texts[0].startswith("agent: dana: +")
    assert 0 <= unknown["ml_score"] <= 100  # an unseen agent and a word for a number: scored
    assert 0 <= without["ml_score"] <= 100
    # The global model's team is untouched: the same lead scores the same with or without.
    other = as_role("acme-admin")
    plain = _score(client, other, "g1", None)
    fielded = _score(client, other, "g2", {"agent": "Dana", "open_house_visits": 3})
    assert plain["ml_score"] == fielded["ml_score"]
    assert plain["model_version"] != version
