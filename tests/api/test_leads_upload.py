"""CSV lead uploads for scoring: checked before the 202, scored in the background with
progress events, every lead stored; bad rows fail alone; on both backends."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
from websockets.sync.client import ClientConnection

from leadscore.engine.io import write_frame
from leadscore.engine.synthetic import generate

from .conftest import Deployment, ServerThread
from .test_live import open_ws, receive, subscribe, wait_for

Headers = Callable[[str], dict[str, str]]
URL = "/api/v1/ml/leads/upload"
CSV = "text/csv"


def leads_csv(tmp_path: Path, n: int, prefix: str, seed: int = 11) -> bytes:
    """`n` generated leads (with their outcome and oracle columns, which scoring ignores) under
    fresh ids, as the CSV `write_frame` writes."""
    frame = generate(n, seed=seed).with_columns(
        pl.format("{}_{}", pl.lit(prefix), pl.int_range(pl.len())).alias("lead_id")
    )
    path = tmp_path / f"{prefix}.csv"
    write_frame(frame, path)
    return path.read_bytes()


def with_bad_row(csv: bytes, line: int, column: str, value: str) -> bytes:
    """The CSV with one cell of line `line` (the header is line 1) replaced."""
    frame = pl.read_csv(csv, infer_schema=False)
    frame = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == line - 2)
        .then(pl.lit(value))
        .otherwise(pl.col(column))
        .alias(column)
    )
    out: bytes = frame.write_csv().encode()
    return out


def uploads_left(deployment: Deployment) -> list[Path]:
    directory = deployment.settings.home / "uploads"
    return list(directory.iterdir()) if directory.is_dir() else []


def progress_of(ws: ClientConnection, batch_id: str, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Every batch event of `batch_id` until its last (`completed` or `failed`)."""
    seen: list[dict[str, Any]] = []
    while not seen or seen[-1]["status"] not in ("completed", "failed"):
        message = wait_for(
            ws, "batch_processing", timeout, where=lambda m: m["data"]["batch_id"] == batch_id
        )
        seen.append(message["data"])
    return seen


def test_an_upload_is_scored_in_chunks_with_progress_and_a_bad_row_fails_alone(
    server: ServerThread, client: httpx.Client, as_role: Headers, tmp_path: Path,
    deployment: Deployment,
) -> None:  # fmt: skip
    csv = with_bad_row(leads_csv(tmp_path, 250, "up"), 52, "household_size", "lots")
    with open_ws(server, as_role("acme-agent")) as ws:
        assert receive(ws)["event_type"] == "connection_established"
        subscribe(ws, ["batch_processing", "lead_scored"])
        answer = client.post(
            URL, files={"file": ("leads.csv", csv, CSV)}, headers=as_role("acme-agent")
        )
        assert answer.status_code == 202, answer.text
        accepted = answer.json()
        assert accepted["total"] == 250
        assert accepted["status"] == "accepted"
        progress, scored = [], []
        while not progress or progress[-1]["status"] not in ("completed", "failed"):
            message = receive(ws, 60)
            if message["event_type"] == "batch_processing":
                assert message["data"]["batch_id"] == accepted["batch_id"]
                progress.append(message["data"])
            elif message["event_type"] == "lead_scored":
                scored.append(message["data"]["lead_id"])
    statuses = [p["status"] for p in progress]
    assert statuses == ["started", "in_progress", "in_progress", "completed"], progress
    assert [p["completed"] for p in progress] == [0, 100, 200, 250]
    assert progress[-1]["progress_percent"] == 100.0
    assert all(p["total"] == 250 for p in progress)
    last = progress[-1]
    assert (last["succeeded"], last["failed"], last["not_scored"]) == (249, 1, 0)
    [error] = last["errors"]
    assert (error["row"], error["lead_id"]) == (52, "up_50")
    assert error["detail"][0]["field"] == "lead_data.household_size"
    assert set(scored) == {f"up_{i}" for i in range(250)} - {"up_50"}  # one event per lead
    viewer = as_role("acme-viewer")
    for neighbour in ("up_0", "up_49", "up_51", "up_249"):  # the bad row's chunk is scored
        latest = client.get(f"/api/v1/ml/score/{neighbour}", headers=viewer)
        assert latest.status_code == 200, latest.text
        assert latest.json()["lead_id"] == neighbour
    assert client.get("/api/v1/ml/score/up_50", headers=viewer).status_code == 404
    history = client.get("/api/v1/ml/score/up_7/history", headers=viewer)
    assert history.status_code == 200
    assert len(history.json()["scores"]) == 1
    # Another team's upload is not ours.
    other = client.get("/api/v1/ml/score/up_0", headers=as_role("globex-admin"))
    assert other.status_code == 404
    assert uploads_left(deployment) == []


def test_a_mapping_renames_a_crm_export_s_columns(
    server: ServerThread, client: httpx.Client, as_role: Headers, tmp_path: Path
) -> None:
    frame = pl.DataFrame(
        {"Contact ID": ["crm_1", "crm_2"], "Lead Source": ["Zillow", "Referral"],
         "Pre-approved": ["true", "false"], "Won": ["yes", "no"], "Zip": ["78701", "78702"]}
    )  # fmt: skip
    mapping = (
        b"lead_id: Contact ID\noutcomes:\n  conversion: {column: Won, positive: [yes]}\n"
        b"fields:\n  source: Lead Source\n  pre_approved: Pre-approved\n"
        b"attributes:\n  categorical: [Zip]\n"
    )
    with open_ws(server, as_role("acme-admin")) as ws:
        assert receive(ws)["event_type"] == "connection_established"
        subscribe(ws, ["batch_processing"])
        answer = client.post(
            URL,
            files={"file": ("crm.csv", frame.write_csv().encode(), CSV),
                   "mapping": ("crm.yaml", mapping, "application/yaml")},
            headers=as_role("acme-admin"),
        )  # fmt: skip
        assert answer.status_code == 202, answer.text
        last = progress_of(ws, answer.json()["batch_id"])[-1]
    assert (last["status"], last["succeeded"]) == ("completed", 2)
    latest = client.get("/api/v1/ml/score/crm_1", headers=as_role("acme-admin"))
    assert latest.status_code == 200
    missing = client.post(
        URL,
        files={"file": ("crm.csv", frame.drop("Zip").write_csv().encode(), CSV),
               "mapping": ("crm.yaml", mapping, "application/yaml")},
        headers=as_role("acme-admin"),
    )  # fmt: skip
    assert missing.status_code == 422
    assert "['Zip']" in missing.json()["detail"]


@pytest.mark.parametrize(
    ("name", "body", "says"),
    [
        ("leads.csv", b"name,source\nAnn,Zillow\n", "no lead_id column"),
        ("leads.csv", b"lead_id,colour\nx1,blue\n", "unknown column(s) colour"),
        ("leads.csv", b"lead_id,source\n", "no leads"),
        ("leads.csv", b"", "cannot be read as CSV"),
        ("leads.xlsx", b"lead_id\nx1\n", "must be a .csv file"),
        ("leads.csv", b"lead_id,source\nx1,Zillow,extra\n", "cannot be read as CSV"),
        ("leads.csv", b"lead_id,source\nx1,\xff\xfe\n", "cannot be read as CSV"),
    ],
)
def test_a_bad_csv_is_refused_before_the_202_and_leaves_nothing(
    client: httpx.Client, as_role: Headers, deployment: Deployment,
    name: str, body: bytes, says: str,
) -> None:  # fmt: skip
    answer = client.post(URL, files={"file": (name, body, CSV)}, headers=as_role("acme-agent"))
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == "validation_error"
    assert says in answer.json()["detail"]
    assert str(deployment.settings.home) not in answer.text
    assert uploads_left(deployment) == []


def test_no_file_field_is_refused(client: httpx.Client, as_role: Headers) -> None:
    answer = client.post(URL, files={"leads": ("a.csv", b"lead_id\nx\n", CSV)},
                         headers=as_role("acme-agent"))  # fmt: skip
    assert answer.status_code == 422
    assert "`file`" in answer.json()["detail"]


def test_a_viewer_may_not_upload(client: httpx.Client, as_role: Headers) -> None:
    answer = client.post(
        URL, files={"file": ("a.csv", b"lead_id\nv1\n", CSV)}, headers=as_role("acme-viewer")
    )
    assert answer.status_code == 403
    assert client.post(URL, files={"file": ("a.csv", b"lead_id\nv1\n", CSV)}).status_code == 401


def test_too_large_by_bytes_or_rows_is_refused_with_413(
    client: httpx.Client, as_role: Headers, deployment: Deployment, tmp_path: Path
) -> None:
    limit = deployment.settings.max_leads_upload_bytes
    big = b"lead_id,name\n" + b"x,abcdefghijklmnopqrstuvwxyz\n" * (limit // 28 + 10)
    answer = client.post(URL, files={"file": ("big.csv", big, CSV)}, headers=as_role("acme-agent"))
    assert answer.status_code == 413, answer.text
    assert answer.json()["error"] == "payload_too_large"
    small = deployment.start(max_leads_upload_rows=20)
    try:
        csv = leads_csv(tmp_path, 21, "rows")
        with httpx.Client(base_url=small.url, timeout=30) as other:
            answer = other.post(
                URL, files={"file": ("rows.csv", csv, CSV)}, headers=as_role("acme-agent")
            )
            assert answer.status_code == 413, answer.text
            assert "more than 20 leads" in answer.json()["detail"]
            fits = other.post(
                URL, files={"file": ("rows.csv", leads_csv(tmp_path, 20, "fits"), CSV)},
                headers=as_role("acme-agent"),
            )  # fmt: skip
            assert fits.status_code == 202
    finally:
        small.stop()
    assert uploads_left(deployment) == []


def test_a_server_stopped_mid_upload_finishes_it_first(
    deployment: Deployment, as_role: Headers, tmp_path: Path
) -> None:
    """Graceful shutdown drains accepted uploads before the score writer stops: every row
    of the 202 is stored when the next server starts."""
    first = deployment.start()
    csv = leads_csv(tmp_path, 5000, "drain", seed=5)
    with httpx.Client(base_url=first.url, timeout=30) as http:
        answer = http.post(URL, files={"file": ("d.csv", csv, CSV)}, headers=as_role("acme-agent"))
    assert answer.status_code == 202
    assert first.services.uploads.task(answer.json()["batch_id"]) is not None  # still scoring
    first.stop()
    assert not first.thread.is_alive()
    second = deployment.start()
    try:
        with httpx.Client(base_url=second.url, timeout=30) as http:
            for lead_id in ("drain_0", "drain_4999"):
                found = http.get(f"/api/v1/ml/score/{lead_id}", headers=as_role("acme-viewer"))
                assert found.status_code == 200, (lead_id, found.text)
    finally:
        second.stop()
