"""CRM export uploads: checked from their first rows before the 202, bounded YAML, streamed to
disk under the server's home and removed when refused, cut off or finished."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import polars as pl
import pytest

from ..engine.test_mapping import GOOD, export
from .conftest import Deployment

Headers = Callable[[str], dict[str, str]]
URL = "/api/v1/ml/models/train/export"
CSV = "text/csv"
YAML = "application/yaml"
ROWS_256K = b"x,true\n" * (256 * 1024 // 7)


def uploads(deployment: Deployment) -> Path:
    return deployment.settings.home / "uploads"


def left_behind(deployment: Deployment) -> list[Path]:
    directory = uploads(deployment)
    return list(directory.iterdir()) if directory.is_dir() else []


def canonical_csv(tmp_path: Path, drop: tuple[str, ...] = ()) -> bytes:
    """An export without a mapping: canonical column names (and outcomes unless dropped)."""
    frame = pl.DataFrame(
        {
            "lead_id": [f"c{i}" for i in range(600)],
            "source": ["Zillow", "Referral"] * 300,
            "converted": [i % 4 == 0 for i in range(600)],
        }
    ).drop(drop)
    path = tmp_path / "canonical.csv"
    frame.write_csv(path)
    return path.read_bytes()


@pytest.fixture
def refused(
    deployment: Deployment, client: httpx.Client, as_role: Headers
) -> Callable[[dict[str, tuple[str, bytes, str]], int], str]:
    """Post a form that must be refused with `status`; its message, checked to name no path of
    the server's (its home, an upload's temporary name) and to leave no file behind."""
    home = str(deployment.settings.home)

    def post(files: dict[str, tuple[str, bytes, str]], status: int) -> str:
        answer = client.post(URL, files=files, headers=as_role("acme-admin"))
        assert answer.status_code == status, answer.text
        assert home not in answer.text
        assert "/uploads" not in answer.text
        assert not re.search(r"[0-9a-f]{32}", answer.text), answer.text
        assert left_behind(deployment) == []
        detail: str = answer.json()["detail"]
        return detail

    return post


def test_an_export_without_outcome_columns_is_refused_naming_them(
    refused: Callable[[dict[str, tuple[str, bytes, str]], int], str], tmp_path: Path
) -> None:
    detail = refused({"export": ("crm.csv", canonical_csv(tmp_path, ("converted",)), CSV)}, 422)
    assert "crm.csv: no converted column" in detail
    detail = refused(
        {"export": ("crm.csv", canonical_csv(tmp_path, ("lead_id", "converted")), CSV)}, 422
    )
    assert "no lead_id or converted column" in detail


def test_a_mapping_that_does_not_fit_the_file_is_refused_naming_the_column(
    refused: Callable[[dict[str, tuple[str, bytes, str]], int], str], tmp_path: Path
) -> None:
    crm = export(tmp_path, n=800, positives=200).read_bytes()
    mapping = GOOD.replace('"Outcome"', '"Result"').encode()
    detail = refused({"export": ("crm.csv", crm, CSV), "mapping": ("m.yaml", mapping, YAML)}, 422)
    assert "['Result'] named in the mapping are not in the file" in detail


@pytest.mark.parametrize(
    ("mapping", "status", "message"),
    [
        ("outcomes:\n" + "".join("  " * (i + 1) + f"l{i}:\n" for i in range(12)), 422,
         "nested deeper than 10 levels"),
        ("a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
         "c: [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n", 422, "YAML aliases (*a) are not accepted"),
        ("# padding\n" * 7000 + GOOD, 413, "`mapping`: more than 65,536 bytes"),
        (b"outcomes:\n  conversion: {column: \xe9, positive: [yes]}\n", 422,
         "mapping m.yaml: not UTF-8 text (byte 0xe9 at offset 33)"),
    ],
)  # fmt: skip
def test_a_mapping_is_bounded_in_size_depth_and_aliases_and_must_be_utf8(
    refused: Callable[[dict[str, tuple[str, bytes, str]], int], str],
    tmp_path: Path,
    mapping: str | bytes,
    status: int,
    message: str,
) -> None:
    crm = export(tmp_path, n=800, positives=200).read_bytes()
    raw = mapping.encode() if isinstance(mapping, str) else mapping
    detail = refused({"export": ("crm.csv", crm, CSV), "mapping": ("m.yaml", raw, YAML)}, status)
    assert message in detail


def test_a_csv_whose_header_is_not_utf8_is_refused(
    refused: Callable[[dict[str, tuple[str, bytes, str]], int], str], tmp_path: Path
) -> None:
    latin1 = canonical_csv(tmp_path).replace(b"source", "sourcé".encode("latin-1"), 1)
    detail = refused({"export": ("crm.csv", latin1, CSV)}, 422)
    assert "crm.csv: the first line is not UTF-8 text (byte 0xe9" in detail


def test_an_unreadable_file_is_refused_without_naming_where_it_was_kept(
    refused: Callable[[dict[str, tuple[str, bytes, str]], int], str],
) -> None:
    detail = refused({"export": ("crm.parquet", b"PAR1 not really parquet", CSV)}, 422)
    assert detail.startswith("crm.parquet: cannot be read as parquet")


def test_an_over_limit_chunked_upload_is_refused_and_its_partial_file_removed(
    deployment: Deployment, as_role: Headers
) -> None:
    """No Content-Length: the limit is enforced while streaming, after some of the file was
    already written to disk (the directory exists), and that partial file is removed."""
    boundary = secrets.token_hex(8)
    if uploads(deployment).is_dir():
        uploads(deployment).rmdir()  # empty (every test checks): its return shows a write

    def body() -> Iterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="export"; '
            'filename="crm.csv"\r\nContent-Type: text/csv\r\n\r\nlead_id,converted\r\n'
        ).encode()
        for _ in range(64):  # 16 MiB against a 3 MiB limit
            yield ROWS_256K

    small = deployment.start(max_upload_bytes=3 << 20)
    try:
        with httpx.Client(base_url=small.url, timeout=30) as http:
            answer = http.post(URL, content=body(), headers=as_role("acme-admin") | {
                "Content-Type": f"multipart/form-data; boundary={boundary}"})  # fmt: skip
            assert "content-length" not in answer.request.headers
            assert answer.status_code == 413, answer.text
            assert "request body exceeds 3145728 bytes" in answer.json()["detail"]
            assert uploads(deployment).is_dir()  # something had been written
            deadline = time.monotonic() + 5
            while left_behind(deployment) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert left_behind(deployment) == []
            assert http.get("/api/v1/ml/health").status_code == 200
    finally:
        small.stop()


def test_a_non_multipart_body_is_refused(client: httpx.Client, as_role: Headers) -> None:
    answer = client.post(URL, json={"export": "crm.csv"}, headers=as_role("acme-admin"))
    assert answer.status_code == 422
    assert "multipart/form-data" in answer.json()["detail"]
    promote = client.post(
        URL, files={"export": ("crm.csv", b"lead_id,converted\n", CSV)},
        data={"promote": "perhaps"}, headers=as_role("acme-admin"),
    )  # fmt: skip
    assert promote.status_code == 422
    assert "`promote`: expected true or false" in promote.json()["detail"]


def test_a_job_that_fails_past_the_checked_rows_still_removes_its_file(
    deployment: Deployment, client: httpx.Client, as_role: Headers, tmp_path: Path
) -> None:
    """Row 700 holds no date: the first 500 rows pass, the training process refuses the file."""
    path = export(tmp_path, n=800, positives=200)
    bad_row = pl.int_range(pl.len()) == 700
    pl.read_csv(path).with_columns(
        pl.when(bad_row).then(pl.lit("not a date")).otherwise(pl.col("Created")).alias("Created")
    ).write_csv(path)
    admin = as_role("acme-admin")
    files = {"export": ("crm.csv", path.read_bytes(), CSV), "mapping": ("m.yaml", GOOD.encode(),
                                                                         YAML)}  # fmt: skip
    answer = client.post(URL, files=files, headers=admin)
    assert answer.status_code == 202, answer.text
    deadline = time.monotonic() + 120
    while left_behind(deployment):
        assert time.monotonic() < deadline, "the failed job's upload was never removed"
        time.sleep(0.2)
    again = client.post(URL, files=files, headers=admin)  # the lease was released too
    assert again.status_code == 202, again.text
    while left_behind(deployment):
        assert time.monotonic() < deadline, "the failed job's upload was never removed"
        time.sleep(0.2)
    models = client.get("/api/v1/ml/models", headers=admin).json()
    assert [m for m in models if m["team_id"] is not None] == []


def test_endless_part_headers_are_refused_before_anything_is_written(
    deployment: Deployment, client: httpx.Client, as_role: Headers
) -> None:
    body = (
        b'--b0\r\nContent-Disposition: form-data; name="export"; filename="crm.csv"\r\n'
        + b"X-Pad: " + b"a" * 20_000 + b"\r\n\r\nlead_id,converted\r\n--b0--\r\n"
    )  # fmt: skip
    answer = client.post(URL, content=body, headers=as_role("acme-admin") | {
        "Content-Type": "multipart/form-data; boundary=b0"})  # fmt: skip
    assert answer.status_code == 422
    assert "malformed multipart body: Maximum header size exceeded" in answer.json()["detail"]
    assert left_behind(deployment) == []
