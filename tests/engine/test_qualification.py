"""Evidence, qualification and the questions to ask, through the engine on the trained model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from leadscore.engine.model import LeadModel
from leadscore.engine.qualification import ASK_AT_MOST, FACTS
from leadscore.engine.schema import Lead
from leadscore.engine.scorer import Scorer

AS_OF = datetime(2026, 1, 25, tzinfo=UTC)
#: What filling each askable field with its "yes" answer means in lead data.
YES: dict[str, dict[str, Any]] = {
    "pre_approved": {"pre_approved": True},
    "financing": {"financing": "cash"},
    "timeline": {"timeline": "1-3 months"},
    "first_time_buyer": {"first_time_buyer": True},
}


def _lead(**data: Any) -> Lead:
    return Lead.model_validate({"lead_id": "q1", "lead_data": data})


def _portal_lead(**extra: Any) -> Lead:
    """A Zillow lead with a budget, an area and one quick e-mail reply; nothing else known."""
    reply = {"timestamp": (AS_OF - timedelta(hours=1)).isoformat(), "type": "email_response",
             "response_time_hours": 0.5, "message_length": 120, "questions_asked": 2}  # fmt: skip
    return _lead(source="zillow", budget_range="500k-750k", location_preference="Downtown Austin",
                 interaction_history=[reply], **extra)  # fmt: skip


@pytest.fixture(scope="module")
def scorer(model: LeadModel) -> Scorer:
    return Scorer(model)


def test_an_empty_lead_is_thin_data_to_qualify(scorer: Scorer) -> None:
    empty = scorer.score(_lead(), as_of=AS_OF)
    full = scorer.score(_portal_lead(pre_approved=True, timeline="3-6 months"), as_of=AS_OF)
    assert 0 <= empty.evidence < 0.4 <= full.evidence <= 1
    assert empty.qualification.needed
    assert "thin_data" in empty.qualification.reasons
    assert empty.escalation_recommended is empty.qualification.needed
    assert empty.qualification.ask_next  # there is something worth asking


def test_reasons_are_only_what_the_lead_did_and_said(scorer: Scorer, holdout_frame: Any) -> None:
    from leadscore.engine.io import frame_to_leads

    for result in scorer.score_many(frame_to_leads(holdout_frame.head(300)), as_of=AS_OF):
        for reason in result.reasons:
            assert reason.value is not None, reason
            assert "unknown" not in reason.text.lower(), reason


def test_ask_next_asks_only_missing_facts_and_scores_both_answers(scorer: Scorer) -> None:
    lead = _portal_lead()
    result = scorer.score(lead, as_of=AS_OF)
    asked = result.qualification.ask_next
    assert 0 < len(asked) <= ASK_AT_MOST
    known = {"budget_range", "location_preference"}
    assert not {q.field for q in asked} & known
    assert {q.field for q in asked} <= {f.field for f in FACTS}
    moves = [abs(q.score_if_yes - q.score_if_no) for q in asked]
    assert moves == sorted(moves, reverse=True)  # the most informative question first
    for question in asked:
        if question.field in YES:
            data = lead.lead_data.model_dump() | YES[question.field]
            answered = scorer.score(Lead(lead_id="q1", lead_data=data), as_of=AS_OF)
            assert question.score_if_yes == pytest.approx(answered.ml_score, abs=0.051)


def test_a_known_fact_is_not_asked_again(scorer: Scorer) -> None:
    asked = scorer.score(_portal_lead(pre_approved=True), as_of=AS_OF).qualification.ask_next
    assert "pre_approved" not in {q.field for q in asked}


def test_batches_qualify_as_single_leads_do(scorer: Scorer) -> None:
    leads = [_lead(), _portal_lead(), _portal_lead(pre_approved=True, financing="cash")]
    many = scorer.score_many(leads, as_of=AS_OF)
    for lead, batch in zip(leads, many, strict=True):
        one = scorer.score(lead, as_of=AS_OF)
        assert (batch.evidence, batch.qualification) == (one.evidence, one.qualification)
