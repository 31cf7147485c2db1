"""The model: quality against the generator's oracle, calibration, confidence, artifacts."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from leadscore.core.errors import ModelArtifactError, TrainingDataError
from leadscore.engine.attributes import AttributeSpec
from leadscore.engine.columnar import raw_from_frame
from leadscore.engine.features import CONVERSION_DIRECTIONS, PROTECTED, transform
from leadscore.engine.metrics import SCORE_RESOLUTION, IsotonicCalibrator, auc, ece
from leadscore.engine.model import LeadModel, ModelConfig, train
from leadscore.engine.scorer import Scorer
from leadscore.engine.training import TrainingInput


@pytest.fixture(scope="module")
def holdout_scores(model: LeadModel, holdout_frame: pl.DataFrame) -> pl.DataFrame:
    scored = Scorer(model).score_frame(holdout_frame)
    oracle = holdout_frame.select("converted", pl.col("p_conversion").alias("oracle_p"))
    return scored.hstack(oracle)


def test_conversion_auc_is_within_001_of_the_oracle(holdout_scores: pl.DataFrame) -> None:
    y = holdout_scores["converted"].cast(pl.Float64).to_numpy()
    oracle_auc = auc(y, holdout_scores["oracle_p"].to_numpy())
    ours = auc(y, holdout_scores["p_conversion"].to_numpy())
    assert ours >= oracle_auc - 0.01, (ours, oracle_auc)


def test_probabilities_are_calibrated(holdout_scores: pl.DataFrame) -> None:
    y = holdout_scores["converted"].cast(pl.Float64).to_numpy()
    p = holdout_scores["ml_score"].to_numpy() / 100.0
    assert ece(y, p) <= 0.02
    assert abs(p.mean() - y.mean()) < 0.01


@pytest.mark.parametrize("c", [0.7, 0.85, 0.95])
def test_confidence_means_what_it_says(holdout_scores: pl.DataFrame, c: float) -> None:
    """Among leads with confidence ≥ c, the class's claim is right ≥ c of the time.

    Hot claims the lead converts; warm and cold claim it does not (yet). Tolerance: three
    standard errors of a binomial proportion at c, one-sided.
    """
    confident = holdout_scores.filter(pl.col("ml_confidence") >= c)
    n = confident.height
    assert n >= 500
    claim = confident["classification"] == "hot"
    right = (claim == confident["converted"]).mean()
    assert right is not None
    tolerance = 3 * math.sqrt(c * (1 - c) / n)
    assert float(right) >= c - tolerance, (c, right, n)
    # With the oracle's probabilities the expected accuracy must clear c without tolerance.
    p = confident["oracle_p"].to_numpy()
    expected = np.where(claim.to_numpy(), p, 1 - p).mean()
    assert expected >= c - 0.005


def test_no_score_claims_certainty(model: LeadModel, holdout_scores: pl.DataFrame) -> None:
    """No calibrated probability is 0 or 1, so no lead prints as 0.00 or 100.00: the extreme
    calibration blocks are their Beta posteriors, bounded by the leads behind them."""
    score = holdout_scores["ml_score"].to_numpy()
    assert score.min() > 0.0
    assert score.max() < 100.0
    for head, calibrator in model.calibrators_.items():
        y = np.asarray(calibrator.y_)
        assert y.min() >= SCORE_RESOLUTION, head
        assert y.max() <= 1 - SCORE_RESOLUTION, head
        assert np.all(np.diff(y) > 0), head


def test_an_artifact_with_certain_ends_loads_without_them(
    model: LeadModel, holdout_frame: pl.DataFrame, tmp_path: Path
) -> None:
    """Artifacts saved before the shrinkage stored PAV's 0 and 1: they load, keep their interior
    map, and still print no 0.00 or 100.00."""
    certain = {
        head: IsotonicCalibrator(c.x_, (0.0, *c.y_[1:-1], 1.0))
        for head, c in model.calibrators_.items()
    }
    old = model.with_calibration(certain, model.card_).save(tmp_path / "old")
    loaded = LeadModel.load(old)
    for head, c in loaded.calibrators_.items():
        assert c.y_[1:-1] == model.calibrators_[head].y_[1:-1]
        assert (c.y_[0], c.y_[-1]) == (SCORE_RESOLUTION, 1 - SCORE_RESOLUTION)
    score = Scorer(loaded).score_frame(holdout_frame.head(5_000))["ml_score"].to_numpy()
    assert score.min() == 0.01
    assert score.max() < 100.0


def test_escalation_follows_confidence_and_evidence(holdout_scores: pl.DataFrame) -> None:
    flagged = holdout_scores["escalation_recommended"].to_numpy()
    conf = holdout_scores["ml_confidence"].to_numpy()
    evidence = holdout_scores["evidence"].to_numpy()
    assert np.array_equal(flagged, (conf < 0.85) | (evidence < 0.4))
    assert ((evidence >= 0) & (evidence <= 1)).all()
    assert 0 < flagged.mean() < 0.6


def test_classes_follow_thresholds(holdout_scores: pl.DataFrame) -> None:
    s = holdout_scores
    assert (s.filter(pl.col("classification") == "hot")["ml_score"] >= 70).all()
    assert (s.filter(pl.col("classification") == "cold")["ml_score"] < 40).all()
    assert set(s["classification"].unique()) == {"hot", "warm", "cold"}


def test_card_reports_honest_held_out_metrics(model: LeadModel) -> None:
    card = model.card_
    assert set(card["metrics"]) == {"conversion", "closing", "timeline"}
    for head, m in card["metrics"].items():
        assert 0.5 < m["auc"] <= 1.0, head
        assert {"auc", "brier", "log_loss", "ece", "n"} <= set(m)
    assert card["training_data"]["split"] == "time-ordered"
    assert card["thresholds"]["hot"] == 70.0
    assert not PROTECTED & set(card["features"])


def test_artifact_round_trip_predicts_identically(
    model: LeadModel, model_dir: Path, holdout_frame: pl.DataFrame
) -> None:
    loaded = LeadModel.load(model_dir)
    assert loaded.version_ == model.version_
    sample = holdout_frame.head(500)
    a = Scorer(model).score_frame(sample, explain=True)
    b = Scorer(loaded).score_frame(sample, explain=True)
    assert a.equals(b)


def test_version_is_a_content_hash(model: LeadModel, tmp_path: Path) -> None:
    again = model.save(tmp_path / "copy")
    assert LeadModel.load(again).version_ == model.version_
    card = json.loads((again / "card.json").read_text())
    assert card["version"] == model.version_


def test_altered_artifact_is_refused(model_dir: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(model_dir, tmp_path / "m"))
    (copy / "meta.json").write_text((copy / "meta.json").read_text().replace("0.", "0.9", 1))
    with pytest.raises(ModelArtifactError, match="version hash"):
        LeadModel.load(copy)


def test_other_feature_spec_is_refused(model_dir: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(model_dir, tmp_path / "m"))
    card = json.loads((copy / "card.json").read_text())
    card["feature_spec"] = "0000000000000000"
    (copy / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelArtifactError, match="feature spec"):
        LeadModel.load(copy)


def test_protected_features_only_with_opt_in(train_frame: pl.DataFrame) -> None:
    data = TrainingInput.from_frame(train_frame.head(8_000), AttributeSpec())
    opted = train(data, ModelConfig(include_protected=True, max_trees=30))
    assert set(opted.model_features_) >= PROTECTED
    assert opted.card_["protected_features_included"] is True


def test_random_forest_is_selectable(train_frame: pl.DataFrame) -> None:
    data = TrainingInput.from_frame(train_frame.head(10_000), AttributeSpec())
    forest = train(data, ModelConfig(algorithm="random_forest", max_trees=60))
    assert forest.card_["params"]["boosting"] == "rf"
    assert forest.card_["metrics"]["conversion"]["auc"] > 0.75


def test_training_is_deterministic(train_frame: pl.DataFrame) -> None:
    data = TrainingInput.from_frame(train_frame.head(6_000), AttributeSpec())
    first = train(data, ModelConfig(max_trees=40))
    second = train(data, ModelConfig(max_trees=40))
    x = transform(raw_from_frame(train_frame.head(200)), first.encoding_)
    assert np.array_equal(
        first.predict_head("conversion", first.matrix(x, None)).prob,
        second.predict_head("conversion", second.matrix(x, None)).prob,
    )


@pytest.mark.parametrize(
    ("converted", "message"),
    [
        ([False] * 500, "constant"),
        ([True] * 30 + [False] * 470, "at least 40"),
    ],
)
def test_unlearnable_labels_are_refused(
    train_frame: pl.DataFrame, converted: list[bool], message: str
) -> None:
    frame = train_frame.head(500).with_columns(pl.Series("converted", converted))
    with pytest.raises(TrainingDataError, match=message):
        train(TrainingInput.from_frame(frame, AttributeSpec()), ModelConfig())


def test_missing_labels_are_refused(train_frame: pl.DataFrame) -> None:
    frame = train_frame.head(100).with_columns(pl.lit(None, dtype=pl.Boolean).alias("converted"))
    with pytest.raises(TrainingDataError, match="no conversion label"):
        TrainingInput.from_frame(frame, AttributeSpec())


@pytest.mark.parametrize("rows", [1, 2, 14, 32, 33])
def test_small_batches_predict_as_the_booster_does(
    model: LeadModel, holdout_frame: pl.DataFrame, rows: int
) -> None:
    """The one-row C path (up to 32 rows: a lead and its what-if variants) gives the margins
    LightGBM's own batch prediction gives."""
    x = model.matrix(transform(raw_from_frame(holdout_frame.head(rows)), model.encoding_), None)
    for head, booster in model.boosters_.items():
        ours = model.predict_head(head, x).raw
        theirs = np.asarray(booster.predict(x, raw_score=True), dtype=np.float64)
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-9)


def test_the_one_row_path_refuses_a_wrong_width(model: LeadModel) -> None:
    single = model._single("conversion")
    with pytest.raises(ValueError, match="features"):
        single.raw_many(np.zeros((2, len(model.model_features_) + 1)))


def test_the_conversion_score_rises_with_the_constrained_features(
    model: LeadModel, holdout_frame: pl.DataFrame
) -> None:
    """Pre-approval, reply speed, timeline urgency and repeat views are constrained in
    training: moving only one of them the warm way never lowers any lead's margin."""
    x = model.matrix(transform(raw_from_frame(holdout_frame.head(2_000)), model.encoding_), None)
    booster = model.boosters_["conversion"]
    base = np.asarray(booster.predict(x, raw_score=True), dtype=np.float64)
    index = {name: i for i, name in enumerate(model.model_features_)}
    assert set(CONVERSION_DIRECTIONS) <= set(index)
    for name, direction in CONVERSION_DIRECTIONS.items():
        column = x[:, index[name]]
        known = ~np.isnan(column)
        moved = x.copy()
        step = np.nanstd(column) or 1.0
        moved[:, index[name]] = column + direction * step
        margin = np.asarray(booster.predict(moved, raw_score=True), dtype=np.float64)
        assert (margin[known] >= base[known] - 1e-12).all(), name
