"""Drift: a shifted population raises the alert, an unshifted one does not."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from leadscore.engine.attributes import AttributeSpec
from leadscore.engine.drift import drift_report, psi
from leadscore.engine.model import LeadModel
from leadscore.engine.training import TrainingInput


def live(frame: pl.DataFrame, model: LeadModel) -> tuple[TrainingInput, object]:
    data = TrainingInput.from_frame(frame, AttributeSpec())
    return data, model.attributes_.encode(data.attribute_values, len(data.raw))


def test_psi_is_zero_for_equal_shares_and_grows_with_the_shift() -> None:
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert psi([0.5, 0.5], [0.6, 0.4]) < psi([0.5, 0.5], [0.9, 0.1])


def test_the_training_population_does_not_drift(
    model: LeadModel, holdout_frame: pl.DataFrame
) -> None:
    data, attrs = live(holdout_frame.head(5_000), model)
    report = drift_report(model, model.card_["reference"], data.raw, attrs)
    assert report["alert"] is False, report
    assert report["score_psi"] < 0.1
    assert max(report["feature_psi"].values()) < 0.1


def test_a_shifted_population_raises_the_alert(
    model: LeadModel, holdout_frame: pl.DataFrame
) -> None:
    """Only cold portal leads that never engaged: a different mix from the training leads."""
    shifted = holdout_frame.filter(pl.col("web_activity.properties_viewed").fill_null(0) <= 1)
    assert shifted.height > 300
    data, attrs = live(shifted.head(5_000), model)
    report = drift_report(model, model.card_["reference"], data.raw, attrs)
    assert report["alert"] is True
    assert report["score_psi"] > 0.25 or report["drifted_features"], report


@pytest.mark.parametrize("name", ["reference"])
def test_every_trained_model_carries_its_reference(model: LeadModel, name: str) -> None:
    ref = model.card_[name]
    assert ref["rows"] > 1000
    assert abs(sum(ref["score"]["shares"]) - 1.0) < 1e-3


def test_a_team_field_that_moved_is_named_in_the_report() -> None:
    from leadscore.engine.model import ModelConfig, train
    from leadscore.engine.synthetic import generate

    frame = generate(3000, seed=12)
    rng = np.random.default_rng(12)
    frame = frame.with_columns(
        pl.Series("attributes.agent", rng.choice(["dana", "sam", "lee"], size=3000)),
        pl.Series("attributes.visits", rng.poisson(3, size=3000).astype(float)),
    )
    spec = AttributeSpec(("visits",), ("agent",))
    model = train(TrainingInput.from_frame(frame, spec), ModelConfig(num_threads=1), spec)
    assert {"attributes.agent", "attributes.visits"} <= set(model.card_["reference"]["features"])

    def report(agents: list[str], visits: list[float]) -> dict[str, object]:
        data = TrainingInput.from_frame(
            frame.head(len(agents)).with_columns(
                pl.Series("attributes.agent", agents), pl.Series("attributes.visits", visits)
            ),
            spec,
        )
        attrs = model.attributes_.encode(data.attribute_values, len(data.raw))
        return drift_report(model, model.card_["reference"], data.raw, attrs)

    same = report(frame["attributes.agent"].head(1000).to_list(),
                  frame["attributes.visits"].head(1000).to_list())  # fmt: skip
    assert "attributes.agent" not in same["drifted_features"]  # type: ignore[operator]
    # A new agent takes every lead, and leads visit ten times as often: both fields named.
    moved = report(["a new agent"] * 1000, [30.0] * 1000)
    assert {"attributes.agent", "attributes.visits"} <= set(moved["drifted_features"])  # type: ignore[arg-type]
    assert moved["alert"] is True
