"""The team and model views once a team has history: outcomes fill the conversion-by-band and
calibration charts, 300 scored leads give a drift report (a server of this module's own)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from leadscore.engine.io import frame_to_leads
from leadscore.engine.synthetic import generate

from ..api.conftest import Deployment, ServerThread
from .conftest import Watched, sign_in

LEADS = 300


@pytest.fixture(scope="module")
def history(deployment: Deployment, client_module: httpx.Client) -> list[dict[str, Any]]:
    """300 generated leads scored over the API, each with its generated outcome."""
    headers = {"X-API-Key": deployment.keys["acme-agent"]}
    frame = generate(LEADS, seed=31)
    leads = [lead.model_dump(mode="json", exclude_none=True) for lead in frame_to_leads(frame)]
    for start in range(0, LEADS, 100):
        response = client_module.post(
            "/api/v1/ml/batch-score", json={"leads": leads[start : start + 100]}, headers=headers
        )
        assert response.status_code == 200, response.text
    now = datetime.now(UTC).isoformat()
    outcomes = [
        {"lead_id": lead["lead_id"], "outcome": "converted" if hit else "lost", "occurred_at": now}
        for lead, hit in zip(leads, frame["converted"].to_list(), strict=True)
    ]
    recorded = client_module.post("/api/v1/ml/outcomes", json=outcomes, headers=headers)
    assert recorded.status_code == 200, recorded.text
    return outcomes


@pytest.fixture(scope="module")
def client_module(server: ServerThread) -> Iterator[httpx.Client]:
    """A client that lives as long as the module's server (the history is built once)."""
    with httpx.Client(base_url=server.url, timeout=60) as http:
        yield http


def test_outcomes_fill_the_band_chart_and_the_calibration_curve(
    open_page: Callable[..., Watched], deployment: Deployment, history: list[dict[str, Any]]
) -> None:
    converted = sum(o["outcome"] == "converted" for o in history)
    assert 0 < converted < LEADS
    watched = open_page()
    sign_in(watched, deployment.keys["acme-admin"])
    page = watched.page
    page.get_by_role("link", name="Team").click()
    band = page.get_by_role("region", name="Conversion by score band")
    expect(band.locator("canvas").first).to_be_visible()
    expect(band).not_to_contain_text("No lead has an outcome yet")
    watched.shot("team-with-outcomes")
    page.get_by_role("link", name="Model").click()
    body = page.locator("#model-body")
    calibration = body.get_by_role("region", name="Calibration")
    expect(calibration).to_contain_text(f"on {LEADS} leads")
    expect(calibration.locator("canvas").first).to_be_visible()
    drift = body.get_by_role("region", name="Drift")
    expect(drift).to_contain_text("Score PSI")
    watched.shot("model-with-outcomes")
