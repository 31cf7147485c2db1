"""Hypothesis strategies for valid leads, shared by the feature property tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from leadscore.engine.schema import Lead

AS_OF = datetime(2026, 3, 1, tzinfo=UTC)

_instants = st.integers(min_value=-90 * 86_400_000_000, max_value=30 * 86_400_000_000).map(
    lambda us: AS_OF + timedelta(microseconds=us)
)
_text = st.one_of(
    st.none(),
    st.text(max_size=40),
    st.sampled_from(
        [
            "500k-750k",
            "$1.8M-$2.2M",
            "under 1.5m",
            "3-6 months",
            "asap",
            "Downtown Austin",
            "78704",
            "cash",
            "pre-approved",
            "Zillow",
            "Realtor.com",
            "  ",
            "",
        ]
    ),
)
_count = st.one_of(st.none(), st.integers(min_value=0, max_value=500))

interactions = st.fixed_dictionaries(
    {"timestamp": _instants},
    optional={
        "type": st.sampled_from(["email_response", "call", "text", "showing_request"]),
        "response_time_hours": st.one_of(
            st.none(), st.floats(min_value=0, max_value=24 * 365, allow_nan=False)
        ),
        "message_length": _count,
        "questions_asked": _count,
    },
)

lead_data: st.SearchStrategy[dict[str, Any]] = st.fixed_dictionaries(
    {},
    optional={
        "name": _text,
        "email": _text,
        "phone": _text,
        "source": _text,
        "budget_range": _text,
        "budget_min": st.one_of(st.none(), st.floats(min_value=0, max_value=1e7)),
        "location_preference": _text,
        "timeline": _text,
        "pre_approved": st.one_of(st.none(), st.booleans()),
        "financing": _text,
        "household_size": st.one_of(st.none(), st.integers(min_value=1, max_value=30)),
        "school_district_interest": st.one_of(st.none(), st.booleans()),
        "previous_transactions": _count,
        "first_time_buyer": st.one_of(st.none(), st.booleans()),
        "property_type": _text,
        "bedrooms": st.one_of(st.none(), st.integers(min_value=0, max_value=50)),
        "web_activity": st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {},
                optional={
                    "properties_viewed": _count,
                    "repeat_listing_views": _count,
                    "saved_searches": _count,
                    "favorites": _count,
                },
            ),
        ),
        "interaction_history": st.lists(interactions, max_size=8),
        "created_at": st.one_of(st.none(), _instants),
    },
)

leads = st.builds(
    lambda i, data: Lead.model_validate({"lead_id": f"lead_{i}", "lead_data": data}),
    st.integers(min_value=0, max_value=10**6),
    lead_data,
)
