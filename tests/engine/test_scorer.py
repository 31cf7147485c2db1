"""The scorer: one lead, many, pre-extracted features — one typed answer, exact reasons."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadscore.engine.features import FEATURE_NAMES, GROUPS, transform
from leadscore.engine.io import frame_to_leads
from leadscore.engine.model import LeadModel, ScoringPolicy
from leadscore.engine.raw import raw_from_leads
from leadscore.engine.schema import Lead
from leadscore.engine.scorer import Scorer, ScoreResult
from leadscore.scoring.schemas import EXAMPLE_LEAD

from .strategies import leads as any_leads

AS_OF = datetime(2026, 1, 25, tzinfo=UTC)

SARAH = {
    "lead_id": EXAMPLE_LEAD["lead_id"],
    "lead_data": EXAMPLE_LEAD["lead_data"]
    | {
        "created_at": "2026-01-20T09:00:00Z",
        "web_activity": {"properties_viewed": 14, "repeat_listing_views": 4, "favorites": 3},
    },
}


def leads_from(frame: pl.DataFrame, n: int) -> list[Lead]:
    return frame_to_leads(frame.head(n))


@pytest.fixture(scope="module")
def scorer(model: LeadModel) -> Scorer:
    return Scorer(model)


def test_contract_example_scores(scorer: Scorer) -> None:
    result = scorer.score(Lead.model_validate(SARAH), as_of=AS_OF)
    assert 0 <= result.ml_score <= 100
    assert result.ml_score == pytest.approx(result.conversion * 100, abs=0.01)
    assert result.classification in {"hot", "warm", "cold"}
    assert 0 <= result.closing <= result.conversion  # type: ignore[operator]
    assert 0 <= result.timeline_accuracy <= 1  # type: ignore[operator]
    assert result.commission is not None
    assert result.commission.estimated_sale_price == 625_000.0
    assert result.commission.estimated_commission == 37_500.0
    assert result.commission.expected_commission == pytest.approx(
        37_500.0 * result.closing,
        abs=2.0,  # closing is shown to 4 decimals  # type: ignore[operator]
    )
    assert result.model_version == scorer.model.version_
    assert result.reasons
    assert all(r.text.endswith("points") for r in result.reasons)


def test_reasons_are_the_leads_own_and_add_up(scorer: Scorer, holdout_frame: pl.DataFrame) -> None:
    """Per-lead points over all features sum to score minus the base score (exact TreeSHAP)."""
    leads = leads_from(holdout_frame, 50)
    features = transform(
        raw_from_leads([lead.lead_data for lead in leads], AS_OF), scorer.model.encoding_
    )
    arrays = scorer.arrays(features, None, explain=True)
    assert arrays.points is not None
    base = scorer.model.calibrators_["conversion"].predict(
        np.asarray(
            scorer.model.boosters_["conversion"].predict(arrays.model_matrix[:1], pred_contrib=True)
        )[:, -1]
    )[0]
    totals = arrays.points.sum(axis=1)
    assert np.allclose(totals, arrays.conversion * 100 - base * 100, atol=1e-6)
    # Different leads get different reasons: these are not global importances.
    tops = {int(np.argmax(np.abs(row))) for row in arrays.points}
    assert len(tops) > 1


def test_pre_approval_reason_reads_plainly(scorer: Scorer) -> None:
    result = scorer.score(Lead.model_validate(SARAH), as_of=AS_OF)
    texts = [r.text for r in result.reasons]
    assert all(": " in t and ("+" in t or "-" in t) for t in texts)
    approved = [r for r in result.reasons if r.feature == "pre_approved"]
    if approved:
        assert approved[0].text.startswith("Pre-approved for a mortgage: ")


def test_many_equals_one_by_one_and_predict_with_features(
    scorer: Scorer, holdout_frame: pl.DataFrame
) -> None:
    leads = leads_from(holdout_frame, 40)
    many = scorer.score_many(leads, as_of=AS_OF)
    single = [scorer.score(lead, as_of=AS_OF) for lead in leads]
    features = transform(
        raw_from_leads([lead.lead_data for lead in leads], AS_OF), scorer.model.encoding_
    )
    direct = scorer.predict_with_features(features, [lead.lead_id for lead in leads])

    def strip(r: ScoreResult) -> tuple[object, ...]:
        return (
            r.lead_id,
            r.ml_score,
            r.ml_confidence,
            r.classification,
            r.reasons,
            r.commission,
            r.closing,
            r.timeline_accuracy,
        )

    assert [strip(r) for r in many] == [strip(r) for r in single] == [strip(r) for r in direct]
    assert [r.lead_id for r in many] == [lead.lead_id for lead in leads]


def test_predict_with_features_checks_shape(scorer: Scorer) -> None:
    with pytest.raises(ValueError, match="shape"):
        scorer.predict_with_features(np.zeros((2, 27)), ["a", "b"])
    with pytest.raises(ValueError, match="one lead id"):
        scorer.predict_with_features(np.zeros((2, len(FEATURE_NAMES))), ["a"])


def test_switches_turn_parts_off(scorer: Scorer) -> None:
    result = scorer.score(Lead.model_validate(SARAH), explain=False, commission=False)
    assert result.reasons == ()
    assert result.commission is None
    assert result.feature_importance == {}


def test_no_budget_means_no_price_not_a_guess(scorer: Scorer) -> None:
    lead = Lead.model_validate({"lead_id": "x", "lead_data": {"budget_range": "something nice"}})
    commission = scorer.score(lead).commission
    assert commission is not None
    assert commission.estimated_sale_price is None
    assert commission.expected_commission is None


def test_policy_thresholds_are_configurable(model: LeadModel) -> None:
    strict = Scorer(model, ScoringPolicy(hot=99.0, warm=98.0, escalation_confidence=0.5))
    result = strict.score(Lead.model_validate(SARAH), as_of=AS_OF)
    assert result.classification == "cold"
    assert result.escalation_recommended is (result.ml_confidence < 0.5 or result.evidence < 0.4)


def test_a_per_call_policy_scores_as_a_scorer_built_with_it(
    scorer: Scorer, model: LeadModel
) -> None:
    team = ScoringPolicy(hot=5.0, warm=2.0, escalation_confidence=0.99, commission_rate=0.02)
    lead = Lead.model_validate(SARAH)
    given = scorer.score(lead, as_of=AS_OF, policy=team)
    built = Scorer(model, team).score(lead, as_of=AS_OF)
    default = scorer.score(lead, as_of=AS_OF)
    assert given.classification == built.classification == "hot"
    assert (given.ml_confidence, given.escalation_recommended) == (
        built.ml_confidence,
        built.escalation_recommended,
    )
    assert given.commission == built.commission
    assert given.ml_score == default.ml_score  # the probability is the model's either way
    assert scorer.score(lead, as_of=AS_OF).classification == default.classification


def test_group_points_cover_every_feature(scorer: Scorer) -> None:
    result = scorer.score(Lead.model_validate(SARAH), as_of=AS_OF)
    assert set(result.group_points) <= set(GROUPS)
    assert "family_demographics" not in result.group_points  # protected: not in the model
    base = scorer.model.calibrators_["conversion"].predict(
        np.asarray(
            scorer.model.boosters_["conversion"].predict(
                np.zeros((1, len(scorer.model.model_features_))), pred_contrib=True
            )
        )[:, -1]
    )[0]
    assert sum(result.group_points.values()) == pytest.approx(result.ml_score - base * 100, abs=0.1)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(any_leads, min_size=1, max_size=5))
def test_any_valid_lead_gets_a_well_formed_score(scorer: Scorer, batch: list[Lead]) -> None:
    for result in scorer.score_many(batch, as_of=AS_OF):
        assert 0 <= result.ml_score <= 100
        assert 0.5 <= result.ml_confidence <= 1 or result.classification == "warm"
        assert 0 <= result.ml_confidence <= 1
        assert result.classification in {"hot", "warm", "cold"}
        assert all(np.isfinite(r.points) for r in result.reasons)
        assert result.commission is not None
        price = result.commission.estimated_sale_price
        assert price is None or price > 0
