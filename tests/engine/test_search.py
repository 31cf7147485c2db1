"""Settings sized to the data: the time-ordered search, its rule, and a linear winner served."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from leadscore.engine.attributes import AttributeSpec
from leadscore.engine.linear import LinearHead
from leadscore.engine.model import LeadModel, ModelConfig, train
from leadscore.engine.schema import Lead
from leadscore.engine.scorer import Scorer
from leadscore.engine.search import SEARCH_MIN_ROWS, choose, search
from leadscore.engine.synthetic import generate
from leadscore.engine.training import TrainingInput

AS_OF = datetime(2026, 6, 1, tzinfo=UTC)
LINEAR = AttributeSpec(tuple(f"signal_{i}" for i in range(8)), ("agent",))


def linear_team(n: int, seed: int) -> TrainingInput:
    """Leads whose conversion is a logistic function of eight team fields (and an agent who
    does not matter): the data a linear model is right for."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 8))
    y = (rng.random(n) < 1 / (1 + np.exp(-(z.sum(axis=1) - 1.5)))).astype(np.int64)
    agents = rng.choice(["dana", "sam", "lee"], size=n)
    frame = generate(n, seed=seed).with_columns(
        pl.Series("converted", y),
        pl.Series("attributes.agent", agents),
        *[pl.Series(f"attributes.signal_{i}", z[:, i]) for i in range(8)],
    )
    return TrainingInput.from_frame(frame, LINEAR)


@pytest.fixture(scope="module")
def linear_model() -> LeadModel:
    return train(linear_team(3000, seed=5), ModelConfig(num_threads=1, search=True), LINEAR)


def test_a_candidate_must_beat_the_defaults_by_more_than_its_folds_spread() -> None:
    names = ["defaults", "lucky", "steady"]
    # `lucky` has the best mean but won one fold by far and lost the others: defaults kept.
    kept, why = choose([[0.70, 0.70, 0.70], [0.62, 0.64, 0.90], [0.70, 0.70, 0.70]], names, "t")
    assert kept == 0
    assert why.startswith("defaults kept")
    assert "lucky" in why
    # `steady` is ahead on every fold by about the same: it wins, and the card says by how much.
    won, why = choose([[0.70, 0.72, 0.68], [0.70, 0.72, 0.69], [0.72, 0.74, 0.70]], names, "t")
    assert won == 2
    assert "0.7200 against the defaults' 0.7000" in why


def test_on_linear_data_the_logistic_model_wins_and_the_card_says_why(
    linear_model: LeadModel,
) -> None:
    card = linear_model.card_
    record = card["search"]
    assert record["order"] == "time-ordered"
    assert len(record["tried"]) == 10  # seven tree settings, one ordered encoding, two logistic
    assert {t["folds"] for t in record["tried"]} == {3}
    assert record["winner"].startswith("logistic")
    assert record["why"].startswith("best mean AUC")
    assert card["algorithm"] == "logistic"
    assert isinstance(linear_model.boosters_["conversion"], LinearHead)
    # The search ran on the training and calibration rows only: the card's test is untouched.
    assert record["rows"] == card["training_data"]["rows"] - card["metrics"]["conversion"]["n"]
    assert card["metrics"]["conversion"]["auc"] > 0.8


def test_the_search_is_the_same_for_the_same_data_and_seed() -> None:
    data = linear_team(1200, seed=8)
    first = search(data, ModelConfig(num_threads=1, seed=3), LINEAR, "time-ordered")
    second = search(data, ModelConfig(num_threads=1, seed=3), LINEAR, "time-ordered")
    assert first.record == second.record
    assert first.config == second.config


def test_too_few_leads_keep_the_defaults_and_say_so() -> None:
    data = linear_team(SEARCH_MIN_ROWS - 1, seed=9)
    found = search(data, ModelConfig(num_threads=1), LINEAR, "time-ordered")
    assert found.config == ModelConfig(num_threads=1)
    assert "fewer than 500" in found.record["skipped"]


def lead(lead_id: str, signal: float, agent: str) -> Lead:
    fields = {f"signal_{i}": signal for i in range(8)} | {"agent": agent}
    return Lead.model_validate({"lead_id": lead_id, "lead_data": {"attributes": fields}})


def test_a_linear_model_scores_explains_and_reloads_like_trees(
    linear_model: LeadModel, tmp_path: Path
) -> None:
    scorer = Scorer(linear_model)
    # An agent the training never saw is scored like a missing one: no error.
    high, low = scorer.score_many([lead("a", 1.5, "dana"), lead("b", -1.5, "a new agent")],
                                  as_of=AS_OF)  # fmt: skip
    assert high.conversion > 0.8 > 0.2 > low.conversion
    assert high.reasons[0].feature.startswith("signal_")
    assert high.reasons[0].text.startswith("signal_")
    assert high.reasons[0].points > 0 > low.reasons[0].points
    # Exact additive contributions: the batch path and the one-row path agree.
    rows = np.random.default_rng(0).normal(size=(40, len(linear_model.model_features_)))
    batch = linear_model.predict_head("conversion", rows, explain=True)
    one = linear_model.predict_head("conversion", rows[:1], explain=True)
    assert batch.contributions is not None
    assert one.contributions is not None
    assert np.allclose(batch.contributions[0], one.contributions[0])
    assert np.allclose(batch.contributions.sum(axis=1), batch.raw)
    loaded = LeadModel.load(linear_model.save(tmp_path / "model"))
    assert loaded.version_ == linear_model.version_
    again = Scorer(loaded).score_many([lead("a", 1.5, "dana"), lead("b", -1.5, "x")], as_of=AS_OF)
    assert [s.ml_score for s in again] == [high.ml_score, low.ml_score]


def test_ordered_categories_follow_their_conversion_rate() -> None:
    values = {"agent": ["dana"] * 60 + ["sam"] * 60 + ["lee"] * 60}
    labels = np.array([1.0] * 50 + [0.0] * 10 + [0.0] * 55 + [1.0] * 5 + [1.0] * 30 + [0.0] * 30)
    ordered = AttributeSpec((), ("agent",)).learn(values, labels)
    assert ordered.vocab["agent"] == ("sam", "lee", "dana")
    frequent = AttributeSpec((), ("agent",)).learn(values)
    assert frequent.vocab["agent"] == ("dana", "lee", "sam")  # ties by name


def test_training_with_ordered_categories_splits_them_as_numbers() -> None:
    data = linear_team(1500, seed=11)
    model = train(data, ModelConfig(num_threads=1, categorical="ordered"), LINEAR)
    assert model.card_["categorical"] == "ordered"
    booster = model.boosters_["conversion"]
    dumped = booster.dump_model()  # type: ignore[attr-defined]
    assert not any("categorical" in str(t) for t in dumped["tree_info"][:5])


def test_a_linear_head_keeps_a_column_to_its_direction() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2000, 2))
    # In this sample the first column lowers conversion; its direction says it may only raise it.
    y = (rng.random(2000) < 1 / (1 + np.exp(x[:, 0] - x[:, 1]))).astype(np.float64)
    free = LinearHead.fit(x, y, [], 1.0)
    held = LinearHead.fit(x, y, [], 1.0, directions=[1, 0])
    assert free.coef_[0] < -0.5
    assert held.coef_[0] == 0.0
    assert held.coef_[1] > 0.5
    assert np.allclose(held.predict(x[:5], pred_contrib=True)[:, 0], 0.0)


def test_cross_fitting_trains_on_every_row_and_calibrates_out_of_fold() -> None:
    data = linear_team(2000, seed=13)  # dated: the windows follow time
    held = train(data, ModelConfig(num_threads=1), LINEAR).card_
    crossed = train(data, ModelConfig(num_threads=1, cross_fit=True), LINEAR).card_
    assert held["training_data"]["rows_per_head"]["conversion"] == {
        "train": 1400, "calibration": 300, "test": 300,
        "trees": held["training_data"]["rows_per_head"]["conversion"]["trees"],
    }  # fmt: skip
    rows = crossed["training_data"]["rows_per_head"]["conversion"]
    # Trees on the 1,700 rows before the test; every window after the first calibrates.
    assert (rows["train"], rows["calibration"], rows["test"]) == (1700, 1275, 300)
    assert crossed["calibration"] == "cross-fitted: out-of-fold margins of 3 time-ordered folds"
    assert crossed["metrics"]["conversion"]["auc"] > 0.8
    undated = train(
        TrainingInput(data.raw, data.attribute_values, data.outcomes, np.full(2000, np.nan)),
        ModelConfig(num_threads=1, cross_fit=True),
        LINEAR,
    ).card_
    rows = undated["training_data"]["rows_per_head"]["conversion"]
    assert rows["calibration"] == rows["train"] == 1700  # every row once out of fold
    assert undated["calibration"].endswith("3 stratified folds")


def test_a_linear_head_reads_values_beyond_its_training_range_as_the_edge() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1000, 1))
    y = (rng.random(1000) < 1 / (1 + np.exp(-2 * x[:, 0]))).astype(np.float64)
    head = LinearHead.fit(x, y, [], 1.0)
    edge = head.predict(np.array([[x.max()]]), raw_score=True)
    far = head.predict(np.array([[x.max() * 100]]), raw_score=True)
    assert far == pytest.approx(edge)  # a market far outside the past does not run away
