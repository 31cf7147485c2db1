"""The queue's downloads in the browser: CSV and Excel exports with the filters on screen, and
the broker's PDF report, each saved as a file."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable

import httpx
from playwright.sync_api import expect

from ..api.conftest import COLD, Deployment, hot_data
from ..reports.xlsx import read
from .conftest import Watched, score, sign_in


def test_export_buttons_download_the_filtered_leads_and_the_report(
    open_page: Callable[..., Watched], deployment: Deployment, client: httpx.Client
) -> None:
    key = deployment.keys["acme-viewer"]
    writer = deployment.keys["acme-agent"]
    hot = [score(client, writer, f"Hot Buyer {k}", f"dl_hot_{k}", **hot_data()) for k in range(3)]
    cold = [score(client, writer, f"Cold Browser {k}", f"dl_cold_{k}", **COLD) for k in range(2)]
    assert all(s["classification"] == "hot" for s in hot)
    assert all(s["classification"] == "cold" for s in cold)
    watched = open_page()
    page = watched.page
    sign_in(watched, key)
    page.get_by_label("Class").select_option("hot")
    expect(page.locator('#queue-rows tr[data-id="dl_cold_0"]')).to_have_count(0)
    expect(page.locator('#queue-rows tr[data-id="dl_hot_0"]')).to_be_visible()
    watched.shot("queue-downloads")

    with page.expect_download() as csv_download:
        page.get_by_role("button", name="Export CSV").click()
    saved = csv_download.value
    assert saved.suggested_filename.startswith("leads-acme-")
    assert saved.suggested_filename.endswith(".csv")
    rows = list(csv.DictReader(io.StringIO(saved.path().read_text(encoding="utf-8-sig"))))
    ids = {row["lead_id"] for row in rows}
    assert {f"dl_hot_{k}" for k in range(3)} <= ids
    assert not ids & {"dl_cold_0", "dl_cold_1"}
    assert {row["classification"] for row in rows} == {"hot"}
    expect(page.locator("#download-status")).to_contain_text("downloaded")

    with page.expect_download() as xlsx_download:
        page.get_by_role("button", name="Export Excel").click()
    saved = xlsx_download.value
    assert saved.suggested_filename.endswith(".xlsx")
    sheet = read(saved.path().read_bytes())
    assert {row[0] for row in sheet.rows[1:]} == ids

    with page.expect_download() as pdf_download:
        page.get_by_role("button", name="PDF report").click()
    saved = pdf_download.value
    assert saved.suggested_filename.startswith("report-acme-")
    assert saved.path().read_bytes().startswith(b"%PDF-")
