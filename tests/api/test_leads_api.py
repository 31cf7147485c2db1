"""The leads list, one lead's page and the team stats over real HTTP, on both backends.

Every expectation is recomputed here from the score bodies the API returned when the test
scored its leads, and from the outcomes it recorded.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import orjson
import pytest

from leadscore.core.timestamps import iso_z

from .conftest import COLD, Deployment, ServerThread, hot_data, lead

Headers = Callable[[str], dict[str, str]]
LEADS = "/api/v1/ml/leads"
SORT_KEYS = {
    "score": "ml_score",
    "expected_commission": "expected_commission",
    "scored_at": "scored_at",
    "change": "change_points",
}
NAMES = ["Ana Ruiz", "Ben Okafor", "Chloe Ruiz-Park", "Dev Patel"]
SOURCES = ["zillow", "Referral", "Zillow", "open_house"]


def _data(kind: int) -> dict[str, Any]:
    """Four kinds of lead data: the example, hot, cold (no budget: no commission), lukewarm."""
    if kind == 1:
        return hot_data()
    if kind == 2:
        return dict(COLD)
    if kind == 3:
        return {"pre_approved": False, "timeline": "6-12 months"}
    return {}


def _lead(index: int, kind: int) -> dict[str, Any]:
    body = lead(
        f"lst_{index:02d}",
        name=NAMES[index % 4],
        email=f"user{index}@{'example.org' if index % 2 else 'mail.test'}",
        source=SOURCES[index % 4],
        **_data(kind),
    )
    body.pop("options")
    return body


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class Scored:
    """What the test sent and got back: every score body in order, the latest per lead."""

    bodies: list[dict[str, Any]] = field(default_factory=list)
    data: dict[str, dict[str, Any]] = field(default_factory=dict)
    latest: dict[str, dict[str, Any]] = field(default_factory=dict)
    change: dict[str, float | None] = field(default_factory=dict)
    converted: dict[str, bool] = field(default_factory=dict)

    def took(self, sent: list[dict[str, Any]], bodies: list[dict[str, Any]]) -> None:
        for item, body in zip(sent, bodies, strict=True):
            lead_id = item["lead_id"]
            before = self.latest.get(lead_id)
            self.change[lead_id] = (
                round(body["ml_score"] - before["ml_score"], 2) if before else None
            )
            self.latest[lead_id] = body
            self.data[lead_id] = item["lead_data"]
            self.bodies.append(body)

    def item(self, lead_id: str) -> dict[str, Any]:
        """The list item the API should show for a lead."""
        body, data = self.latest[lead_id], self.data[lead_id]
        ask = body["qualification"]["ask_next"]
        commission = body["commission"] or {}
        return {
            "lead_id": lead_id,
            "name": data.get("name"),
            "email": data.get("email"),
            "source": data.get("source"),
            "ml_score": body["ml_score"],
            "classification": body["classification"],
            "ml_confidence": body["ml_confidence"],
            "qualification_needed": body["qualification"]["needed"],
            "top_question": {"field": ask[0]["field"], "question": ask[0]["question"]}
            if ask
            else None,
            "reasons": (body["reasons"] or [])[:2],
            "expected_commission": commission.get("expected_commission"),
            "change_points": self.change[lead_id],
            "scored_at": body["scored_at"],
            "model_version": body["model_version"],
        }

    def ordered(
        self, sort: str, keep: Callable[[dict[str, Any]], bool] = lambda _: True
    ) -> list[str]:
        """Lead ids as the list orders them: key descending, then lead id descending, the
        leads without a value last (by lead id descending too)."""
        key = SORT_KEYS[sort]
        items = [i for i in (self.item(x) for x in self.latest) if keep(i)]
        valued = [i for i in items if i[key] is not None]
        empty = [i for i in items if i[key] is None]
        valued.sort(key=lambda i: (i[key], i["lead_id"]), reverse=True)
        empty.sort(key=lambda i: i["lead_id"], reverse=True)
        return [i["lead_id"] for i in valued + empty]


def _post(client: httpx.Client, path: str, body: Any, headers: dict[str, str]) -> Any:
    response = client.post(path, json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def scored(server: ServerThread, deployment: Deployment) -> Scored:
    """Twelve leads of team acme scored in a batch, then rescored: up, down, unchanged, and
    one lead twice in one batch; outcomes for six of them."""
    agent = {"X-API-Key": deployment.keys["acme-agent"]}
    record = Scored()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        first = [_lead(i, i % 4) for i in range(12)]
        record.took(
            first, _post(client, "/api/v1/ml/batch-score", {"leads": first}, agent)["results"]
        )
        for index, kind in ((0, 1), (2, 0), (5, 2), (4, 0)):  # lst_04 as it was: 0 points
            again = _lead(index, kind) | {"options": {"force_refresh": True}}
            record.took([again], [_post(client, "/api/v1/ml/score", again, agent)])
        twice = [_lead(3, 2), _lead(3, 1)]  # the change of the second is since the first
        record.took(
            twice, _post(client, "/api/v1/ml/batch-score", {"leads": twice}, agent)["results"]
        )
        occurred = iso_z(datetime.now(UTC) - timedelta(hours=1))
        outcomes = [("lst_00", "converted"), ("lst_01", "closed"), ("lst_02", "lost"),
                    ("lst_05", "lost"), ("lst_06", "converted"), ("lst_09", "lost")]  # fmt: skip
        _post(
            client,
            "/api/v1/ml/outcomes",
            [{"lead_id": x, "outcome": o, "occurred_at": occurred} for x, o in outcomes],
            agent,
        )
        record.converted = {x: o in ("converted", "closed") for x, o in outcomes}
    return record


def _pages(
    client: httpx.Client, headers: dict[str, str], limit: int, **params: Any
) -> list[list[dict[str, Any]]]:
    pages: list[list[dict[str, Any]]] = []
    cursor = None
    while True:
        query = params | {"limit": limit} | ({"cursor": cursor} if cursor else {})
        response = client.get(LEADS, params=query, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["leads"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 50, "the cursor never ended"


def test_the_data_has_ties_nulls_and_changes(scored: Scored) -> None:
    """The cases the orders below must handle are really in the data."""
    scores = [b["ml_score"] for b in scored.latest.values()]
    assert len(set(scores)) < len(scores)  # ties on the score
    items = [scored.item(x) for x in scored.latest]
    assert any(i["expected_commission"] is None for i in items)
    assert {i["classification"] for i in items} >= {"hot", "cold"}
    changes = [c for c in scored.change.values() if c is not None]
    assert any(c > 0 for c in changes)
    assert any(c < 0 for c in changes)
    assert 0.0 in changes
    assert len({i["scored_at"] for i in items}) > 1


@pytest.mark.parametrize("sort", list(SORT_KEYS))
@pytest.mark.parametrize("limit", [1, 5, 200])
def test_every_sort_pages_in_order_without_gaps(
    client: httpx.Client, as_role: Headers, scored: Scored, sort: str, limit: int
) -> None:
    pages = _pages(client, as_role("acme-viewer"), limit, sort=sort)
    assert all(len(page) == limit for page in pages[:-1])
    assert len(pages[-1]) <= limit
    items = [item for page in pages for item in page]
    assert [i["lead_id"] for i in items] == scored.ordered(sort)
    assert items == [scored.item(i["lead_id"]) for i in items]


def test_default_sort_is_score_and_default_limit_covers_the_team(
    client: httpx.Client, as_role: Headers, scored: Scored
) -> None:
    body = client.get(LEADS, headers=as_role("acme-viewer")).json()
    assert [i["lead_id"] for i in body["leads"]] == scored.ordered("score")
    assert body["next_cursor"] is None


FILTERS: list[tuple[dict[str, Any], Callable[[dict[str, Any]], bool]]] = [
    ({"classification": "hot"}, lambda i: i["classification"] == "hot"),
    ({"classification": "cold"}, lambda i: i["classification"] == "cold"),
    ({"qualification": "needed"}, lambda i: i["qualification_needed"]),
    ({"qualification": "not_needed"}, lambda i: not i["qualification_needed"]),
    ({"source": "ZILLOW"}, lambda i: i["source"].lower() == "zillow"),
    ({"source": "referral"}, lambda i: i["source"] == "Referral"),
    ({"q": "ruiz"}, lambda i: "ruiz" in i["name"].lower()),
    ({"q": "EXAMPLE.ORG"}, lambda i: "example.org" in i["email"]),
    ({"q": "%"}, lambda i: "%" in i["name"] + i["email"]),  # a literal, not a wildcard
    ({"classification": "hot", "source": "zillow"},
     lambda i: i["classification"] == "hot" and i["source"].lower() == "zillow"),
]  # fmt: skip


@pytest.mark.parametrize(("params", "keep"), FILTERS)
def test_filters(
    client: httpx.Client,
    as_role: Headers,
    scored: Scored,
    params: dict[str, Any],
    keep: Callable[[dict[str, Any]], bool],
) -> None:
    for sort in ("score", "change"):
        pages = _pages(client, as_role("acme-viewer"), 2, sort=sort, **params)
        got = [i["lead_id"] for page in pages for i in page]
        assert got == scored.ordered(sort, keep)


def test_min_score_and_scored_since(client: httpx.Client, as_role: Headers, scored: Scored) -> None:
    scores = sorted({b["ml_score"] for b in scored.latest.values()})
    middle = scores[len(scores) // 2]
    got = _pages(client, as_role("acme-viewer"), 3, min_score=middle)
    expected = scored.ordered("score", lambda i: i["ml_score"] >= middle)
    assert [i["lead_id"] for p in got for i in p] == expected
    assert 0 < len(expected) < len(scored.latest)
    times = sorted({b["scored_at"] for b in scored.latest.values()})
    since = times[1]
    got = _pages(client, as_role("acme-viewer"), 3, sort="scored_at", scored_since=since)
    expected = scored.ordered("scored_at", lambda i: _at(i["scored_at"]) >= _at(since))
    assert [i["lead_id"] for p in got for i in p] == expected
    assert 0 < len(expected) < len(scored.latest)
    # The same instant in another zone keeps the same leads.
    shifted = _at(since).astimezone(timezone(timedelta(hours=-5, minutes=-30))).isoformat()
    for value in (shifted,):
        again = _pages(client, as_role("acme-viewer"), 50, sort="scored_at", scored_since=value)
        assert [i["lead_id"] for p in again for i in p] == expected


@pytest.mark.parametrize(
    "params",
    [
        {"classification": "lukewarm"},
        {"qualification": "yes"},
        {"min_score": 101},
        {"min_score": -1},
        {"limit": 0},
        {"limit": 201},
        {"sort": "name"},
        {"scored_since": "yesterday"},
        {"scored_since": "2026-01-01T00:00:00"},  # no zone
        {"cursor": "garbage!"},
        {"cursor": base64.urlsafe_b64encode(b"[1, 2]").decode()},
        {"cursor": base64.urlsafe_b64encode(b'["score", "high", "lst_01"]').decode()},
        {"cursor": base64.urlsafe_b64encode(b'["nope", 1.0, "lst_01"]').decode()},
    ],
)
def test_bad_queries_are_422(
    client: httpx.Client, as_role: Headers, scored: Scored, params: dict[str, Any]
) -> None:
    response = client.get(LEADS, params=params, headers=as_role("acme-viewer"))
    assert response.status_code == 422, response.text
    assert set(response.json()) == {"error", "detail"}


@pytest.mark.parametrize("other", ["scored_at", "expected_commission", "change"])
def test_a_cursor_of_another_sort_is_422(
    client: httpx.Client, as_role: Headers, scored: Scored, other: str
) -> None:
    headers = as_role("acme-viewer")
    cursor = client.get(LEADS, params={"limit": 2}, headers=headers).json()["next_cursor"]
    assert cursor is not None
    response = client.get(LEADS, params={"sort": other, "cursor": cursor}, headers=headers)
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_cursor"
    assert "sort=score" in response.json()["detail"]


def test_another_team_sees_none_of_it(
    client: httpx.Client, as_role: Headers, scored: Scored
) -> None:
    other = as_role("globex-viewer")
    assert client.get(LEADS, headers=other).json() == {"leads": [], "next_cursor": None}
    assert client.get(f"{LEADS}/lst_00", headers=other).status_code == 404
    stats = client.get("/api/v1/ml/stats", headers=other).json()
    assert stats["scores"] == 0
    assert stats["conversion_by_band"] == []
    assert stats["commission_pipeline"] == {"hot": 0.0, "warm": 0.0, "cold": 0.0}
    # acme's cursor leads another team nowhere either
    cursor = client.get(LEADS, params={"limit": 1}, headers=as_role("acme-viewer")).json()
    got = client.get(LEADS, params={"cursor": cursor["next_cursor"]}, headers=other).json()
    assert got["leads"] == []
    assert client.get(LEADS, headers=as_role("acme-admin")).json()["leads"]


def test_detail_has_latest_data_score_and_history_with_change(
    client: httpx.Client, as_role: Headers, scored: Scored
) -> None:
    headers = as_role("acme-viewer")
    for lead_id in ("lst_00", "lst_03", "lst_07"):
        detail = client.get(f"{LEADS}/{lead_id}", headers=headers)
        assert detail.status_code == 200, detail.text
        body = detail.json()
        assert body["lead_id"] == lead_id
        assert body["lead_data"]["name"] == scored.data[lead_id]["name"]
        assert body["lead_data"]["source"] == scored.data[lead_id]["source"]
        assert body["latest"] == scored.latest[lead_id]
        mine = [b for b in scored.bodies if b["lead_id"] == lead_id][::-1]
        assert [h["ml_score"] for h in body["history"]] == [b["ml_score"] for b in mine]
        assert [h["scored_at"] for h in body["history"]] == [b["scored_at"] for b in mine]
        assert body["history"][-1]["change"] is None
        for entry, before in zip(body["history"], mine[1:], strict=False):
            assert entry["change"]["points"] == round(entry["ml_score"] - before["ml_score"], 2)
        assert _at(body["first_seen_at"]) == _at(mine[-1]["scored_at"])
        assert _at(body["updated_at"]) == _at(mine[0]["scored_at"])
        history = client.get(f"/api/v1/ml/score/{lead_id}/history", headers=headers).json()
        assert body["history"] == history["scores"]
    one = client.get(f"{LEADS}/lst_00", params={"history_limit": 1}, headers=headers).json()
    assert len(one["history"]) == 1
    assert one["history"][0]["change"]["points"] == scored.change["lst_00"]
    assert client.get(f"{LEADS}/nobody", headers=headers).status_code == 404
    bad = client.get(f"{LEADS}/lst_00", params={"history_limit": 0}, headers=headers)
    assert bad.status_code == 422


def test_stats_figures_match_what_was_sent(
    client: httpx.Client, as_role: Headers, scored: Scored
) -> None:
    headers = as_role("acme-viewer")
    first = min(_at(b["scored_at"]) for b in scored.bodies)
    since = first - timedelta(seconds=90.5)
    until = datetime.now(UTC) + timedelta(seconds=1)
    response = client.get(
        "/api/v1/ml/stats", params={"since": iso_z(since), "until": iso_z(until)}, headers=headers
    )
    assert response.status_code == 200, response.text
    stats = response.json()
    bodies = scored.bodies
    assert stats["scores"] == len(bodies)
    bins = [0] * 10
    for b in bodies:
        bins[min(int(b["ml_score"] // 10), 9)] += 1
    assert [(d["lower"], d["upper"], d["count"]) for d in stats["score_distribution"]] == [
        (10 * i, 10 * i + 10, bins[i]) for i in range(10)
    ]
    assert stats["classes"] == {
        c: sum(b["classification"] == c for b in bodies) for c in ("hot", "warm", "cold")
    }
    needed = sum(b["qualification"]["needed"] for b in bodies)
    assert stats["qualification_rate"] == pytest.approx(needed / len(bodies))
    assert stats["bucket_seconds"] == 60
    minutes = math.ceil((until - since).total_seconds() / 60)
    assert len(stats["scores_per_minute"]) == minutes
    per_minute = [0] * minutes
    for b in bodies:
        per_minute[int((_at(b["scored_at"]) - since).total_seconds() // 60)] += 1
    assert [p["count"] for p in stats["scores_per_minute"]] == per_minute
    assert _at(stats["scores_per_minute"][1]["minute"]) == since + timedelta(minutes=1)
    bands: dict[int, list[tuple[float, bool]]] = {}
    for lead_id, converted in scored.converted.items():
        score = scored.latest[lead_id]["ml_score"]
        bands.setdefault(min(int(score // 10), 9), []).append((score, converted))
    assert stats["conversion_by_band"] == [
        {
            "lower": 10 * band,
            "upper": 10 * band + 10,
            "leads": len(members),
            "expected": pytest.approx(sum(s for s, _ in members) / len(members) / 100, abs=1e-4),
            "actual": pytest.approx(sum(c for _, c in members) / len(members), abs=1e-4),
        }
        for band, members in sorted(bands.items())
    ]
    pipeline = {"hot": 0.0, "warm": 0.0, "cold": 0.0}
    for item in (scored.item(x) for x in scored.latest):
        pipeline[item["classification"]] += item["expected_commission"] or 0.0
    assert stats["commission_pipeline"] == {
        c: pytest.approx(v, abs=0.01) for c, v in pipeline.items()
    }
    live = client.get("/api/v1/ml/metrics/performance", headers=headers).json()
    assert stats["latency_ms"] == live["latency_ms"]
    assert stats["latency_ms"]["p50"] is not None
    assert stats["cache_hit_rate"] == live["cache_hit_rate"]
    # A window after every score holds none of them.
    later = client.get(
        "/api/v1/ml/stats",
        params={"since": iso_z(until), "until": iso_z(until + timedelta(minutes=1))},
        headers=headers,
    ).json()
    assert later["scores"] == 0
    assert later["qualification_rate"] is None
    # The default window is the last day: it holds every score of this test.
    assert client.get("/api/v1/ml/stats", headers=headers).json()["scores"] == len(bodies)


def test_stats_buckets_grow_for_long_windows(
    client: httpx.Client, as_role: Headers, scored: Scored
) -> None:
    until = datetime.now(UTC) + timedelta(seconds=1)
    since = until - timedelta(days=7)
    stats = client.get(
        "/api/v1/ml/stats",
        params={"since": iso_z(since), "until": iso_z(until)},
        headers=as_role("acme-viewer"),
    ).json()
    assert stats["bucket_seconds"] == 7 * 60
    assert len(stats["scores_per_minute"]) == 1440
    assert sum(p["count"] for p in stats["scores_per_minute"]) == len(scored.bodies)


@pytest.mark.parametrize(
    "params",
    [
        {"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
        {"since": "last tuesday"},
        {"until": "2026-01-01"},
        {"since": "2026-01-01T00:00:00"},
        {"until": "0001-01-01T00:00:00Z"},
        {"since": "0001-01-01T00:00:00+05:00"},
    ],
)
def test_bad_stats_windows_are_422(
    client: httpx.Client, as_role: Headers, params: dict[str, str]
) -> None:
    response = client.get("/api/v1/ml/stats", params=params, headers=as_role("acme-viewer"))
    assert response.status_code == 422, response.text
    assert set(response.json()) == {"error", "detail"}


def test_unauthenticated_is_401(client: httpx.Client) -> None:
    for path in (LEADS, f"{LEADS}/lst_00", "/api/v1/ml/stats"):
        assert client.get(path).status_code == 401


def test_cursor_is_opaque_json_of_the_keyset(
    client: httpx.Client, as_role: Headers, scored: Scored
) -> None:
    """Not a contract for clients: only that paging resumes strictly after the last lead."""
    page = client.get(LEADS, params={"limit": 3}, headers=as_role("acme-viewer")).json()
    raw = page["next_cursor"]
    decoded = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    assert decoded[0] == "score"
    assert decoded[2] == page["leads"][-1]["lead_id"]
