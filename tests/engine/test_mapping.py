"""Column mappings: a real CRM export trains; every bad mapping is one clear refusal."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from leadscore.core.errors import MappingError, TrainingDataError
from leadscore.engine.mapping import (
    MAX_MAPPING_BYTES,
    apply_mapping,
    load_mapping,
    load_training_frame,
    parse_mapping,
)
from leadscore.engine.model import ModelConfig, train
from leadscore.engine.training import TrainingInput

from ..conftest import BANK_MARKETING, ROOT

BANK = BANK_MARKETING
BANK_MAPPING = ROOT / "examples" / "bank-marketing.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mapping.yaml"
    path.write_text(text)
    return path


def export(tmp_path: Path, n: int = 400, positives: int = 100) -> Path:
    frame = pl.DataFrame(
        {
            "Prospect ID": [f"p{i}" for i in range(n)],
            "Created": [f"2025-0{1 + i % 9}-1{i % 10}T10:00:00Z" for i in range(n)],
            "Lead Source": ["Zillow", "Referral", "facebook", None][:4] * (n // 4),
            "TotalVisits": [i % 17 for i in range(n)],
            "Outcome": ["yes"] * positives + ["no"] * (n - positives),
            "age": [20 + i % 50 for i in range(n)],
            "job": ["admin", "retired", "student", "services"] * (n // 4),
            "duration": list(range(n)),
        }
    )
    path = tmp_path / "export.csv"
    frame.write_csv(path)
    return path


GOOD = """
lead_id: "Prospect ID"
created_at: "Created"
outcomes:
  conversion: {column: "Outcome", positive: ["yes", 1, "1", true]}
fields:
  source: "Lead Source"
  web_activity.sessions: "TotalVisits"
attributes:
  numeric: ["age"]
  categorical: ["job"]
drop: ["duration"]
"""


def test_mapping_turns_an_export_into_canonical_rows(tmp_path: Path) -> None:
    frame = load_training_frame(export(tmp_path), load_mapping(write(tmp_path, GOOD)))
    assert frame["lead_id"][0] == "p0"
    assert frame["source"][1] == "Referral"
    assert frame["web_activity.sessions"][5] == 5
    assert frame["converted"].sum() == 100
    assert frame["created_at"].dtype == pl.Datetime("us", "UTC")
    assert "duration" not in frame.columns
    assert frame["attributes.job"][1] == "retired"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("outcomes: {}", "outcomes.conversion is required"),
        (GOOD.replace('"Outcome"', '"Result"'), r"\['Result'\] named in the mapping are not in"),
        (GOOD.replace('categorical: ["job"]', 'categorical: ["jobs"]'), "jobs"),
        (GOOD.replace("web_activity.sessions", "web_activity.visits"), "unknown canonical field"),
        (GOOD.replace('drop: ["duration"]', 'drop: ["age"]'), "both dropped and used"),
        (GOOD + "order_by: Created\nrow_order: time\n", "order_by and row_order both say"),
        (GOOD + "row_order: random\n", "row_order: Input should be 'time'"),
        (GOOD + "order_by: Signed\n", r"\['Signed'\] named in the mapping are not in"),
        (GOOD + "order_by: job\n", "order_by: column 'job' has 400 rows without a readable date"),
        (GOOD + "\nextra: 1\n", "extra: Extra inputs are not permitted"),
        ("[not, a, mapping]", "YAML mapping at the top level"),
        ("outcomes: {conversion: {column: y, positive: []}}", "positive"),
        ("a: [unclosed", "not valid YAML"),
    ],
)
def test_bad_mappings_are_refused_in_one_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(MappingError, match=message) as info:
        load_training_frame(export(tmp_path), load_mapping(write(tmp_path, text)))
    assert "\n" not in str(info.value)


def test_order_by_sorts_the_rows_by_their_date_keeping_ties_in_file_order(
    tmp_path: Path,
) -> None:
    frame = load_training_frame(
        export(tmp_path), load_mapping(write(tmp_path, GOOD + "order_by: Created\n"))
    )
    created = frame["created_at"].to_list()
    assert created == sorted(created)
    ids = frame["lead_id"].to_list()
    first_day = [i for i, c in zip(ids, created, strict=True) if c == created[0]]
    assert first_day == sorted(first_day, key=lambda i: int(i[1:]))  # ties: the file's order
    assert load_mapping(write(tmp_path, GOOD + "row_order: time\n")).time_ordered


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"a: &x [1]\nb: *x\n", "YAML aliases (*x) are not accepted"),
        (b"[" * 11 + b"]" * 11, "nested deeper than 10 levels"),
        (b"[" * 10 + b"]" * 10, "expected a YAML mapping at the top level"),  # 10 is allowed
        (b"x: " + b"y" * MAX_MAPPING_BYTES, "bytes; a mapping has at most 65,536"),
        (b"x: \xff", "not UTF-8 text (byte 0xff at offset 3)"),
        (b"!!python/object/apply:os.system [echo]", "not valid YAML (ConstructorError)"),
    ],
)
def test_a_mapping_is_bounded_before_it_is_built(raw: bytes, message: str) -> None:
    with pytest.raises(MappingError) as info:
        parse_mapping(raw, "mapping m.yaml")
    assert str(info.value).startswith("mapping m.yaml: ")
    assert message in str(info.value)


def test_too_few_positive_examples_are_refused(tmp_path: Path) -> None:
    mapping = load_mapping(write(tmp_path, GOOD))
    frame = load_training_frame(export(tmp_path, positives=39), mapping)
    with pytest.raises(TrainingDataError, match="39 positive"):
        train(TrainingInput.from_frame(frame, mapping.attribute_spec), ModelConfig())


def test_missing_label_values_are_refused(tmp_path: Path) -> None:
    path = export(tmp_path)
    frame = pl.read_csv(path).with_columns(pl.lit(None, dtype=pl.String).alias("Outcome"))
    mapping = load_mapping(write(tmp_path, GOOD))
    mapped = apply_mapping(frame, mapping)
    with pytest.raises(TrainingDataError, match="no conversion label"):
        TrainingInput.from_frame(mapped, mapping.attribute_spec)


def test_bank_marketing_example_trains_on_the_real_data() -> None:
    mapping = load_mapping(BANK_MAPPING)
    frame = load_training_frame(BANK, mapping)
    assert frame.height == 41_188
    assert "attributes.duration" not in frame.columns
    assert frame["attributes.pdays"].null_count() > 30_000  # 999 = never contacted → missing
    data = TrainingInput.from_frame(frame.sample(12_000, seed=1), mapping.attribute_spec)
    model = train(data, ModelConfig(seed=1), mapping.attribute_spec)
    assert model.card_["metrics"]["conversion"]["auc"] > 0.72
    assert "job" in model.model_features_
    assert model.attributes_.vocab["job"]
