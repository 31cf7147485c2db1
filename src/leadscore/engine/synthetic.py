"""Synthetic leads whose true odds are known and depend only on what a model can see."""

from __future__ import annotations

import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np
import polars as pl
import pyarrow as pa
from numpy.typing import NDArray

from leadscore.engine.frame import (
    INTERACTION_DTYPE,
    LEAD_COLUMNS,
    ORACLE_COLUMNS,
    OUTCOME_COLUMNS,
    UTC_US,
)
from leadscore.engine.schema import utc_timestamp_us

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]
Bools = NDArray[np.bool_]

DEFAULT_START: Final = datetime(2024, 1, 1, tzinfo=UTC)
HOUR_US: Final = 3_600_000_000
DAY_US: Final = 24 * HOUR_US
#: Interactions are spread over this many days after created_at.
WINDOW_DAYS: Final = 45
#: as_of = created_at + Uniform(0, AS_OF_MAX_DAYS days).
AS_OF_MAX_DAYS: Final = 21
DAYS_PER_MONTH: Final = 30.4
#: Day of year (0-based, ~15 April) where lead volume peaks.
SPRING_PEAK_DAY: Final = 105.0
#: Price (thousands of dollars) assumed where neither budget nor a market is known.
NATIONAL_PRICE_K: Final = 450.0


@dataclass(frozen=True)
class Source:
    """A lead source: how it is written, how its share drifts, and how good its leads are."""

    key: str
    label: str
    mix_base: float
    mix_drift: float
    readiness_shift: float
    conversion_offset: float


SOURCES: Final = (
    Source("zillow", "Zillow", 0.0, -0.5, 0.0, 0.0),
    Source("realtor_com", "Realtor.com", -0.4, -0.3, 0.0, 0.0),
    Source("website", "Website", -0.3, 0.1, 0.1, 0.2),
    Source("facebook", "Facebook", -0.6, 0.7, -0.3, -0.6),
    Source("open_house", "Open House", -1.6, 0.0, 0.3, 0.6),
    Source("referral", "Referral", -1.0, 0.0, 0.4, 0.9),
    Source("google_ads", "Google Ads", -0.9, 0.6, 0.0, -0.2),
    Source("other", "Other", -1.8, 0.0, -0.1, -0.3),
)
#: Logit offset of a lead whose source is null.
MISSING_SOURCE_OFFSET: Final = -0.2


@dataclass(frozen=True)
class Market:
    """A metro the synthetic leads shop in, with the words people use for its parts."""

    city: str
    county: str
    hoods: tuple[str, str]
    zip3: str
    area_code: str
    price_k: float
    weight: float


MARKETS: Final = (
    Market("Austin", "Travis", ("Hyde Park", "Zilker"), "787", "512", 520.0, 1.2),
    Market("Denver", "Denver", ("Capitol Hill", "Highlands"), "802", "303", 600.0, 1.0),
    Market("Phoenix", "Maricopa", ("Arcadia", "Ahwatukee"), "850", "602", 450.0, 1.2),
    Market("Nashville", "Davidson", ("Germantown", "Sylvan Park"), "372", "615", 480.0, 0.9),
    Market("Charlotte", "Mecklenburg", ("Dilworth", "South End"), "282", "704", 400.0, 0.9),
    Market("Tampa", "Hillsborough", ("Hyde Park", "Seminole Heights"), "336", "813", 410.0, 0.9),
    Market("Raleigh", "Wake", ("Five Points", "Oakwood"), "276", "919", 430.0, 0.7),
    Market("Boise", "Ada", ("North End", "Harris Ranch"), "837", "208", 470.0, 0.5),
    Market("Seattle", "King", ("Ballard", "Capitol Hill"), "981", "206", 850.0, 0.8),
    Market("Atlanta", "Fulton", ("Midtown", "Virginia-Highland"), "303", "404", 400.0, 1.0),
    Market("Dallas", "Dallas", ("Uptown", "Lakewood"), "752", "214", 420.0, 1.1),
    Market("Orlando", "Orange", ("Winter Park", "College Park"), "328", "407", 390.0, 0.8),
)

#: (sampling bucket, phrase, months per docs/conventions.md or None). Buckets 0-6 get
#: shorter with readiness; bucket 7 is "unknown".
TIMELINE_PHRASES: Final[tuple[tuple[int, str, float | None], ...]] = (
    (0, "ASAP", 0.5),
    (0, "asap", 0.5),
    (0, "Immediately", 0.5),
    (0, "Right away", 0.5),
    (0, "Need to move now", 0.5),
    (0, "Urgent", 0.5),
    (0, "2 weeks", 2 / 4.345),
    (1, "Within 30 days", 1.0),
    (1, "within a month", 1.0),
    (1, "1 month", 1.0),
    (1, "This month", 1.0),
    (1, "4-6 weeks", 5 / 4.345),
    (2, "1-3 months", 2.0),
    (2, "1 to 3 months", 2.0),
    (2, "In the next 1-3 months", 2.0),
    (2, "2 months", 2.0),
    (3, "3-6 months", 4.5),
    (3, "3 to 6 months", 4.5),
    (3, "Looking in 3-6 months", 4.5),
    (3, "4 months", 4.0),
    (4, "6-12 months", 9.0),
    (4, "6 to 12 months", 9.0),
    (4, "8 months", 8.0),
    (5, "12 months", 12.0),
    (5, "1 year", 12.0),
    (5, "Within a year", 12.0),
    (5, "Next year", 12.0),
    (6, "Over a year", 18.0),
    (6, "1+ years", 18.0),
    (6, "12+ months", 18.0),
    (6, "More than a year", 18.0),
    (6, "1-2 years", 18.0),
    (6, "2 years", 24.0),
    (7, "Just browsing", None),
    (7, "Not sure", None),
    (7, "Unsure", None),
    (7, "Unknown", None),
    (7, "Someday", None),
    (7, "TBD", None),
)

#: (readiness bucket, phrase, readiness per docs/conventions.md or None); bucket 4 is text
#: the convention does not recognise.
FINANCING_PHRASES: Final[tuple[tuple[int, str, float | None], ...]] = (
    (0, "Need financing", 0.0),
    (0, "Not sure", 0.0),
    (0, "Undecided", 0.0),
    (0, "None yet", 0.0),
    (0, "Unsure", 0.0),
    (1, "Mortgage", 1.0),
    (1, "Conventional mortgage", 1.0),
    (1, "FHA loan", 1.0),
    (1, "VA loan", 1.0),
    (1, "Conventional", 1.0),
    (1, "Financing secured", 1.0),
    (2, "Pre-approved", 2.0),
    (2, "Preapproved", 2.0),
    (2, "Pre approved", 2.0),
    (2, "Already pre-approved", 2.0),
    (3, "Cash", 3.0),
    (3, "Cash buyer", 3.0),
    (3, "All cash", 3.0),
    (3, "Paying cash", 3.0),
    (4, "Working with a lender", None),
    (4, "Talking to my bank", None),
    (4, "Will discuss", None),
)

#: (specificity, template) with {city} {county} {hood} {zip} {street} filled per lead.
LOCATION_TEMPLATES: Final[tuple[tuple[int, str], ...]] = (
    (0, "Anywhere"),
    (0, "Not sure"),
    (0, "Flexible"),
    (0, "Open to suggestions"),
    (0, "Somewhere quiet"),
    (0, "Don't know yet"),
    (0, "TBD"),
    (1, "{city}"),
    (1, "{city} area"),
    (1, "Greater {city} area"),
    (1, "{city} suburbs"),
    (1, "{city} metro"),
    (1, "{county} County"),
    (2, "Downtown {city}"),
    (2, "North {city}"),
    (2, "South {city}"),
    (2, "East {city}"),
    (2, "West {city}"),
    (2, "{hood}, {city}"),
    (3, "{zip}"),
    (3, "{city} {zip}"),
    (3, "{street}, {city}"),
    (3, "Near {street}"),
)
STREET_NAMES: Final = (
    "Oak", "Maple", "Cedar", "Pine", "Elm", "Main", "Lake", "Hill",
    "Sunset", "Willow", "Ridge", "Walnut", "Birch", "Spring",
)  # fmt: skip
STREET_SUFFIXES: Final = ("St", "Ave", "Rd", "Blvd", "Dr", "Ln", "Ct", "Way", "Pl")

#: Budget modes: (name, clarity per docs/conventions.md, base logit, readiness slope).
BUDGET_MODES: Final[tuple[tuple[str, int, float, float], ...]] = (
    ("none", 0, -0.3, -0.5),
    ("text_range", 3, 0.2, 0.3),
    ("text_point", 3, -0.6, 0.2),
    ("text_upper", 2, -0.6, 0.1),
    ("text_lower", 2, -1.4, 0.1),
    ("text_unreadable", 1, -0.9, -0.3),
    ("numbers_both", 3, 0.1, 0.3),
    ("numbers_min", 2, -2.3, 0.0),
    ("numbers_max", 2, -1.6, 0.0),
)
#: Share of leads with budget_min/budget_max that also carry the same range as text.
NUMBERS_WITH_TEXT: Final = 0.4

#: (budget mode, template). Fields: lo/hi/x are thousands ("450"), *_usd are whole dollars
#: ("$450,000"), *_m are millions with one decimal ("1.2", only used for amounts >= 1M).
BUDGET_FORMATS: Final[tuple[tuple[str, str], ...]] = (
    ("text_range", "{lo_usd} - {hi_usd}"),
    ("text_range", "{lo}k-{hi}k"),
    ("text_range", "{lo}-{hi}k"),
    ("text_range", "{lo}-{hi}"),
    ("text_range", "${lo}K to ${hi}K"),
    ("text_range", "{lo}k–{hi}k"),
    ("text_range", "{lo} to {hi} thousand"),
    ("text_range", "{lo_m}-{hi_m}M"),
    ("text_point", "around {x}k"),
    ("text_point", "~{x_usd}"),
    ("text_point", "{x_usd}"),
    ("text_point", "about ${x}K"),
    ("text_point", "approximately {x_usd}"),
    ("text_point", "${x_m}M"),
    ("text_upper", "under {x}k"),
    ("text_upper", "up to {x_usd}"),
    ("text_upper", "max {x}k"),
    ("text_upper", "no more than {x_usd}"),
    ("text_upper", "below ${x}K"),
    ("text_upper", "less than {x_usd}"),
    ("text_lower", "at least {x}k"),
    ("text_lower", "{x}k+"),
    ("text_lower", "over {x_usd}"),
    ("text_lower", "starting at {x}k"),
    ("text_lower", "from {x_usd}"),
    ("text_lower", "minimum {x}k"),
)
UNREADABLE_BUDGETS: Final = (
    "looking for something nice",
    "depends on the house",
    "flexible",
    "whatever makes sense",
    "not sure yet",
    "reasonable",
    "TBD",
)

FIRST_NAMES: Final = (
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David",
    "Elizabeth", "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas",
    "Sarah", "Carlos", "Karen", "Daniel", "Lisa", "Matthew", "Nancy", "Anthony", "Sandra",
    "Mark", "Ashley", "Luis", "Emily", "Kevin", "Priya", "Brian", "Mei", "Jorge", "Aisha",
    "Ahmed", "Sofia", "Wei", "Fatima", "Ethan", "Olivia", "Noah", "Emma", "Liam", "Ava",
)  # fmt: skip
LAST_NAMES: Final = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis",
    "Rodriguez", "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson",
    "Thomas", "Taylor", "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White",
    "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson", "Walker", "Young",
    "Allen", "King", "Wright", "Nguyen", "Patel", "Kim", "Chen", "Singh", "Khan", "Cohen",
)  # fmt: skip
EMAIL_DOMAINS: Final = (
    "gmail.com", "yahoo.com", "outlook.com", "icloud.com", "hotmail.com", "aol.com",
)  # fmt: skip
PROPERTY_TYPES: Final = ("Single Family", "Condo", "Townhouse", "Multi-Family", "Land")
PROPERTY_TYPE_WEIGHTS: Final = (0.56, 0.18, 0.18, 0.05, 0.03)
INTERACTION_TYPES: Final = ("email_response", "call", "text", "showing_request", "open_house_visit")
#: (base logit, readiness slope) of each interaction type.
INTERACTION_TYPE_LOGITS: Final = ((1.0, 0.0), (0.4, 0.2), (0.8, 0.0), (-0.9, 0.6), (-1.5, 0.3))

#: Chance each field is null (some are further modulated by readiness, see docs).
MISSING: Final[dict[str, float]] = {
    "source": 0.05,
    "location_preference": 0.15,
    "timeline": 0.2,
    "pre_approved": 0.25,
    "financing": 0.3,
    "household_size": 0.35,
    "school_district_interest": 0.4,
    "previous_transactions": 0.2,
    "first_time_buyer": 0.25,
    "property_type": 0.12,
    "bedrooms": 0.2,
    "web_activity": 0.1,
    "web_field": 0.06,
    "response_time_hours": 0.12,
    "message_length": 0.08,
    "questions_asked": 0.1,
}

#: Conversion logit intercept; the terms below add to it.
CONVERSION_INTERCEPT: Final = -4.55


@dataclass(frozen=True)
class Term:
    """One smooth monotone effect in an oracle logit: coef * transform(x), or `missing`."""

    quantity: str
    transform: str
    coef: float
    missing: float


#: Terms of the conversion logit (besides the source offset). Quantities are OracleInputs fields.
CONVERSION_TERMS: Final = (
    Term("median_response_hours", "log1p", -0.35, -0.4),
    Term("fast_response_share", "linear", 0.6, 0.0),
    Term("interactions", "log1p", 0.45, 0.0),
    Term("interactions_7d", "log1p", 0.4, 0.0),
    Term("days_since_last", "log1p", -0.3, -0.4),
    Term("properties_viewed", "log1p", 0.3, 0.0),
    Term("repeat_listing_views", "log1p", 0.45, 0.0),
    Term("saves", "log1p", 0.3, 0.0),
    Term("budget_clarity", "linear", 0.2, 0.0),
    Term("timeline_months", "log1p", -0.45, -1.0),
    Term("location_specificity", "linear", 0.2, 0.0),
    Term("pre_approved", "linear", 0.5, 0.0),
    Term("financing_readiness", "linear", 0.2, 0.0),
    Term("previous_transactions", "log1p", 0.2, 0.0),
    Term("first_time_buyer", "linear", -0.15, 0.0),
    Term("mean_message_length", "log1p_hundreds", 0.3, 0.0),
    Term("questions_per_interaction", "log1p", 0.4, 0.0),
    Term("contact_completeness", "linear", 0.15, 0.0),
)
CLOSING_INTERCEPT: Final = -0.1
#: Terms of the logit of closing given conversion.
CLOSING_TERMS: Final = (
    Term("pre_approved", "linear", 0.7, 0.0),
    Term("financing_readiness", "linear", 0.3, 0.0),
    Term("previous_transactions", "log1p", 0.25, 0.0),
    Term("budget_clarity", "linear", 0.15, 0.0),
    Term("timeline_months", "log1p", -0.2, -0.5),
)
TIMELINE_INTERCEPT: Final = -0.3
#: Terms of the logit of closing within the stated timeline given closing.
TIMELINE_TERMS: Final = (
    Term("timeline_months", "log", 1.0, 0.0),
    Term("pre_approved", "linear", 0.6, 0.0),
    Term("financing_readiness", "linear", 0.3, 0.0),
    Term("fast_response_share", "linear", 0.4, 0.0),
    Term("median_response_hours", "log1p", -0.2, 0.0),
)


@dataclass(frozen=True)
class OracleInputs:
    """The as-of observable quantities the oracle reads; NaN marks a missing quantity."""

    source_offset: Floats
    median_response_hours: Floats
    fast_response_share: Floats
    interactions: Floats
    interactions_7d: Floats
    days_since_last: Floats
    properties_viewed: Floats
    repeat_listing_views: Floats
    saves: Floats
    budget_clarity: Floats
    timeline_months: Floats
    location_specificity: Floats
    pre_approved: Floats
    financing_readiness: Floats
    previous_transactions: Floats
    first_time_buyer: Floats
    mean_message_length: Floats
    questions_per_interaction: Floats
    contact_completeness: Floats


@dataclass(frozen=True)
class OracleProbabilities:
    """The generator's true probabilities for each lead."""

    conversion: Floats
    closing: Floats
    timeline: Floats


def _transform(name: str, x: Floats) -> Floats:
    """Apply a named monotone transform, so term tables stay plain data."""
    if name == "linear":
        return x
    if name == "log1p":
        return np.log1p(x)
    if name == "log1p_hundreds":
        return np.log1p(x / 100.0)
    if name == "log":
        return np.log(x)
    raise ValueError(f"unknown transform {name!r}")


def _logit(intercept: float, terms: Sequence[Term], inputs: OracleInputs) -> Floats:
    """Sum the effects of a term table, giving missing quantities their fixed effect."""
    total = np.full(len(inputs.source_offset), intercept)
    for term in terms:
        x: Floats = getattr(inputs, term.quantity)
        missing = np.isnan(x)
        safe = np.where(missing, 1.0, x)
        total += np.where(missing, term.missing, term.coef * _transform(term.transform, safe))
    return total


def _sigmoid(x: Floats) -> Floats:
    """Map a logit to a probability."""
    return 1.0 / (1.0 + np.exp(-x))


def oracle_probabilities(inputs: OracleInputs) -> OracleProbabilities:
    """Compute the true probabilities from as-of observables, so tests can re-derive them."""
    conversion = _sigmoid(_logit(CONVERSION_INTERCEPT, CONVERSION_TERMS, inputs) + inputs.source_offset)
    closing = conversion * _sigmoid(_logit(CLOSING_INTERCEPT, CLOSING_TERMS, inputs))
    timeline = _sigmoid(_logit(TIMELINE_INTERCEPT, TIMELINE_TERMS, inputs))
    timeline = np.where(np.isnan(inputs.timeline_months), np.nan, timeline)
    return OracleProbabilities(conversion, closing, timeline)


def generate(n: int, seed: int, start: datetime = DEFAULT_START, days: int = 730) -> pl.DataFrame:
    """Generate ``n`` synthetic leads with outcomes and oracle probabilities, reproducibly.

    Parameters
    ----------
    n : int
        Number of leads.
    seed : int
        Seed for ``numpy.random.default_rng``; the same seed gives the same frame.
    start : datetime
        Timezone-aware start of the creation window.
    days : int
        Length of the creation window in days.

    Returns
    -------
    pl.DataFrame
        Columns ``LEAD_COLUMNS + OUTCOME_COLUMNS + ORACLE_COLUMNS`` with their dtypes,
        sorted by ``created_at``. See docs/synthetic.md for the generative process.

    Examples
    --------
    >>> df = generate(1_000, seed=7)
    >>> df.height, df["lead_id"][0]
    (1000, 'syn_0000000')
    >>> bool(df["p_conversion"].is_between(0, 1).all())
    True
    """
    if n < 0:
        raise ValueError("n must be non-negative")
    if days <= 0:
        raise ValueError("days must be positive")
    rng = np.random.default_rng(seed)
    start_us = utc_timestamp_us(start)

    created_us = _created_offsets(rng, n, start, days) + start_us
    as_of_off = rng.integers(0, AS_OF_MAX_DAYS * DAY_US, n, dtype=np.int64)
    as_of_us = created_us + as_of_off
    t_frac = (created_us - start_us) / (days * DAY_US)

    source = _categorical(rng, _source_logits(t_frac))
    source_missing = rng.random(n) < MISSING["source"]
    shift = np.array([s.readiness_shift for s in SOURCES])[source]
    source_offset = np.where(
        source_missing,
        MISSING_SOURCE_OFFSET,
        np.array([s.conversion_offset for s in SOURCES])[source],
    )
    readiness = rng.standard_normal(n) + np.where(source_missing, 0.0, shift)
    market = _categorical(rng, np.tile(np.log([m.weight for m in MARKETS]), (n, 1)))

    contact = _contact(rng, readiness, market)
    web = _web_activity(rng, readiness)
    prefs = _preferences(rng, readiness)
    location, loc_score = _location(rng, readiness, market)
    budget = _budget(rng, readiness, market)

    engagement = readiness * 0.55 + 0.35 * rng.standard_normal(n)
    speed = 0.5 * rng.standard_normal(n)
    pre = _pre_interactions(rng, engagement, as_of_off)
    pre_attrs = _interaction_attributes(rng, readiness, speed, pre.lead)
    stats = _as_of_stats(pre, pre_attrs, as_of_off, n)

    inputs = OracleInputs(
        source_offset=source_offset,
        median_response_hours=stats["median_response_hours"],
        fast_response_share=stats["fast_response_share"],
        interactions=pre.counts.astype(np.float64),
        interactions_7d=stats["interactions_7d"],
        days_since_last=stats["days_since_last"],
        properties_viewed=web["properties_viewed"],
        repeat_listing_views=web["repeat_listing_views"],
        saves=_nan_sum(web["saved_searches"], web["favorites"]),
        budget_clarity=budget.clarity,
        timeline_months=prefs["timeline_months"],
        location_specificity=loc_score,
        pre_approved=prefs["pre_approved"],
        financing_readiness=prefs["financing_readiness"],
        previous_transactions=prefs["previous_transactions"],
        first_time_buyer=prefs["first_time_buyer"],
        mean_message_length=stats["mean_message_length"],
        questions_per_interaction=stats["questions_per_interaction"],
        contact_completeness=contact.completeness,
    )
    oracle = oracle_probabilities(inputs)
    converted = rng.random(n) < oracle.conversion
    close_given = np.divide(
        oracle.closing, oracle.conversion, out=np.zeros(n), where=oracle.conversion > 0
    )
    closed = converted & (rng.random(n) < close_given)
    within = closed & ~np.isnan(oracle.timeline) & (rng.random(n) < oracle.timeline)
    within_missing = ~closed | np.isnan(oracle.timeline)
    days_to_close = _days_to_close(rng, prefs["timeline_months"], within, closed)
    sale_price = _sale_price(rng, budget, market, loc_score, closed)

    post = _post_interactions(rng, engagement, as_of_off, converted)
    post_attrs = _interaction_attributes(rng, readiness, speed, post.lead)
    history = _history_column(created_us, pre, pre_attrs, post, post_attrs)

    schema = {**LEAD_COLUMNS, **OUTCOME_COLUMNS, **ORACLE_COLUMNS}
    frame = pl.DataFrame(
        {
            "lead_id": pl.select(
                pl.format("syn_{}", pl.int_range(n, dtype=pl.Int64).cast(pl.String).str.zfill(7))
            ).to_series(),
            "name": contact.name,
            "email": contact.email,
            "phone": contact.phone,
            "source": pl.Series([s.label for s in SOURCES]).gather(source).scatter(
                np.flatnonzero(source_missing), None
            ),
            "budget_range": budget.text,
            "budget_min": _float_series(budget.minimum),
            "budget_max": _float_series(budget.maximum),
            "location_preference": location,
            **prefs.columns,
            **{f"web_activity.{key}": _float_series(value) for key, value in web.items()},
            "interaction_history": history,
            "created_at": pl.Series(created_us),
            "as_of": pl.Series(as_of_us),
            "converted": pl.Series(converted),
            "closed": pl.Series(closed),
            "closed_within_timeline": pl.Series(within).scatter(
                np.flatnonzero(within_missing), None
            ),
            "sale_price": _float_series(sale_price),
            "days_to_close": _float_series(days_to_close),
            "p_conversion": pl.Series(oracle.conversion),
            "p_closing": pl.Series(oracle.closing),
            "p_timeline": _float_series(oracle.timeline),
        }
    )
    return frame.select(pl.col(name).cast(dtype) for name, dtype in schema.items())


def _float_series(values: Floats) -> pl.Series:
    """A float column with NaN turned into null, the frame's marker of a missing value."""
    return pl.Series(values, dtype=pl.Float64).fill_nan(None)


def _nan_sum(a: Floats, b: Floats) -> Floats:
    """Sum two counters, treating one missing as zero but both missing as missing."""
    both = np.isnan(a) & np.isnan(b)
    return np.where(both, np.nan, np.nan_to_num(a) + np.nan_to_num(b))


def _missing_logit(rng: np.random.Generator, base: float, readiness: Floats, slope: float) -> Bools:
    """Missingness whose rate is `base` at average readiness and falls as readiness rises."""
    logit = np.log(base / (1.0 - base)) - slope * readiness
    return rng.random(len(readiness)) < _sigmoid(logit)


def _categorical(rng: np.random.Generator, logits: Sequence[Floats]) -> Ints:
    """Draw one category per row from per-row logits, one category array at a time."""
    weights = [np.exp(np.clip(logit, -30.0, 30.0)) for logit in logits]
    total = np.sum(weights, axis=0)
    u = rng.random(len(total)) * total
    chosen = np.zeros(len(total), dtype=np.int64)
    cumulative = np.zeros(len(total))
    for weight in weights[:-1]:
        cumulative += weight
        chosen += u >= cumulative
    return chosen


def _pick(rng: np.random.Generator, bucket: Ints, table_buckets: Sequence[int]) -> Ints:
    """Choose uniformly among the table rows of each lead's bucket (rows grouped by bucket)."""
    counts = np.bincount(np.asarray(table_buckets), minlength=int(max(table_buckets)) + 1)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return (first[bucket] + np.floor(rng.random(len(bucket)) * counts[bucket])).astype(np.int64)


def _render(
    templates: Sequence[str],
    choice: Ints,
    missing: Bools,
    values: pl.DataFrame,
    fields_: dict[str, pl.Expr],
) -> pl.Series:
    """Fill each lead's chosen template from its values, rendering one template at a time."""
    out = pl.repeat(None, len(choice), dtype=pl.String, eager=True)
    order = np.argsort(choice, kind="stable")
    bounds = np.searchsorted(choice[order], np.arange(len(templates) + 1))
    for index, template in enumerate(templates):
        rows = order[bounds[index] : bounds[index + 1]]
        rows = rows[~missing[rows]]
        if rows.size == 0:
            continue
        parts: list[pl.Expr] = []
        for literal, name, _, _ in string.Formatter().parse(template):
            if literal:
                parts.append(pl.lit(literal))
            if name is not None:
                parts.append(fields_[name].cast(pl.String))
        text = values[rows].select(pl.concat_str(parts).alias("text")).to_series()
        out = out.scatter(rows, text)
    return out


