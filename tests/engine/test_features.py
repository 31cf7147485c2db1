"""The feature pipeline: one spec, deterministic, exact across paths, no look into the future."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadscore.engine.columnar import raw_from_frame
from leadscore.engine.features import (
    FEATURE_INDEX,
    FEATURE_NAMES,
    FEATURES,
    GROUPS,
    PROTECTED,
    SourceEncoding,
    markdown_table,
    transform,
)
from leadscore.engine.io import leads_to_frame
from leadscore.engine.raw import raw_from_leads
from leadscore.engine.schema import Interaction, Lead, LeadData, WebActivity

from .strategies import AS_OF, leads

ENCODING = SourceEncoding({"zillow": 0.08, "referral": 0.3}, 0.1)
ROOT = Path(__file__).resolve().parents[2]


def vectors(batch: list[Lead]) -> np.ndarray:
    return transform(raw_from_leads([lead.lead_data for lead in batch], AS_OF), ENCODING)


def test_exactly_28_features_in_the_8_groups() -> None:
    assert len(FEATURES) == 28
    assert len(set(FEATURE_NAMES)) == 28
    assert {f.group for f in FEATURES} == set(GROUPS)
    assert len(GROUPS) == 8


def test_family_status_features_are_the_protected_ones() -> None:
    assert {f.group for f in FEATURES if f.protected} == {"family_demographics"}
    assert {"household_size", "school_district_interest", "bedrooms_per_person"} == PROTECTED


@pytest.mark.parametrize("doc", ["README.md", "docs/features.md"])
def test_documented_table_is_generated_from_the_spec(doc: str) -> None:
    assert markdown_table() in (ROOT / doc).read_text()


def test_empty_lead_is_missing_not_zero() -> None:
    [row] = vectors([Lead(lead_id="empty", lead_data=LeadData())])
    never_missing = {f.name for f in FEATURES if f.missing.startswith("never")}
    for name, value in zip(FEATURE_NAMES, row, strict=True):
        if name in never_missing:
            assert value == 0.0, name
        else:
            assert np.isnan(value), name


WEB_FEATURES = ("properties_viewed", "repeat_listing_views", "saved_and_favorites")


def both_paths(batch: list[Lead]) -> list[np.ndarray]:
    """The feature matrix from pydantic leads and from their canonical frame."""
    return [vectors(batch), transform(raw_from_frame(leads_to_frame(batch), AS_OF), ENCODING)]


def test_web_activity_not_tracked_is_missing_and_tracked_zero_is_zero() -> None:
    """A portal lead carries no site web activity: that is unknown (NaN), not "viewed
    nothing"; a tracked lead whose counters are 0 viewed nothing (0), on every path."""
    zeros = WebActivity(properties_viewed=0, repeat_listing_views=0, saved_searches=0, favorites=0)
    batch = [
        Lead(lead_id="untracked", lead_data=LeadData(source="zillow")),
        Lead(lead_id="empty_block", lead_data=LeadData(web_activity=WebActivity())),
        Lead(lead_id="zeros", lead_data=LeadData(web_activity=zeros)),
        Lead(lead_id="one_zero", lead_data=LeadData(web_activity=WebActivity(favorites=0))),
    ]
    columns = [FEATURE_INDEX[name] for name in WEB_FEATURES]
    for matrix in both_paths(batch):
        untracked, empty_block, tracked_zero, one_zero = matrix[:, columns]
        assert np.isnan(untracked).all()
        assert np.isnan(empty_block).all()
        assert (tracked_zero == 0.0).all()
        # One counter given: the others stay unknown; saves count the one that is known.
        assert np.isnan(one_zero[:2]).all()
        assert one_zero[2] == 0.0


def test_interactions_without_detail_are_counted_but_their_detail_is_unknown() -> None:
    """A CRM export without reply times, lengths or questions: the touches still count, the
    detail is missing (NaN); a reply with 0 questions asked is a real 0."""
    when = AS_OF - timedelta(hours=3)
    bare = Interaction(timestamp=when, type="email_response")
    zero = Interaction(
        timestamp=when, type="email_response", response_time_hours=0.5, questions_asked=0
    )
    batch = [
        Lead(lead_id="bare", lead_data=LeadData(interaction_history=[bare, bare])),
        Lead(lead_id="zero", lead_data=LeadData(interaction_history=[zero])),
    ]
    detail = ["response_hours_median", "fast_response_share", "questions_per_interaction"]
    for matrix in both_paths(batch):
        bare_row, zero_row = matrix
        assert bare_row[FEATURE_INDEX["interaction_count"]] == 2.0
        assert np.isnan(bare_row[[FEATURE_INDEX[name] for name in detail]]).all()
        assert np.isnan(bare_row[FEATURE_INDEX["message_length_mean"]])
        assert zero_row[FEATURE_INDEX["questions_per_interaction"]] == 0.0
        assert zero_row[FEATURE_INDEX["fast_response_share"]] == 1.0
        assert np.isnan(zero_row[FEATURE_INDEX["message_length_mean"]])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(leads, min_size=1, max_size=12))
def test_batch_equals_single_and_frame_path(batch: list[Lead]) -> None:
    together = vectors(batch)
    alone = np.vstack([vectors([lead]) for lead in batch])
    from_frame = transform(raw_from_frame(leads_to_frame(batch), AS_OF), ENCODING)
    assert together.shape == (len(batch), 28)
    assert np.array_equal(together, alone, equal_nan=True)
    assert np.array_equal(together, from_frame, equal_nan=True)


@settings(max_examples=100, deadline=None)
@given(leads, st.lists(st.integers(min_value=1, max_value=10**9), min_size=1, max_size=5))
def test_interactions_after_as_of_are_ignored(lead: Lead, offsets_us: list[int]) -> None:
    future = [
        Interaction(
            timestamp=AS_OF + timedelta(microseconds=us),
            response_time_hours=0.1,
            message_length=999,
            questions_asked=9,
        )
        for us in offsets_us
    ]
    data = lead.lead_data.model_copy(
        update={"interaction_history": [*lead.lead_data.interaction_history, *future]}
    )
    changed = Lead(lead_id=lead.lead_id, lead_data=data)
    assert np.array_equal(vectors([lead]), vectors([changed]), equal_nan=True)


def test_as_of_moves_the_window() -> None:
    lead = Lead.model_validate(
        {
            "lead_id": "a",
            "lead_data": {
                "interaction_history": [
                    {"timestamp": (AS_OF - timedelta(days=1)).isoformat()},
                    {"timestamp": (AS_OF + timedelta(days=1)).isoformat()},
                ]
            },
        }
    )
    count = FEATURE_NAMES.index("interaction_count")
    now = raw_from_leads([lead.lead_data], AS_OF)
    later = raw_from_leads([lead.lead_data], AS_OF + timedelta(days=2))
    assert transform(now, ENCODING)[0, count] == 1.0
    assert transform(later, ENCODING)[0, count] == 2.0


@settings(max_examples=200, deadline=None)
@given(leads)
def test_never_raises_and_stays_finite_or_missing(lead: Lead) -> None:
    [row] = vectors([lead])
    assert not np.isinf(row).any()


_PROBE = """
import hashlib, sys
from leadscore.engine.features import SourceEncoding, transform
from leadscore.engine.raw import raw_from_leads
from leadscore.engine.schema import Lead
sys.path.insert(0, {root!r})
from tests.engine.test_features import sample_leads, AS_OF
enc = SourceEncoding({{"zillow": 0.08, "referral": 0.3}}, 0.1)
x = transform(raw_from_leads([l.lead_data for l in sample_leads()], AS_OF), enc)
print(hashlib.sha256(x.tobytes()).hexdigest())
"""


def sample_leads() -> list[Lead]:
    return [
        Lead.model_validate(
            {
                "lead_id": f"l{i}",
                "lead_data": {
                    "source": source,
                    "budget_range": budget,
                    "timeline": "3-6 months",
                    "location_preference": "Hyde Park, Austin",
                    "interaction_history": [
                        {
                            "timestamp": (AS_OF - timedelta(hours=5 * i + 1)).isoformat(),
                            "response_time_hours": 0.5 * i,
                            "message_length": 100 + i,
                        }
                    ],
                },
            }
        )
        for i, (source, budget) in enumerate(
            [("Zillow", "500k-750k"), ("Referral", "under 1.5m"), ("Facebook", None)]
        )
    ]


@pytest.mark.parametrize("hash_seed", ["1", "2"])
def test_same_vector_in_every_process(hash_seed: str) -> None:
    expected = hashlib.sha256(vectors(sample_leads()).tobytes()).hexdigest()
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(root=str(ROOT))],
        env={"PYTHONHASHSEED": hash_seed, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == expected


@pytest.mark.parametrize("spec", FEATURES, ids=lambda f: f.name)
@pytest.mark.parametrize("value", [float("nan"), 0.0, 1.0, 3.0])
def test_every_reason_reads_as_a_sentence(spec: object, value: float) -> None:
    text = spec.describe(value)  # type: ignore[attr-defined]
    assert text
    assert "{" not in text
    assert not re.search(r"\bnan\b", text, re.IGNORECASE)


@pytest.mark.parametrize(
    ("feature", "value", "text"),
    [
        ("timeline_months", 1.0, "Wants to buy within 1 month"),
        ("timeline_months", 2.0, "Wants to buy within 2 months"),
        ("timeline_months", 1.5, "Wants to buy within 1.5 months"),
        ("lead_age_days", 1.2, "Lead is 1 day old"),
        ("lead_age_days", 3.0, "Lead is 3 days old"),
        ("lead_age_days", 0.2, "New lead: arrived today"),
        ("location_terms", 1.0, "Location described in 1 word"),
        ("previous_transactions", 1.0, "1 previous transaction"),
        ("previous_transactions", 0.0, "0 previous transactions"),
        ("properties_viewed", float(np.log1p(1.0)), "Viewed 1 property"),
        ("properties_viewed", float(np.log1p(12.0)), "Viewed 12 properties"),
        ("message_length_mean", float(np.log1p(1.0)), "Messages average 1 character"),
        ("response_hours_median", float(np.log1p(0.5)), "Typically replies within an hour"),
        ("response_hours_median", float(np.log1p(1.0)), "Typically replies in 1 hour"),
        ("response_hours_median", float(np.log1p(2.5)), "Typically replies in 2.5 hours"),
        ("fast_response_share", 1.0, "Every reply came within an hour"),
        ("fast_response_share", 0.5, "50% of replies came within an hour"),
        ("interaction_count", 1.0, "1 interaction so far"),
        ("interactions_last_7d", 3.0, "3 interactions in the last 7 days"),
        ("interactions_last_7d", 0.0, "No contact in the last 7 days"),
        ("days_since_last_interaction", 0.04, "Last contact today"),
        ("days_since_last_interaction", 1.5, "Last contact 1 day ago"),
        ("repeat_listing_views", 2.0, "Viewed the same listing twice"),
        ("repeat_listing_views", 5.0, "Viewed the same listing 5 times"),
        ("saved_and_favorites", 1.0, "Saved 1 search or favourite"),
        ("questions_per_interaction", 1.0, "Asks 1 question per message"),
        ("questions_per_interaction", 3.0, "Asks 3 questions per message"),
        ("questions_per_interaction", 1.5, "Asks 1.5 questions per message"),
        ("property_criteria", 2.0, "Said which type of home and how many bedrooms"),
    ],
)
def test_reason_texts_say_one_in_the_singular(feature: str, value: float, text: str) -> None:
    assert FEATURES[FEATURE_INDEX[feature]].describe(value) == text
