"""Lead files: every format and shape reads back to the same features as the API's leads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import polars as pl
import pytest

from leadscore.core.errors import InvalidInputError
from leadscore.engine.columnar import raw_from_frame
from leadscore.engine.io import (
    canonicalise,
    frame_to_leads,
    iter_chunks,
    leads_to_frame,
    read_frame,
    read_head,
    write_frame,
)
from leadscore.engine.raw import raw_from_leads
from leadscore.engine.schema import Lead
from leadscore.engine.synthetic import generate

from .strategies import AS_OF


@pytest.fixture(scope="module")
def sample() -> list[Lead]:
    return frame_to_leads(generate(300, seed=5))


def raw_equal(leads: list[Lead], frame: pl.DataFrame) -> bool:
    expected = raw_from_leads([lead.lead_data for lead in leads], AS_OF).values
    return bool(np.array_equal(expected, raw_from_frame(frame, AS_OF).values, equal_nan=True))


@pytest.mark.parametrize("suffix", ["csv", "parquet", "jsonl"])
def test_round_trip_through_every_format(sample: list[Lead], tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"leads.{suffix}"
    write_frame(leads_to_frame(sample), path)
    assert raw_equal(sample, canonicalise(read_frame(path)))
    chunks = list(iter_chunks(path, 128))
    assert [c.height for c in chunks] == [128, 128, 44]
    assert raw_equal(sample, pl.concat(chunks))


def test_jsonl_in_the_api_shape_is_accepted(sample: list[Lead], tmp_path: Path) -> None:
    path = tmp_path / "api.jsonl"
    path.write_bytes(
        b"\n".join(orjson.dumps(lead.model_dump(mode="json", exclude_none=True)) for lead in sample)
    )
    frame = canonicalise(read_frame(path))
    assert frame["lead_id"].to_list() == [lead.lead_id for lead in sample]
    assert raw_equal(sample, frame)


def test_frame_to_leads_inverts_leads_to_frame(sample: list[Lead]) -> None:
    assert frame_to_leads(leads_to_frame(sample)) == sample


def test_a_column_of_the_wrong_type_is_refused() -> None:
    frame = pl.DataFrame({"lead_id": ["a"], "household_size": ["a big family"]})
    with pytest.raises(InvalidInputError, match="expected type"):
        canonicalise(frame)


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_read_head_reads_the_first_rows_only(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"leads{suffix}"
    frame = generate(3_000, seed=5).drop("as_of")
    write_frame(frame, path)
    head = read_head(path, 50)
    assert head.height == 50
    assert head["lead_id"].to_list() == frame["lead_id"][:50].to_list()
    assert read_head(path, 5_000).height == 3_000  # a shorter file: all of it


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_read_head_refuses_a_first_line_that_is_not_utf8(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"latin1{suffix}"
    path.write_bytes("lead_id,sourcé\n1,x\n".encode("latin-1"))
    with pytest.raises(InvalidInputError, match=r"first line is not UTF-8 text \(byte 0xe9 at"):
        read_head(path, 10)
