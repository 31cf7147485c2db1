"""The lead queue live, its filters and sort, the lead detail and the team view, each in the
browser against the list, detail and stats API of a real server; screenshots of every view."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from ..api.conftest import COLD, Deployment, hot_data
from .conftest import Watched, score, sign_in

LIVE_MS = 2_000  # a score reaches an open queue within this, without a reload


@pytest.fixture(scope="module")
def seeded(server: Any, deployment: Deployment) -> list[dict[str, Any]]:
    """A few leads of each kind, scored before any page opens."""
    key = deployment.keys["acme-agent"]
    with httpx.Client(base_url=server.url, timeout=30) as http:
        return [
            *(score(http, key, f"Hot Hana {i}", **hot_data()) for i in range(3)),
            *(score(http, key, f"Cold Cody {i}", **COLD) for i in range(3)),
            # Bigger budgets than the hot leads': commission ranks them differently from score.
            *(
                score(http, key, f"Plain Pat {i}", budget_range=f"{2 + i}M-{3 + i}M")
                for i in range(3)
            ),
        ]


def api_leads(client: httpx.Client, key: str, **params: Any) -> list[dict[str, Any]]:
    response = client.get("/api/v1/ml/leads", params=params, headers={"X-API-Key": key})
    assert response.status_code == 200, response.text
    leads: list[dict[str, Any]] = response.json()["leads"]
    return leads


def shown_ids(page: Page) -> list[str]:
    ids: list[str] = page.eval_on_selector_all(
        "#queue-rows tr", "rows => rows.map(r => r.dataset.id)"
    )
    return ids


def wait_for_ids(page: Page, wanted: list[str]) -> None:
    """Until the queue shows exactly these rows, in this order."""
    deadline = time.monotonic() + 10
    while shown_ids(page) != wanted:
        assert time.monotonic() < deadline, f"the queue shows {shown_ids(page)}, not {wanted}"
        page.wait_for_timeout(50)


def test_a_scored_lead_appears_and_a_new_score_moves_its_row_live(
    open_page: Callable[..., Watched],
    deployment: Deployment,
    client: httpx.Client,
    seeded: list[dict[str, Any]],
) -> None:
    key = deployment.keys["acme-agent"]
    watched = open_page()
    page = watched.page
    sign_in(watched, key)
    wait_for_ids(page, [lead["lead_id"] for lead in api_leads(client, key)])
    page.evaluate("window.notReloaded = true")

    cold = score(client, key, "Casey Newcomer", source="Zillow", **COLD)
    row = page.locator(f'#queue-rows tr[data-id="{cold["lead_id"]}"]')
    expect(row).to_be_visible(timeout=LIVE_MS)
    expect(row).to_contain_text("Casey Newcomer")
    expect(row.locator(".score-value")).to_have_text(f"{cold['ml_score']:.1f}")
    # A new lead's row from the event alone: its source, and the question to ask first.
    expect(row).to_contain_text("Zillow")
    assert cold["qualification"]["needed"]
    assert cold["qualification"]["ask_next"]
    first = cold["qualification"]["ask_next"][0]["question"]
    expect(row.locator(".question")).to_have_text(first)

    # The same lead, now hot: its row shows the new score and moves up to its rank.
    hot = score(client, key, "Casey Newcomer", lead_id=cold["lead_id"], **hot_data())
    assert hot["ml_score"] > cold["ml_score"] + 20
    expect(row.locator(".score-value")).to_have_text(f"{hot['ml_score']:.1f}", timeout=LIVE_MS)
    expect(row.locator(".change")).to_have_text(re.compile(r"^\+\d+\.\d$"))
    expected = [lead["lead_id"] for lead in api_leads(client, key)]
    assert shown_ids(page)[: len(expected)] == expected  # the same order the API ranks by
    assert page.evaluate("window.notReloaded") is True
    expect(page.locator("#queue-rows tr")).to_have_count(len(expected))
    watched.shot("queue-light", full_page=False)


@pytest.mark.parametrize(
    ("control", "value", "params"),
    [
        ("Class", "hot", {"classification": "hot"}),
        ("Class", "cold", {"classification": "cold"}),
        ("Qualification", "needed", {"qualification": "needed"}),
        ("Sort by", "expected_commission", {"sort": "expected_commission"}),
        ("Sort by", "scored_at", {"sort": "scored_at"}),
    ],
)
def test_filters_and_sort_change_the_list_as_the_api_does(
    open_page: Callable[..., Watched],
    deployment: Deployment,
    client: httpx.Client,
    seeded: list[dict[str, Any]],
    control: str,
    value: str,
    params: dict[str, str],
) -> None:
    key = deployment.keys["acme-agent"]
    watched = open_page()
    page = watched.page
    sign_in(watched, key)
    everything = [lead["lead_id"] for lead in api_leads(client, key)]
    wait_for_ids(page, everything)
    page.get_by_label(control, exact=True).select_option(value)
    wanted = [lead["lead_id"] for lead in api_leads(client, key, **params)]
    assert wanted != everything  # the control must change something for the test to mean it
    wait_for_ids(page, wanted)
    if "classification" in params:
        badges = page.locator("#queue-rows td:nth-child(3) .badge")
        expect(badges).to_have_text([value.capitalize()] * len(wanted))


def test_search_and_min_score_narrow_the_list(
    open_page: Callable[..., Watched],
    deployment: Deployment,
    client: httpx.Client,
    seeded: list[dict[str, Any]],
) -> None:
    key = deployment.keys["acme-agent"]
    watched = open_page()
    page = watched.page
    sign_in(watched, key)
    page.get_by_label("Search").fill("Hot Hana 1")
    wait_for_ids(page, [seeded[1]["lead_id"]])
    page.get_by_label("Search").fill("")
    page.get_by_label("Min score").fill("60")
    wait_for_ids(page, [lead["lead_id"] for lead in api_leads(client, key, min_score=60)])
    scores = page.eval_on_selector_all("#queue-rows tr", "rows => rows.map(r => +r.dataset.score)")
    assert scores
    assert min(scores) >= 60


def test_a_live_lead_that_fails_the_filter_stays_out(
    open_page: Callable[..., Watched],
    deployment: Deployment,
    client: httpx.Client,
    seeded: list[dict[str, Any]],
) -> None:
    key = deployment.keys["acme-agent"]
    watched = open_page()
    page = watched.page
    sign_in(watched, key)
    page.get_by_label("Class", exact=True).select_option("hot")
    hot_ids = [lead["lead_id"] for lead in api_leads(client, key, classification="hot")]
    wait_for_ids(page, hot_ids)
    cold = score(client, key, "Cody Filtered", **COLD)
    hot = score(client, key, "Hana Passes", **hot_data())
    expect(page.locator(f'#queue-rows tr[data-id="{hot["lead_id"]}"]')).to_be_visible(
        timeout=LIVE_MS
    )
    # One socket delivers in order: the cold lead's event came first and was left out.
    expect(page.locator(f'#queue-rows tr[data-id="{cold["lead_id"]}"]')).to_have_count(0)


def test_the_detail_view_shows_the_waterfall_history_and_questions(
    open_page: Callable[..., Watched],
    deployment: Deployment,
    client: httpx.Client,
    seeded: list[dict[str, Any]],
) -> None:
    key = deployment.keys["acme-agent"]
    lead = seeded[6]  # the contract's example lead: thin enough to have questions
    again = score(client, key, "Plain Pat 0", lead_id=lead["lead_id"], pre_approved=False)
    detail = client.get(f"/api/v1/ml/leads/{lead['lead_id']}", headers={"X-API-Key": key}).json()
    latest = detail["latest"]
    assert latest["ml_score"] == again["ml_score"]
    watched = open_page()
    page = watched.page
    sign_in(watched, key)
    row = page.locator(f'#queue-rows tr[data-id="{lead["lead_id"]}"]')
    row.focus()
    page.keyboard.press("Enter")  # keyboard opens a lead as a click does
    expect(page.locator("#view-lead")).to_be_visible()
    steps = page.locator(".waterfall .step")
    groups = {g: p for g, p in latest["group_contributions"].items() if p != 0}
    expect(steps).to_have_count(len(groups) + 2)
    expect(steps.first).to_contain_text("Base rate")
    expect(steps.last.locator(".step-value")).to_have_text(f"{latest['ml_score']:.1f}")
    values = [
        float(v.replace("−", "-").replace("±", ""))
        for v in steps.locator(".step-value").all_inner_texts()
    ]
    base, *points, total = values
    assert base + sum(points) == pytest.approx(total, abs=0.05 * len(values))
    biggest = max(groups.values(), key=abs)
    assert points[0] == pytest.approx(biggest, abs=0.05)  # largest step first
    history = page.locator("#card-score-history").locator("..")
    change = detail["history"][0]["change"]
    assert change is not None, detail["history"]
    expect(history).to_contain_text(change["summary"])
    expect(history.locator("canvas").first).to_be_visible()  # two scores: a chart
    asks = latest["qualification"]["ask_next"]
    assert asks, "the example lead should have questions to ask"
    ask_card = page.locator("#card-ask-next").locator("..")
    for question in asks:
        expect(ask_card).to_contain_text(question["question"])
        expect(ask_card).to_contain_text(f"{question['score_if_yes']:.1f}")
    expect(page.locator("#card-lead-data").locator("..")).to_contain_text("Plain Pat 0")
    watched.shot("detail-light")
    page.get_by_role("link", name="← Queue").click()
    expect(page.locator("#view-queue")).to_be_visible()


def test_the_team_view_shows_the_stats(
    open_page: Callable[..., Watched],
    deployment: Deployment,
    client: httpx.Client,
    seeded: list[dict[str, Any]],
) -> None:
    key = deployment.keys["acme-admin"]
    watched = open_page(scheme="dark")
    page = watched.page
    sign_in(watched, key)
    page.get_by_role("link", name="Team").click()
    stats = client.get("/api/v1/ml/stats", headers={"X-API-Key": key}).json()
    kpis = page.locator("#team-kpis")
    expect(kpis).to_contain_text(f"{stats['classes']['hot']} · ")
    scores = int(kpis.locator(".kpi-value").first.inner_text().replace(",", ""))
    assert scores >= stats["scores"] - 5  # the page asked a moment before (leads may be scored)
    expect(page.locator("#team-body canvas").first).to_be_visible()
    expect(page.locator("#team-body")).to_contain_text("Commission pipeline")
    watched.shot("team-dark")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_views_fit_a_phone(
    open_page: Callable[..., Watched],
    deployment: Deployment,
    seeded: list[dict[str, Any]],
    scheme: str,
) -> None:
    watched = open_page(width=390, height=844, scheme=scheme)
    page = watched.page
    sign_in(watched, deployment.keys["acme-admin"])
    expect(page.locator("#queue-rows tr").first).to_be_visible()
    for view in ("queue", "lead", "team", "model", "upload"):
        if view == "lead":
            page.locator("#queue-rows tr").first.click()
        else:
            page.goto(f"{watched.origin}/dashboard#/{view}")
        expect(page.locator(f"#view-{view}")).to_be_visible()
        page.wait_for_timeout(500)  # charts draw after their module loads
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{view} overflows the phone's width: {width}px"
        watched.shot(f"phone-{view}-{scheme}", full_page=view != "queue")
        if view == "lead":
            page.goto(f"{watched.origin}/dashboard#/queue")
