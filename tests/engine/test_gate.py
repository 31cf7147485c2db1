"""The promotion gate refuses a worse challenger and passes a better one, with its numbers."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from leadscore.engine.attributes import AttributeSpec
from leadscore.engine.gate import GateConfig, promotion_gate, time_holdout
from leadscore.engine.model import LeadModel, ModelConfig, train
from leadscore.engine.training import TrainingInput

OUTCOME_COLUMNS = ["converted", "closed", "closed_within_timeline"]


@pytest.fixture(scope="module")
def holdout(holdout_frame: pl.DataFrame) -> TrainingInput:
    data = TrainingInput.from_frame(holdout_frame.head(6_000), AttributeSpec())
    return time_holdout(data, 0.5)


@pytest.fixture(scope="module")
def shuffled_model(train_frame: pl.DataFrame) -> LeadModel:
    """Trained on real leads whose outcomes were shuffled between them: it learned nothing."""
    frame = train_frame.head(8_000)
    order = np.random.default_rng(5).permutation(frame.height)
    shuffled = frame.with_columns(frame.select(OUTCOME_COLUMNS)[order])
    return train(TrainingInput.from_frame(shuffled, AttributeSpec()), ModelConfig(seed=5))


def test_a_model_trained_on_shuffled_labels_is_refused(
    model: LeadModel, shuffled_model: LeadModel, holdout: TrainingInput
) -> None:
    report = promotion_gate(shuffled_model, model, holdout, GateConfig(resamples=200))
    assert report["passed"] is False
    assert report["challenger"]["auc"] < report["champion"]["auc"] - 0.05
    assert report["auc_difference_ci"][1] < 0  # worse beyond doubt, not just beyond the margin
    assert "AUC may be lower" in report["reason"]


def test_a_better_model_passes_and_the_same_model_passes(
    model: LeadModel, shuffled_model: LeadModel, holdout: TrainingInput
) -> None:
    better = promotion_gate(model, shuffled_model, holdout, GateConfig(resamples=200))
    assert better["passed"] is True, better["reason"]
    assert better["auc_difference_ci"][0] > 0
    same = promotion_gate(model, model, holdout, GateConfig(resamples=50))
    assert same["passed"] is True
    assert same["auc_difference_ci"] == [0.0, 0.0]


def test_the_holdout_is_the_newest_leads(holdout_frame: pl.DataFrame) -> None:
    data = TrainingInput.from_frame(holdout_frame.head(1_000), AttributeSpec())
    newest = time_holdout(data, 0.2)
    assert len(newest.created_us) == 200
    assert newest.created_us.min() >= np.sort(data.created_us)[-200]


def test_too_few_labelled_leads_cannot_pass(model: LeadModel, holdout: TrainingInput) -> None:
    tiny = holdout.take(np.arange(20))
    report = promotion_gate(model, model, tiny)
    assert report["passed"] is False
    assert "too few" in report["reason"]
