"""A team's typed fields: numbers, yes/no and dates read as the team writes them."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import polars as pl

from leadscore.engine.attributes import AttributeSpec
from leadscore.engine.io import frame_to_leads
from leadscore.engine.mapping import mapping_from_document
from leadscore.engine.model import LeadModel, ModelConfig, train
from leadscore.engine.scorer import Scorer
from leadscore.engine.synthetic import generate
from leadscore.engine.training import TrainingInput

DOCUMENT = {
    "outcomes": {"conversion": {"column": "y", "positive": ["yes"]}},
    "attributes": {"numeric": ["visits"], "boolean": ["pre_listed"], "date": ["last_call"],
                   "categorical": ["agent"]},
}  # fmt: skip
SPEC = mapping_from_document(DOCUMENT, "test").attribute_spec


def test_a_mapping_declares_each_kind_and_the_model_takes_them_in_order() -> None:
    assert SPEC.names == ("visits", "pre_listed", "last_call", "agent")
    assert dict(SPEC.kinds) == {"pre_listed": "boolean", "last_call": "date"}


def test_values_are_read_as_the_team_writes_them() -> None:
    values = {
        "visits": ["3", 2, None, "two"],
        "pre_listed": ["Yes", False, 1, "maybe"],
        "last_call": ["2025-03-01", date(2025, 3, 2),
                      datetime(2025, 3, 3, 23, 0, tzinfo=UTC), "last week"],
        "agent": ["Dana", "dana ", None, "Sam"],
    }  # fmt: skip
    learned = SPEC.learn(values)
    x = learned.encode(values, 4)
    day = (datetime(2025, 3, 1, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)).days
    assert x[:, 0].tolist()[:2] == [3.0, 2.0]
    assert math.isnan(x[2, 0])
    assert math.isnan(x[3, 0])  # a word is not a number: unknown, not zero
    assert x[:3, 1].tolist() == [1.0, 0.0, 1.0]
    assert math.isnan(x[3, 1])
    assert x[:3, 2].tolist() == [day, day + 1, day + 2]
    assert math.isnan(x[3, 2])
    assert x[0, 3] == x[1, 3]  # one agent however it is written
    assert learned.describe("pre_listed", 1.0) == "pre_listed: yes"
    assert learned.describe("last_call", float(day)) == "last_call: 2025-03-01"
    assert learned.describe("agent", x[0, 3]) == "agent: dana"
    assert learned.describe("visits", 2.5) == "visits: 2.5"


def test_a_model_keeps_its_kinds_through_save_and_load(tmp_path: Path) -> None:
    frame = generate(1500, seed=4)
    rng = np.random.default_rng(4)
    listed = rng.random(frame.height) < 0.5
    frame = frame.with_columns(
        pl.Series("attributes.pre_listed", np.where(listed, "yes", "no")),
        pl.Series("attributes.last_call", ["2025-01-0" + str(1 + i % 9) for i in range(1500)]),
        pl.Series("converted", frame["converted"].to_numpy() | (listed & (rng.random(1500) < 0.3))),
    )
    spec = AttributeSpec(("pre_listed", "last_call"),
                         kinds={"pre_listed": "boolean", "last_call": "date"})  # fmt: skip
    model = train(TrainingInput.from_frame(frame, spec), ModelConfig(num_threads=1), spec)
    model.save(tmp_path / "m")
    loaded = LeadModel.load(tmp_path / "m")
    assert dict(loaded.attributes_.kinds) == dict(spec.kinds)
    before = Scorer(model).score_frame(frame.head(50))["ml_score"].to_list()
    after = Scorer(loaded).score_frame(frame.head(50))["ml_score"].to_list()
    assert before == after


def test_a_missing_yes_no_field_is_asked_for_by_its_own_name() -> None:
    # Conversion alone: the score is then the conversion head's, which the field drives.
    frame = generate(2000, seed=6).drop("closed", "closed_within_timeline")
    rng = np.random.default_rng(6)
    listed = rng.random(frame.height) < 0.5
    converted = np.where(listed, rng.random(2000) < 0.6, rng.random(2000) < 0.05)
    frame = frame.with_columns(
        pl.Series("attributes.pre_listed", np.where(listed, "yes", "no")),
        pl.Series("converted", converted.astype(np.int64)),
    )
    spec = AttributeSpec(("pre_listed",), kinds={"pre_listed": "boolean"})
    model = train(TrainingInput.from_frame(frame, spec), ModelConfig(num_threads=1), spec)
    scorer = Scorer(model)
    as_of = datetime(2026, 6, 1, tzinfo=UTC)
    unknown = frame_to_leads(frame.head(1).drop("attributes.pre_listed"))[0]
    told = unknown.model_copy(
        update={
            "lead_data": unknown.lead_data.model_copy(update={"attributes": {"pre_listed": "no"}})
        }
    )
    asked = {q.field: q for q in scorer.score(unknown, as_of=as_of).qualification.ask_next}
    question = asked["attributes.pre_listed"]
    assert question.question == "pre_listed: yes or no?"
    assert question.score_if_yes > question.score_if_no
    assert question.score_if_no == round(scorer.score(told, as_of=as_of).ml_score, 1)
    fields = {q.field for q in scorer.score(told, as_of=as_of).qualification.ask_next}
    assert "attributes.pre_listed" not in fields  # answered: no longer asked
