"""Exports (CSV, XLSX) and the PDF report over real HTTP, on both backends.

Every export is checked against what the leads list answers for the same filters.
"""

from __future__ import annotations

import csv
import io
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import polars as pl
import pytest
from matplotlib import image

from leadscore.core.timestamps import iso_z

from ..api.conftest import COLD, hot_data, lead, worker_env
from .xlsx import read

Headers = Callable[[str], dict[str, str]]
LEADS = "/api/v1/ml/leads"
EXPORT = "/api/v1/ml/leads/export"
REPORT = "/api/v1/ml/report.pdf"
NAMES = ["Ana Ruiz", "Ben Okafor", "=cmd|' /C calc'!A0", "Dev Patel", "Émile Zoë"]
SOURCES = ["zillow", "Referral", "Zillow", "open_house", "facebook"]
TOP_NAME = "Harriet Topscore"


def _lead(prefix: str, index: int) -> dict[str, Any]:
    kind = index % 4
    data: dict[str, Any] = (
        hot_data() if kind == 1 else dict(COLD) if kind == 2
        else {"pre_approved": False, "timeline": "6-12 months"} if kind == 3 else {}
    )  # fmt: skip
    body = lead(
        f"{prefix}_{index:02d}",
        name=NAMES[index % len(NAMES)],
        email=f"user{index}@{'example.org' if index % 2 else 'mail.test'}",
        source=SOURCES[index % len(SOURCES)],
        **data,
    )
    body.pop("options")
    return body


@pytest.fixture(scope="module")
def scored(server: Any, deployment: Any) -> dict[str, list[str]]:
    """30 acme leads and 6 globex leads scored; a few acme outcomes recorded."""
    headers = {"X-API-Key": deployment.keys["acme-agent"]}
    with httpx.Client(base_url=server.url, timeout=60) as http:
        acme = [_lead("exp", i) for i in range(30)]
        best = lead("exp_top", name=TOP_NAME, email="harriet@example.org", **hot_data())
        best.pop("options")
        best["lead_data"]["pre_approved"] = True
        acme.append(best)
        response = http.post("/api/v1/ml/batch-score", json={"leads": acme}, headers=headers)
        assert response.status_code == 200, response.text
        globex = [_lead("gbx", i) for i in range(6)]
        response = http.post(
            "/api/v1/ml/batch-score", json={"leads": globex},
            headers={"X-API-Key": deployment.keys["globex-agent"]},
        )  # fmt: skip
        assert response.status_code == 200, response.text
        now = iso_z(datetime.now(UTC) - timedelta(minutes=1))
        outcomes = [
            {"lead_id": f"exp_{i:02d}", "outcome": "converted" if i % 3 == 0 else "lost",
             "occurred_at": now}
            for i in range(0, 30, 2)
        ]  # fmt: skip
        response = http.post(
            "/api/v1/ml/outcomes", json=outcomes,
            headers={"X-API-Key": deployment.keys["acme-admin"]},
        )  # fmt: skip
        assert response.status_code < 300, response.text
    return {"acme": [b["lead_id"] for b in acme], "globex": [b["lead_id"] for b in globex]}


def _listed(client: httpx.Client, headers: dict[str, str], params: dict[str, Any]) -> list[Any]:
    """Every lead of the list for these filters, all pages."""
    leads: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = client.get(
            LEADS, params={**params, "limit": 7, **({"cursor": cursor} if cursor else {})},
            headers=headers,
        )  # fmt: skip
        assert page.status_code == 200, page.text
        body = page.json()
        leads += body["leads"]
        cursor = body["next_cursor"]
        if cursor is None:
            return leads


def _number(text: str) -> float | None:
    return None if text == "" else float(text)


FILTERS = [
    {},
    {"classification": "hot"},
    {"qualification": "needed", "sort": "expected_commission"},
    {"min_score": 30, "sort": "scored_at"},
    {"source": "ZILLOW", "sort": "change"},
    {"q": "ruiz"},
    {"classification": "warm", "min_score": 99.5},  # nothing
]


@pytest.mark.parametrize("params", FILTERS, ids=lambda p: ",".join(p) or "all")
def test_csv_is_the_lists_rows(
    client: httpx.Client, as_role: Headers, scored: dict[str, list[str]], params: dict[str, Any]
) -> None:
    headers = as_role("acme-viewer")
    listed = _listed(client, headers, params)
    response = client.get(EXPORT, params={**params, "format": "csv"}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    disposition = response.headers["content-disposition"]
    assert re.fullmatch(r'attachment; filename="leads-acme-\d{8}-\d{4}\.csv"', disposition)
    assert response.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert [r["lead_id"] for r in rows] == [item["lead_id"] for item in listed]
    for row, item in zip(rows, listed, strict=True):
        name = item["name"]
        assert row["name"] == ("'" + name if name.startswith("=") else name)
        assert row["email"] == item["email"]
        assert row["source"] == item["source"]
        assert float(row["ml_score"]) == item["ml_score"]
        assert row["classification"] == item["classification"]
        assert float(row["ml_confidence"]) == item["ml_confidence"]
        assert row["qualification_needed"] == str(item["qualification_needed"]).lower()
        assert _number(row["expected_commission"]) == item["expected_commission"]
        assert _number(row["change_points"]) == item["change_points"]
        assert row["scored_at"] == item["scored_at"]
        assert row["model_version"] == item["model_version"]
        assert row["reasons"] == "; ".join(r["text"] for r in item["reasons"])
        question = item["top_question"]
        assert row["top_question"] == (question["question"] if question else "")
    if params == {}:
        assert len(rows) == len(scored["acme"])


def test_filters_narrow_the_export(client: httpx.Client, as_role: Headers, scored: Any) -> None:
    headers = as_role("acme-viewer")
    every = client.get(EXPORT, headers=headers).text.splitlines()
    hot = client.get(EXPORT, params={"classification": "hot"}, headers=headers).text.splitlines()
    assert 1 < len(hot) < len(every)
    assert all(",hot," in line for line in hot[1:])


@pytest.mark.parametrize("params", FILTERS[:4], ids=lambda p: ",".join(p) or "all")
def test_xlsx_is_the_lists_rows_typed(
    client: httpx.Client, as_role: Headers, scored: Any, params: dict[str, Any]
) -> None:
    headers = as_role("acme-agent")
    listed = _listed(client, headers, params)
    response = client.get(EXPORT, params={**params, "format": "xlsx"}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/vnd.openxmlformats")
    assert response.headers["content-disposition"].endswith('.xlsx"')
    sheet = read(response.content)
    assert sheet.rows[0][:3] == ["Lead ID", "Name", "Email"]
    assert sheet.frozen_rows == 1
    assert sheet.autofilter == f"A1:N{max(len(listed), 1) + 1}"
    assert len(sheet.widths) == 14
    assert min(sheet.widths) >= 8
    body = sheet.rows[1:]
    assert [row[0] for row in body] == [item["lead_id"] for item in listed]
    for row, formats, item in zip(body, sheet.formats[1:], listed, strict=True):
        row += [None] * (14 - len(row))
        formats += [None] * (14 - len(formats))
        assert row[1] == item["name"]  # text, never a formula
        assert row[4] == item["ml_score"]
        assert isinstance(row[4], float)
        assert row[6] == pytest.approx(item["ml_confidence"])
        assert formats[6] == "0.0%"
        assert row[7] is item["qualification_needed"]
        if item["expected_commission"] is None:
            assert row[8] is None
        else:
            assert row[8] == pytest.approx(item["expected_commission"])
            assert "$" in (formats[8] or "")
        scored_at = datetime.fromisoformat(item["scored_at"]).replace(tzinfo=None)
        assert isinstance(row[10], datetime)
        assert abs(row[10] - scored_at) < timedelta(milliseconds=5)
        assert row[12] == ("; ".join(r["text"] for r in item["reasons"]) or None)


def test_another_team_sees_none_of_it(
    client: httpx.Client, as_role: Headers, scored: dict[str, list[str]]
) -> None:
    for fmt in ("csv", "xlsx"):
        theirs = client.get(EXPORT, params={"format": fmt}, headers=as_role("globex-viewer"))
        assert theirs.status_code == 200
        ids = (
            [r["lead_id"] for r in csv.DictReader(io.StringIO(theirs.content.decode("utf-8-sig")))]
            if fmt == "csv" else [row[0] for row in read(theirs.content).rows[1:]]
        )  # fmt: skip
        assert sorted(ids) == sorted(scored["globex"])


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"format": "pdf"}, "format"),
        ({"format": ""}, "format"),
        ({"min_score": 101}, "min_score"),
        ({"min_score": "high"}, "min_score"),
        ({"classification": "lukewarm"}, "classification"),
        ({"scored_since": "yesterday"}, "scored_since"),
        ({"scored_since": "2026-01-01T00:00:00"}, "scored_since"),  # no zone
        ({"sort": "name"}, "sort"),
        ({"q": ""}, "q"),
    ],
)
def test_bad_exports_are_422(
    client: httpx.Client, as_role: Headers, params: dict[str, Any], field: str
) -> None:
    response = client.get(EXPORT, params=params, headers=as_role("acme-viewer"))
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "validation_error"
    assert field in str(body["detail"])


def test_out_of_range_instant_is_422_not_500(client: httpx.Client, as_role: Headers) -> None:
    response = client.get(
        EXPORT, params={"scored_since": "0001-01-01T00:00:00+14:00"},
        headers=as_role("acme-viewer"),
    )  # fmt: skip
    assert response.status_code == 422, response.text
    assert "scored_since" in response.text


def test_exports_and_report_need_a_key(client: httpx.Client) -> None:
    assert client.get(EXPORT).status_code == 401
    assert client.get(REPORT).status_code == 401


def _pdf_pages(body: bytes, tmp_path: Path) -> tuple[list[Path], str]:
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(body)
    subprocess.run(["pdftoppm", "-r", "60", "-png", str(pdf), str(tmp_path / "page")],
                   check=True, timeout=120)  # fmt: skip
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], check=True,
                          capture_output=True, text=True, timeout=60).stdout  # fmt: skip
    return sorted(tmp_path.glob("page-*.png")), text


@pytest.mark.parametrize("paper", ["a4", "letter"])
def test_report_pdf_reads_on_paper(
    client: httpx.Client, as_role: Headers, scored: Any, tmp_path: Path, paper: str
) -> None:
    since = iso_z(datetime.now(UTC) - timedelta(days=2))
    response = client.get(
        REPORT, params={"since": since, "paper": paper}, headers=as_role("acme-viewer")
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    assert re.fullmatch(
        r'attachment; filename="report-acme-\d{8}-\d{4}\.pdf"',
        response.headers["content-disposition"],
    )
    pages, text = _pdf_pages(response.content, tmp_path)
    assert len(pages) == 5
    for page in pages:
        pixels = image.imread(page)[..., :3]
        inked = (pixels.mean(axis=2) < 0.9).mean()
        assert inked > 0.01, f"{page.name} is blank"
    height, width = image.imread(pages[0]).shape[:2]
    expected = (8.27, 11.69) if paper == "a4" else (8.5, 11.0)
    assert abs(width / height - expected[0] / expected[1]) < 0.01
    for heading in ("Lead report: acme", "At a glance", "Pipeline by class", "Leads to call first",
                    "Conversion by score band", "Score distribution", "Qualification queue",
                    "Model health", "Serving model", "Live quality", "Drift"):  # fmt: skip
        assert heading in text, heading
    assert TOP_NAME in text
    assert "gbx_" not in text
    assert "Okafor" in text


def test_report_is_for_the_callers_team(client: httpx.Client, as_role: Headers, scored: Any,
                                        tmp_path: Path) -> None:  # fmt: skip
    response = client.get(REPORT, headers=as_role("globex-viewer"))
    assert response.status_code == 200
    _, text = _pdf_pages(response.content, tmp_path)
    assert "Lead report: globex" in text
    assert TOP_NAME not in text


@pytest.mark.parametrize(
    "since",
    ["yesterday", "2026-01-01T00:00:00", "0001-01-01T00:00:00+14:00", "future"],
)
def test_bad_report_since_is_422(client: httpx.Client, as_role: Headers, since: str) -> None:
    if since == "future":
        since = iso_z(datetime.now(UTC) + timedelta(days=1))
    response = client.get(REPORT, params={"since": since}, headers=as_role("acme-viewer"))
    assert response.status_code == 422, response.text
    assert "since" in response.text


def _cli(deployment: Any, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The command as a user runs it, against the same database as the server."""
    return subprocess.run(
        [sys.executable, "-m", "leadscore", *args], cwd=cwd, env=worker_env(deployment),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_cli_exports_every_format_with_the_lists_filters(
    client: httpx.Client, as_role: Headers, deployment: Any, scored: Any, tmp_path: Path
) -> None:
    params = {"classification": "cold", "sort": "expected_commission"}
    listed = _listed(client, as_role("acme-viewer"), params)
    args = ["--team", "acme", "--classification", "cold", "--sort", "expected_commission"]
    for name in ("leads.parquet", "leads.jsonl", "leads.xlsx"):
        done = _cli(deployment, "export", *args, "-o", name, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert f"{len(listed)} leads written" in done.stdout
    frame = pl.read_parquet(tmp_path / "leads.parquet")
    assert frame["lead_id"].to_list() == [item["lead_id"] for item in listed]
    assert frame["ml_score"].to_list() == [item["ml_score"] for item in listed]
    assert frame.schema["scored_at"] == pl.Datetime("us", "UTC")
    assert frame.schema["qualification_needed"] == pl.Boolean
    lines = (tmp_path / "leads.jsonl").read_bytes().splitlines()
    assert [orjson.loads(line) for line in lines] == listed
    sheet = read((tmp_path / "leads.xlsx").read_bytes())
    assert [row[0] for row in sheet.rows[1:]] == [item["lead_id"] for item in listed]


def test_cli_refuses_bad_input_in_one_line(deployment: Any, tmp_path: Path) -> None:
    bad = _cli(deployment, "export", "--team", "acme", "-o", "x.pdf", cwd=tmp_path)
    assert bad.returncode == 2
    assert "--format" in bad.stderr
    zone = _cli(deployment, "export", "--team", "acme", "-o", "x.csv", "--scored-since",
                "2026-01-01T00:00:00", cwd=tmp_path)  # fmt: skip
    assert zone.returncode == 2
    assert "give a zone" in zone.stderr
    assert "Traceback" not in zone.stderr
    nobody = _cli(deployment, "report", "--team", "nobody", cwd=tmp_path)
    assert nobody.returncode == 2
    assert "no team named 'nobody'" in nobody.stderr


def test_cli_report_writes_the_pdf(deployment: Any, scored: Any, tmp_path: Path) -> None:
    done = _cli(deployment, "report", "--team", "acme", "-o", "r.pdf", "--paper", "letter",
                cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    _, text = _pdf_pages((tmp_path / "r.pdf").read_bytes(), tmp_path)
    assert "Lead report: acme" in text
    assert TOP_NAME in text
