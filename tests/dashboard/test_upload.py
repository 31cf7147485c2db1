"""Upload in the browser: a CSV of leads chosen in the page is scored in the background; the
progress bar follows the batch's live events to 100 % and the leads reach the queue."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl
from playwright.sync_api import expect

from leadscore.engine.io import write_frame
from leadscore.engine.synthetic import generate

from ..api.conftest import Deployment
from .conftest import Watched, sign_in

ROWS = 250  # three chunks of 100: the bar moves through in-progress events


def leads_csv(tmp_path: Path, n: int, prefix: str) -> Path:
    """Generated leads under fresh ids, as `write_frame` writes a CSV (canonical columns)."""
    frame = generate(n, seed=5).with_columns(
        pl.format("{}_{}", pl.lit(prefix), pl.int_range(pl.len())).alias("lead_id")
    )
    path = tmp_path / f"{prefix}.csv"
    write_frame(frame, path)
    return path


def test_upload_progress_reaches_100_percent_and_the_leads_reach_the_queue(
    open_page: Callable[..., Watched], deployment: Deployment, tmp_path: Path
) -> None:
    watched = open_page()
    page = watched.page
    sign_in(watched, deployment.keys["acme-agent"])
    page.get_by_label("Sort by").select_option("scored_at")
    page.get_by_role("link", name="Upload").click()
    expect(page.locator("#view-upload")).to_be_visible()
    watched.shot("upload-empty")
    page.get_by_label("Choose a CSV file").set_input_files(leads_csv(tmp_path, ROWS, "upl"))
    bar = page.locator("#upload-progress")
    expect(bar).to_have_attribute("data-status", "completed", timeout=60_000)
    expect(bar).to_have_js_property("value", 100)
    expect(page.locator("#upload-status")).to_contain_text(f"{ROWS} of {ROWS} leads scored")
    watched.shot("upload-done")
    page.get_by_role("link", name="Queue").click()
    expect(page.locator('#queue-rows tr[data-id^="upl_"]').first).to_be_visible()


def test_a_file_the_server_refuses_says_why(
    open_page: Callable[..., Watched], deployment: Deployment, tmp_path: Path
) -> None:
    watched = open_page()
    page = watched.page
    sign_in(watched, deployment.keys["acme-agent"])
    page.get_by_role("link", name="Upload").click()
    bad = tmp_path / "no-ids.csv"
    bad.write_text("name,email\nAda,ada@example.com\n")
    page.get_by_label("Choose a CSV file").set_input_files(bad)
    expect(page.locator("#upload-error")).to_contain_text("lead_id")
    watched.expect_errors("422")
