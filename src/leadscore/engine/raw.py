"""Per-lead raw quantities, extracted as of an instant, from pydantic leads or a polars frame.

Both producers (this module for leads, `columnar` for frames) return the same `RawBatch`;
the feature transform only ever sees that, so a lead scored alone, in a batch or from a file
gets the same vector. Every aggregate is exact (counts, integer sums, min/max, the lower
median) so the two producers agree to the last bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import numpy as np
from numpy.typing import NDArray

from leadscore.engine.budget import (
    MAX_PRICE,
    MIN_PRICE,
    PriceRange,
    budget_clarity,
    parse_budget,
)
from leadscore.engine.schema import LeadData, utc_timestamp_us
from leadscore.engine.textparse import (
    financing_readiness,
    location_specificity,
    normalise_category,
    parse_timeline_months,
)

FloatArray = NDArray[np.float64]

WEEK_US: Final = 7 * 86_400 * 1_000_000
FAST_RESPONSE_HOURS: Final = 1.0

#: The raw quantities, in column order of `RawBatch.values`.
RAW_FIELDS: Final[tuple[str, ...]] = (
    "n_inter",
    "n_inter_7d",
    "last_inter_age_us",
    "resp_median",
    "n_resp",
    "n_fast",
    "msg_sum",
    "n_msg",
    "q_sum",
    "n_q",
    "lead_age_us",
    "budget_low",
    "budget_high",
    "budget_clarity",
    "timeline_months",
    "loc_score",
    "loc_terms",
    "n_property_criteria",
    "household_size",
    "school",
    "bedrooms",
    "pre_approved",
    "financing",
    "prev_tx",
    "ftb",
    "contact_count",
    "properties_viewed",
    "repeat_views",
    "saved_searches",
    "favorites",
)
RAW_INDEX: Final[dict[str, int]] = {name: i for i, name in enumerate(RAW_FIELDS)}
NAN: Final = float("nan")


@dataclass(frozen=True)
class RawBatch:
    """Raw quantities for n leads: an (n, len(RAW_FIELDS)) float matrix plus normalised sources."""

    values: FloatArray
    sources: list[str | None]

    def col(self, name: str) -> FloatArray:
        """One raw quantity for every lead."""
        return self.values[:, RAW_INDEX[name]]

    def __len__(self) -> int:
        return int(self.values.shape[0])


def _f(value: float | int | bool | None) -> float:
    return NAN if value is None else float(value)


#: Unicode White_Space, as polars and pydantic trim it; Python's own strip() also drops U+001C-1F.
UNICODE_WHITESPACE: Final = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680"
    + "".join(map(chr, range(0x2000, 0x200B)))
    + "\u2028\u2029\u202f\u205f\u3000"
)


def _text_given(text: str | None) -> bool:
    """Whether a text field says anything, trimmed exactly as the columnar path trims it."""
    return text is not None and text.strip(UNICODE_WHITESPACE) != ""


def _budget(data: LeadData) -> tuple[float, float, float]:
    """Budget fields win over the budget text; the text is parsed only when no field is set."""
    if data.budget_min is not None or data.budget_max is not None:
        rng: PriceRange | None = PriceRange(
            _plausible(data.budget_min), _plausible(data.budget_max)
        )
        clarity = budget_clarity(rng, True)
    else:
        rng = parse_budget(data.budget_range)
        clarity = budget_clarity(rng, _text_given(data.budget_range))
    low = NAN if rng is None or rng.low is None else rng.low
    high = NAN if rng is None or rng.high is None else rng.high
    return low, high, float(clarity)


def _plausible(price: float | None) -> float | None:
    """A budget number outside what a home can cost is no information (0 = "no limit")."""
    return price if price is not None and MIN_PRICE <= price <= MAX_PRICE else None


def _location(text: str | None) -> tuple[float, float]:
    parsed = location_specificity(text)
    return (NAN, NAN) if parsed is None else (float(parsed[0]), float(parsed[1]))


def _lead_row(data: LeadData, as_of_us: int) -> list[float]:
    """All raw quantities of one lead, interactions after `as_of_us` ignored."""
    times: list[int] = []
    responses: list[float] = []
    msg_sum = n_msg = q_sum = n_q = 0
    for item in data.interaction_history:
        ts = utc_timestamp_us(item.timestamp)
        if ts > as_of_us:
            continue
        times.append(ts)
        if item.response_time_hours is not None:
            responses.append(item.response_time_hours)
        if item.message_length is not None:
            msg_sum += item.message_length
            n_msg += 1
        if item.questions_asked is not None:
            q_sum += item.questions_asked
            n_q += 1
    responses.sort()
    n_resp = len(responses)
    web = data.web_activity
    low, high, clarity = _budget(data)
    loc_score, loc_terms = _location(data.location_preference)
    timeline = parse_timeline_months(data.timeline)
    financing = financing_readiness(data.financing)
    return [
        float(len(times)),
        float(sum(1 for ts in times if ts > as_of_us - WEEK_US)),
        float(as_of_us - max(times)) if times else NAN,
        responses[(n_resp - 1) // 2] if n_resp else NAN,
        float(n_resp),
        float(sum(1 for r in responses if r <= FAST_RESPONSE_HOURS)),
        float(msg_sum),
        float(n_msg),
        float(q_sum),
        float(n_q),
        float(as_of_us - utc_timestamp_us(data.created_at)) if data.created_at else NAN,
        low,
        high,
        clarity,
        _f(timeline),
        loc_score,
        loc_terms,
        float(_text_given(data.property_type) + (data.bedrooms is not None)),
        _f(data.household_size),
        _f(data.school_district_interest),
        _f(data.bedrooms),
        _f(data.pre_approved),
        _f(financing),
        _f(data.previous_transactions),
        _f(data.first_time_buyer),
        float(_text_given(data.name) + _text_given(data.email) + _text_given(data.phone)),
        _f(web.properties_viewed if web else None),
        _f(web.repeat_listing_views if web else None),
        _f(web.saved_searches if web else None),
        _f(web.favorites if web else None),
    ]


def raw_from_leads(leads: Sequence[LeadData], as_of: datetime | None = None) -> RawBatch:
    """Raw quantities of pydantic leads as of one instant (now when not given)."""
    as_of_us = utc_timestamp_us(as_of or datetime.now(UTC))
    rows = [_lead_row(data, as_of_us) for data in leads]
    values = np.array(rows, dtype=np.float64).reshape(len(rows), len(RAW_FIELDS))
    return RawBatch(values, [normalise_category(data.source) for data in leads])
