"""Synthetic leads whose true odds are known and depend only on what a model can see."""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np
import polars as pl
import pyarrow as pa
from numpy.typing import NDArray

from leadscore.engine.budget import PriceRange, budget_clarity, parse_budget
from leadscore.engine.frame import (
    INTERACTION_DTYPE,
    LEAD_COLUMNS,
    ORACLE_COLUMNS,
    OUTCOME_COLUMNS,
)
from leadscore.engine.schema import utc_timestamp_us
from leadscore.engine.textparse import (
    financing_readiness,
    location_specificity,
    normalise_category,
    parse_timeline_months,
)

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
#: Logit offset of a lead whose source is null: about the mix-weighted mean offset, so a
#: dropped source says nothing by itself.
MISSING_SOURCE_OFFSET: Final = 0.0


@dataclass(frozen=True)
class Observability:
    """What a source's pipeline records, drawn per lead independently of its behaviour."""

    key: str | None
    label: str
    web_tracked: float
    detail_tracked: float
    why: str


#: Chance that the team's site tracks the lead's web activity, and that the CRM keeps the
#: interaction detail (reply times, message lengths, questions), by source (key None: null).
OBSERVABILITY: Final = (
    Observability("zillow", "Zillow", 0.0, 0.75, "portal lead: browses on the portal"),
    Observability("realtor_com", "Realtor.com", 0.0, 0.75, "portal lead: browses on the portal"),
    Observability("website", "Website", 0.95, 0.85, "the team's IDX site tracks its visitors"),
    Observability("facebook", "Facebook", 0.35, 0.7, "some ads land on the IDX site"),
    Observability("open_house", "Open House", 0.05, 0.45, "met in person, few digital traces"),
    Observability("referral", "Referral", 0.05, 0.45, "calls and meetings, few digital traces"),
    Observability("google_ads", "Google Ads", 0.5, 0.75, "half the ads land on the IDX site"),
    Observability("other", "Other", 0.15, 0.6, "mixed origins"),
    Observability(None, "(null)", 0.2, 0.5, "a CRM export that dropped the source"),
)


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

#: Share of leads whose source never asks for a budget (drawn independently of readiness).
BUDGET_NOT_ASKED: Final = 0.2
#: Share of leads that reach the CRM as a bare contact (a phone list, an import that kept only
#: the contact): no form field at all, drawn independently of readiness and source.
BARE_CONTACTS: Final = 0.08
#: Budget modes: (name, clarity per docs/conventions.md, base logit, readiness slope); "none"
#: is not drawn from its logit: it is the mode of every lead nobody asked.
BUDGET_MODES: Final[tuple[tuple[str, int, float, float], ...]] = (
    ("none", 0, 0.0, 0.0),
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
    "response_time_hours": 0.12,
    "message_length": 0.08,
    "questions_asked": 0.1,
}

#: Conversion logit intercept; the terms below add to it.
CONVERSION_INTERCEPT: Final = -4.44


@dataclass(frozen=True)
class Term:
    """One smooth monotone effect in an oracle logit: coef * transform(x), or `missing`."""

    quantity: str
    transform: str
    coef: float
    missing: float


#: Terms of the conversion logit (besides the source offset). Quantities are OracleInputs fields.
#: A quantity nobody recorded is neutral in probability: its missing effect is the one under
#: which the leads that have it would convert, on average, as they do (docs/synthetic.md § 3a).
#: Counts that are never missing (interactions, age, contact) carry their value, zero included.
CONVERSION_TERMS: Final = (
    Term("median_response_hours", "log1p", -0.3, -0.30),
    Term("fast_response_share", "linear", 0.6, 0.21),
    Term("interactions", "log1p", 0.45, 0.0),
    Term("interactions_7d", "log1p", 0.35, 0.0),
    Term("lead_age_days", "log1p", -0.35, 0.0),
    Term("days_since_last", "log1p", -0.25, -0.28),
    Term("properties_viewed", "log1p", 0.25, 0.50),
    Term("repeat_listing_views", "log1p", 0.45, 0.48),
    Term("saves", "log1p", 0.25, 0.25),
    Term("budget_clarity", "linear", 0.2, 0.53),
    Term("timeline_months", "log1p", -0.45, -0.66),
    Term("location_specificity", "linear", 0.15, 0.27),
    Term("pre_approved", "linear", 0.6, 0.26),
    Term("financing_readiness", "linear", 0.15, 0.22),
    Term("previous_transactions", "log1p", 0.15, 0.06),
    Term("first_time_buyer", "linear", -0.15, -0.08),
    Term("mean_message_length", "log1p_hundreds", 0.3, 0.34),
    Term("questions_per_interaction", "log1p", 0.45, 0.31),
    Term("contact_completeness", "linear", 0.12, 0.0),
)
CLOSING_INTERCEPT: Final = -0.1
#: Terms of the logit of closing given conversion.
CLOSING_TERMS: Final = (
    Term("pre_approved", "linear", 0.7, 0.34),
    Term("financing_readiness", "linear", 0.3, 0.45),
    Term("previous_transactions", "log1p", 0.25, 0.11),
    Term("budget_clarity", "linear", 0.15, 0.40),
    Term("timeline_months", "log1p", -0.2, -0.26),
)
TIMELINE_INTERCEPT: Final = -0.3
#: Terms of the logit of closing within the stated timeline given closing.
TIMELINE_TERMS: Final = (
    Term("timeline_months", "log", 1.0, 0.0),
    Term("pre_approved", "linear", 0.6, 0.37),
    Term("financing_readiness", "linear", 0.3, 0.54),
    Term("fast_response_share", "linear", 0.4, 0.18),
    Term("median_response_hours", "log1p", -0.2, -0.17),
)


@dataclass(frozen=True)
class OracleInputs:
    """The as-of observable quantities the oracle reads; NaN marks a missing quantity."""

    source_offset: Floats
    median_response_hours: Floats
    fast_response_share: Floats
    interactions: Floats
    interactions_7d: Floats
    lead_age_days: Floats
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
    """The generator's true probabilities for each lead (timeline is NaN without a timeline)."""

    conversion: Floats
    closing: Floats
    timeline: Floats
    closing_given_conversion: Floats


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
    """Map a logit to a probability; every oracle head is logistic."""
    return 1.0 / (1.0 + np.exp(-x))


def oracle_probabilities(inputs: OracleInputs) -> OracleProbabilities:
    """Compute the true probabilities from as-of observables, so tests can re-derive them."""
    conversion = _sigmoid(
        _logit(CONVERSION_INTERCEPT, CONVERSION_TERMS, inputs) + inputs.source_offset
    )
    given = _sigmoid(_logit(CLOSING_INTERCEPT, CLOSING_TERMS, inputs))
    timeline = _sigmoid(_logit(TIMELINE_INTERCEPT, TIMELINE_TERMS, inputs))
    timeline = np.where(np.isnan(inputs.timeline_months), np.nan, timeline)
    return OracleProbabilities(conversion, conversion * given, timeline, given)


def oracle_inputs_from_frame(frame: pl.DataFrame) -> OracleInputs:
    """Rebuild the oracle's inputs from a canonical frame's observable columns alone (the real
    parsers and an as-of aggregation of the history), so anyone can re-derive the truth."""
    rt = pl.col("response_time_hours")
    seen = (
        frame.select(pl.int_range(pl.len()).alias("row"), "as_of", "interaction_history")
        .explode("interaction_history")
        .unnest("interaction_history")
        .filter(pl.col("timestamp").is_not_null() & (pl.col("timestamp") <= pl.col("as_of")))
        .group_by("row")
        .agg(
            pl.len().alias("n"),
            (pl.col("timestamp") > pl.col("as_of") - pl.duration(days=7)).sum().alias("n7"),
            (pl.col("as_of").first() - pl.col("timestamp").max())
            .dt.total_microseconds()
            .alias("age_us"),
            rt.quantile(0.5, interpolation="lower").alias("median"),
            ((rt <= 1.0).sum() / rt.count()).alias("fast"),
            pl.col("message_length").mean().alias("msg"),
            pl.col("questions_asked").mean().alias("questions"),
        )
    )
    agg = (
        frame.select(pl.int_range(pl.len()).alias("row"))
        .join(seen, on="row", how="left")
        .sort("row")
        .with_columns(pl.col("n", "n7").fill_null(0))
        .fill_nan(None)
    )

    def floats(values: pl.Series | Sequence[float | None]) -> Floats:
        """Nulls as NaN, the oracle's marker of a missing quantity."""
        return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)

    offsets = {s.key: s.conversion_offset for s in SOURCES}
    source = [
        MISSING_SOURCE_OFFSET if s is None else offsets.get(normalise_category(s) or "", 0.0)
        for s in frame["source"].to_list()
    ]
    clarity: list[float | None] = []
    for text, low, high in frame.select("budget_range", "budget_min", "budget_max").iter_rows():
        numbers = PriceRange(low, high) if low is not None or high is not None else None
        level = budget_clarity(numbers or parse_budget(text), text is not None)
        clarity.append(float(level) if level > 0 else None)  # no budget at all: never asked
    location = [location_specificity(t) for t in frame["location_preference"].to_list()]
    web = {k: floats(frame[f"web_activity.{k}"]) for k in ("saved_searches", "favorites")}
    lead_age_us = (frame["as_of"] - frame["created_at"]).dt.total_microseconds()
    return OracleInputs(
        source_offset=np.array(source, dtype=np.float64),
        median_response_hours=floats(agg["median"]),
        fast_response_share=floats(agg["fast"]),
        interactions=floats(agg["n"]),
        interactions_7d=floats(agg["n7"]),
        lead_age_days=floats(lead_age_us) / DAY_US,
        days_since_last=floats(agg["age_us"]) / DAY_US,
        properties_viewed=floats(frame["web_activity.properties_viewed"]),
        repeat_listing_views=floats(frame["web_activity.repeat_listing_views"]),
        saves=_nan_sum(web["saved_searches"], web["favorites"]),
        budget_clarity=floats(clarity),
        timeline_months=floats([parse_timeline_months(t) for t in frame["timeline"].to_list()]),
        location_specificity=floats([None if loc is None else loc[0] for loc in location]),
        pre_approved=floats(frame["pre_approved"]),
        financing_readiness=floats([financing_readiness(t) for t in frame["financing"].to_list()]),
        previous_transactions=floats(frame["previous_transactions"]),
        first_time_buyer=floats(frame["first_time_buyer"]),
        mean_message_length=floats(agg["msg"]),
        questions_per_interaction=floats(agg["questions"]),
        contact_completeness=frame.select(
            pl.sum_horizontal(pl.col("name", "email", "phone").is_not_null())
        )
        .to_series()
        .to_numpy()
        .astype(np.float64),
    )


_TRANSFORM_TEXT: Final = {
    "linear": "{c} · x",
    "log1p": "{c} · ln(1 + x)",
    "log1p_hundreds": "{c} · ln(1 + x / 100)",
    "log": "{c} · ln(x)",
}


def oracle_markdown() -> str:
    """The documented oracle tables, generated from the constants so docs cannot drift."""
    lines = [
        "| source (written as) | key | mix logit at start | drift to end | readiness shift "
        "| conversion offset |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {s.label} | `{s.key}` | {s.mix_base:+.2f} | {s.mix_drift:+.2f} "
        f"| {s.readiness_shift:+.2f} | {s.conversion_offset:+.2f} |"
        for s in SOURCES
    ]
    lines.append(f"| (null) | | | | 0 | {MISSING_SOURCE_OFFSET:+.2f} |")
    lines += [
        "",
        "| source | site web activity tracked | interaction detail kept | why |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {o.label} | {o.web_tracked:.0%} | {o.detail_tracked:.0%} | {o.why} |"
        for o in OBSERVABILITY
    ]
    for title, intercept, terms in (
        ("conversion (plus the source offset)", CONVERSION_INTERCEPT, CONVERSION_TERMS),
        ("closing given conversion", CLOSING_INTERCEPT, CLOSING_TERMS),
        ("closing within the timeline given closing", TIMELINE_INTERCEPT, TIMELINE_TERMS),
    ):
        lines += [
            "",
            f"Logit of {title}: intercept {intercept:+.2f}, plus",
            "",
            "| quantity x | effect | effect when x is missing |",
            "|---|---|---|",
        ]
        lines += [
            f"| `{t.quantity}` | {_TRANSFORM_TEXT[t.transform].format(c=f'{t.coef:+.2f}')} "
            f"| {t.missing:+.2f} |"
            for t in terms
        ]
    return "\n".join(lines) + "\n"


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

    source = _categorical(rng, [s.mix_base + s.mix_drift * t_frac for s in SOURCES])
    source_missing = rng.random(n) < MISSING["source"]
    shift = np.array([s.readiness_shift for s in SOURCES])[source]
    source_offset = np.where(
        source_missing,
        MISSING_SOURCE_OFFSET,
        np.array([s.conversion_offset for s in SOURCES])[source],
    )
    readiness = rng.standard_normal(n) + np.where(source_missing, 0.0, shift)
    weights = np.array([m.weight for m in MARKETS])
    market = rng.choice(len(MARKETS), size=n, p=weights / weights.sum()).astype(np.int64)

    observed = _observability(rng, np.where(source_missing, -1, source))
    bare = rng.random(n) < BARE_CONTACTS
    contact = _contact(rng, readiness, market)
    web = _web_activity(rng, readiness, observed.web)
    prefs = _preferences(rng, readiness, bare)
    location, loc_score = _location(rng, readiness, market, bare)
    budget = _budget(rng, readiness, market, bare)

    engagement = readiness * 0.55 + 0.35 * rng.standard_normal(n)
    speed = 0.5 * rng.standard_normal(n)
    pre = _pre_interactions(rng, engagement, as_of_off)
    pre_attrs = _interaction_attributes(rng, readiness, speed, pre.lead, observed.detail)
    stats = _as_of_stats(pre, pre_attrs, as_of_off, n)

    inputs = OracleInputs(
        source_offset=source_offset,
        median_response_hours=stats["median_response_hours"],
        fast_response_share=stats["fast_response_share"],
        interactions=pre.counts.astype(np.float64),
        interactions_7d=stats["interactions_7d"],
        lead_age_days=as_of_off / DAY_US,
        days_since_last=stats["days_since_last"],
        properties_viewed=web["properties_viewed"],
        repeat_listing_views=web["repeat_listing_views"],
        saves=_nan_sum(web["saved_searches"], web["favorites"]),
        budget_clarity=np.where(budget.asked, budget.clarity, np.nan),
        timeline_months=prefs.values["timeline_months"],
        location_specificity=loc_score,
        pre_approved=prefs.values["pre_approved"],
        financing_readiness=prefs.values["financing_readiness"],
        previous_transactions=prefs.values["previous_transactions"],
        first_time_buyer=prefs.values["first_time_buyer"],
        mean_message_length=stats["mean_message_length"],
        questions_per_interaction=stats["questions_per_interaction"],
        contact_completeness=contact.completeness,
    )
    oracle = oracle_probabilities(inputs)
    converted = rng.random(n) < oracle.conversion
    closed = converted & (rng.random(n) < oracle.closing_given_conversion)
    within = closed & ~np.isnan(oracle.timeline) & (rng.random(n) < oracle.timeline)
    within_missing = ~closed | np.isnan(oracle.timeline)
    days_to_close = _days_to_close(rng, prefs.values["timeline_months"], within, closed)
    sale_price = _sale_price(rng, budget, market, loc_score, closed)

    post = _post_interactions(rng, engagement, as_of_off, converted)
    post_attrs = _interaction_attributes(rng, readiness, speed, post.lead, observed.detail)
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
            "source": pl.Series([s.label for s in SOURCES])
            .gather(source)
            .scatter(np.flatnonzero(source_missing), None),
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
    exprs: dict[str, pl.Expr],
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
                parts.append(exprs[name].cast(pl.String))
        text = values[rows].select(pl.concat_str(parts).alias("text")).to_series()
        out = out.scatter(rows, text)
    return out


def _created_offsets(rng: np.random.Generator, n: int, start: datetime, days: int) -> Ints:
    """Sorted creation offsets (µs) with a spring peak, a daily rhythm and a slight trend."""
    hours = np.arange(days * 24, dtype=np.float64) + 0.5
    start_utc = start.astimezone(UTC)
    start_day = start_utc.timetuple().tm_yday - 1 + start_utc.hour / 24 + start_utc.minute / 1440
    day = hours / 24.0
    season = 1.0 + 0.35 * np.cos(2 * np.pi * (start_day + day - SPRING_PEAK_DAY) / 365.25)
    trend = 1.0 + 0.2 * day / days
    hour_of_day = (start_utc.hour + start_utc.minute / 60 + hours) % 24
    rhythm = 1.0 + 0.5 * np.cos(2 * np.pi * (hour_of_day - 19.0) / 24)
    cdf = np.cumsum(season * trend * rhythm)
    cdf /= cdf[-1]
    bins = np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), len(cdf) - 1)
    offsets = ((bins + rng.random(n)) * HOUR_US).astype(np.int64)
    return np.sort(np.minimum(offsets, days * DAY_US - 1))


@dataclass(frozen=True)
class _Contact:
    """Contact columns and how many of them are present."""

    name: pl.Series
    email: pl.Series
    phone: pl.Series
    completeness: Floats


def _contact(rng: np.random.Generator, readiness: Floats, market: Ints) -> _Contact:
    """Fake but plausible names, e-mails and 555-01xx phone numbers, each sometimes missing."""
    n = len(readiness)
    values = pl.DataFrame(
        {
            "first": pl.Series(FIRST_NAMES).gather(rng.integers(0, len(FIRST_NAMES), n)),
            "last": pl.Series(LAST_NAMES).gather(rng.integers(0, len(LAST_NAMES), n)),
            "domain": pl.Series(EMAIL_DOMAINS).gather(rng.integers(0, len(EMAIL_DOMAINS), n)),
            "number": rng.integers(1, 100, n),
            "area": pl.Series([m.area_code for m in MARKETS]).gather(market),
            "line": pl.Series(rng.integers(0, 100, n)).cast(pl.String).str.zfill(2),
            "name_style": rng.choice(3, n, p=[0.85, 0.05, 0.10]),
            "email_style": rng.integers(0, 4, n),
            "phone_style": rng.choice(4, n, p=[0.5, 0.25, 0.15, 0.1]),
        }
    )
    first, last, style = pl.col("first"), pl.col("last"), pl.col("name_style")
    full = pl.concat_str([first, pl.lit(" "), last])
    local = (
        pl.when(pl.col("email_style") == 0)
        .then(pl.concat_str([first, pl.lit("."), last]))
        .when(pl.col("email_style") == 1)
        .then(pl.concat_str([first.str.slice(0, 1), last]))
        .when(pl.col("email_style") == 2)
        .then(pl.concat_str([first, last, pl.col("number").cast(pl.String)]))
        .otherwise(pl.concat_str([first, pl.col("number").cast(pl.String)]))
    )
    phone_formats = ("({}) 555-01{}", "{}-555-01{}", "{}.555.01{}", "+1 {} 555 01{}")
    phone = pl.coalesce(
        pl.when(pl.col("phone_style") == i).then(pl.format(fmt, pl.col("area"), pl.col("line")))
        for i, fmt in enumerate(phone_formats)
    )
    rendered = values.select(
        pl.when(style == 0)
        .then(full)
        .when(style == 1)
        .then(full.str.to_lowercase())
        .otherwise(first)
        .alias("name"),
        pl.concat_str([local, pl.lit("@"), pl.col("domain")]).str.to_lowercase().alias("email"),
        phone.alias("phone"),
    )
    gone = [
        _missing_logit(rng, 0.10, readiness, 0.2),
        _missing_logit(rng, 0.15, readiness, 0.25),
        _missing_logit(rng, 0.22, readiness, 0.3),
    ]
    name, email, phone_s = (
        rendered[column].scatter(np.flatnonzero(mask), None)
        for column, mask in zip(("name", "email", "phone"), gone, strict=True)
    )
    completeness = 3.0 - np.sum(gone, axis=0)
    return _Contact(name, email, phone_s, completeness.astype(np.float64))


@dataclass(frozen=True)
class _Observed:
    """Per lead: whether its web activity and its interaction detail are recorded at all."""

    web: Bools
    detail: Bools


def _observability(rng: np.random.Generator, source: Ints) -> _Observed:
    """Draw what each lead's source records (source -1: null), never looking at readiness."""
    n = len(source)
    keys = [s.key for s in SOURCES]
    rows = [next(o for o in OBSERVABILITY if o.key == key) for key in keys]
    rows.append(next(o for o in OBSERVABILITY if o.key is None))
    web = np.array([o.web_tracked for o in rows])[source]
    detail = np.array([o.detail_tracked for o in rows])[source]
    return _Observed(rng.random(n) < web, rng.random(n) < detail)


def _web_activity(rng: np.random.Generator, readiness: Floats, tracked: Bools) -> dict[str, Floats]:
    """Web counters (snapshot at as_of) driven by readiness; untracked leads have none (NaN)."""
    n = len(readiness)
    noise = rng.standard_normal((5, n))
    r = readiness
    viewed = rng.poisson(np.exp(np.clip(1.5 + 0.55 * r + 0.5 * noise[0], -5, 7)))
    sessions = np.maximum(
        rng.poisson(np.exp(np.clip(0.9 + 0.45 * r + 0.5 * noise[1], -5, 6))), viewed > 0
    )
    page_views = viewed + sessions + rng.poisson(2.0 * sessions)
    repeat = np.where(
        viewed > 0, 1 + rng.poisson(np.exp(np.clip(-0.6 + 0.7 * r + 0.4 * noise[2], -5, 5))), 0
    )
    saved = rng.poisson(np.exp(np.clip(-0.8 + 0.5 * r + 0.4 * noise[3], -5, 4)))
    favorites = np.minimum(
        rng.poisson(np.exp(np.clip(-0.2 + 0.6 * r + 0.4 * noise[3], -5, 5))), viewed
    )
    minutes = np.round(sessions * np.exp(np.log(5.0) + 0.2 * r + 0.6 * noise[4]), 1)
    counters = {
        "sessions": sessions,
        "page_views": page_views,
        "properties_viewed": viewed,
        "repeat_listing_views": repeat,
        "saved_searches": saved,
        "favorites": favorites,
        "time_on_site_minutes": minutes,
    }
    # Where the site tracks the lead every counter is recorded, so a zero is a real zero.
    return {key: np.where(tracked, value, np.nan) for key, value in counters.items()}


@dataclass(frozen=True)
class _Preferences:
    """Preference columns as written, and the conventions' values the oracle reads."""

    columns: dict[str, pl.Series]
    values: dict[str, Floats]


def _phrases(
    rng: np.random.Generator,
    bucket: Ints,
    missing: Bools,
    table: Sequence[tuple[int, str, float | None]],
) -> tuple[pl.Series, Floats]:
    """Pick a phrase per lead from its bucket; return the text and its conventional value."""
    index = _pick(rng, bucket, [row[0] for row in table])
    text = pl.Series([row[1] for row in table]).gather(index).scatter(np.flatnonzero(missing), None)
    meaning = np.array([np.nan if row[2] is None else row[2] for row in table])[index]
    return text, np.where(missing, np.nan, meaning)


def _with_nulls(values: NDArray[Any], missing: Bools, dtype: pl.DataType) -> pl.Series:
    """A typed column with nulls where the field is missing, as the frame marks gaps."""
    return pl.Series(values).cast(dtype).scatter(np.flatnonzero(missing), None)


def _preferences(rng: np.random.Generator, readiness: Floats, bare: Bools) -> _Preferences:
    """Financing, timeline, history and household fields; family fields ignore readiness."""
    n = len(readiness)
    r = readiness

    def gone(field: str) -> Bools:
        """Independent missingness at the field's documented rate; a bare contact has none."""
        missing: Bools = (rng.random(n) < MISSING[field]) | bare
        return missing

    pre_approved = rng.random(n) < _sigmoid(-1.0 + 0.9 * r)
    pre_missing = gone("pre_approved")
    latent = 0.8 * r + 1.3 * pre_approved + 0.8 * rng.logistic(size=n)
    fin_bucket = np.searchsorted(np.array([-0.3, 1.3, 2.6]), latent).astype(np.int64)
    fin_bucket = np.where(rng.random(n) < 0.08, 4, fin_bucket)
    financing, readiness_value = _phrases(rng, fin_bucket, gone("financing"), FINANCING_PHRASES)

    latent = -0.9 * r + 0.9 * rng.logistic(size=n)
    cuts = np.array([-2.2, -1.4, -0.7, 0.2, 1.0, 1.8])
    time_bucket = np.searchsorted(cuts, latent).astype(np.int64)
    time_bucket = np.where(_missing_logit(rng, 0.10, r, 0.4), 7, time_bucket)
    timeline, months = _phrases(rng, time_bucket, gone("timeline"), TIMELINE_PHRASES)

    previous = np.minimum(rng.poisson(np.exp(-0.45 + 0.3 * rng.standard_normal(n))), 20)
    prev_missing = gone("previous_transactions")
    first_time = (previous == 0) ^ (rng.random(n) < 0.07)
    ftb_missing = gone("first_time_buyer")
    household = np.minimum(1 + rng.poisson(1.4, n), 8)
    school = rng.random(n) < np.minimum(0.1 + 0.15 * (household - 1), 0.85)
    bedrooms = np.clip(np.round(1 + 0.6 * household + 0.8 * rng.standard_normal(n)), 0, 7)
    property_type = rng.choice(len(PROPERTY_TYPES), n, p=PROPERTY_TYPE_WEIGHTS)

    columns = {
        "timeline": timeline,
        "pre_approved": _with_nulls(pre_approved, pre_missing, pl.Boolean()),
        "financing": financing,
        "household_size": _with_nulls(household, gone("household_size"), pl.Int64()),
        "school_district_interest": _with_nulls(
            school, gone("school_district_interest"), pl.Boolean()
        ),
        "previous_transactions": _with_nulls(previous, prev_missing, pl.Int64()),
        "first_time_buyer": _with_nulls(first_time, ftb_missing, pl.Boolean()),
        "property_type": pl.Series(PROPERTY_TYPES)
        .gather(property_type)
        .scatter(np.flatnonzero(gone("property_type")), None),
        "bedrooms": _with_nulls(bedrooms, gone("bedrooms"), pl.Int64()),
    }
    values = {
        "pre_approved": np.where(pre_missing, np.nan, pre_approved.astype(np.float64)),
        "financing_readiness": readiness_value,
        "timeline_months": months,
        "previous_transactions": np.where(prev_missing, np.nan, previous.astype(np.float64)),
        "first_time_buyer": np.where(ftb_missing, np.nan, first_time.astype(np.float64)),
    }
    return _Preferences(columns, values)


def _location(
    rng: np.random.Generator, readiness: Floats, market: Ints, bare: Bools
) -> tuple[pl.Series, Floats]:
    """Location text at a readiness-driven specificity level, and that level (NaN if null)."""
    n = len(readiness)
    latent = 0.7 * readiness + 0.8 * rng.logistic(size=n)
    level = np.searchsorted(np.array([-1.8, 0.0, 1.4]), latent).astype(np.int64)
    choice = _pick(rng, level, [row[0] for row in LOCATION_TEMPLATES])
    missing = (rng.random(n) < MISSING["location_preference"]) | bare
    hoods = pl.Series([h for m in MARKETS for h in m.hoods])
    values = pl.DataFrame(
        {
            "city": pl.Series([m.city for m in MARKETS]).gather(market),
            "county": pl.Series([m.county for m in MARKETS]).gather(market),
            "hood": hoods.gather(2 * market + rng.integers(0, 2, n)),
            "zip3": pl.Series([m.zip3 for m in MARKETS]).gather(market),
            "zip2": pl.Series(rng.integers(1, 100, n)).cast(pl.String).str.zfill(2),
            "number": rng.integers(100, 9900, n),
            "street": pl.Series(STREET_NAMES).gather(rng.integers(0, len(STREET_NAMES), n)),
            "suffix": pl.Series(STREET_SUFFIXES).gather(rng.integers(0, len(STREET_SUFFIXES), n)),
        }
    )
    exprs = {
        "city": pl.col("city"),
        "county": pl.col("county"),
        "hood": pl.col("hood"),
        "zip": pl.concat_str([pl.col("zip3"), pl.col("zip2")]),
        "street": pl.format("{} {} {}", pl.col("number"), pl.col("street"), pl.col("suffix")),
    }
    text = _render([row[1] for row in LOCATION_TEMPLATES], choice, missing, values, exprs)
    return text, np.where(missing, np.nan, level.astype(np.float64))


@dataclass(frozen=True)
class _Budget:
    """Budget columns, their clarity and the (low, high) dollars a parser should recover."""

    asked: Bools
    text: pl.Series
    minimum: Floats
    maximum: Floats
    clarity: Floats
    low: Floats
    high: Floats


def _round_to(values: Floats, step: Floats) -> Floats:
    """Round amounts to a multiple of a per-row step, as people state budgets."""
    return np.round(values / step) * step


def _budget(rng: np.random.Generator, readiness: Floats, market: Ints, bare: Bools) -> _Budget:
    """A budget as a range, point, bound, unreadable text, numbers, or nothing."""
    n = len(readiness)
    mode_names = [row[0] for row in BUDGET_MODES]
    asked = (rng.random(n) >= BUDGET_NOT_ASKED) & ~bare
    said = 1 + _categorical(
        rng, [base + slope * readiness for _, _, base, slope in BUDGET_MODES[1:]]
    )
    mode = np.where(asked, said, 0)
    price = np.array([m.price_k for m in MARKETS])[market] * np.exp(0.35 * rng.standard_normal(n))
    price = np.clip(price, 80.0, 5000.0)
    step = np.where(price >= 1000.0, 25.0, 5.0)
    lo = _round_to(price * rng.uniform(0.8, 0.95, n), step)
    hi = np.maximum(_round_to(price * rng.uniform(1.05, 1.25, n), step), lo + step)
    x = _round_to(price * rng.uniform(0.9, 1.1, n), step)

    is_mode = {name: mode == i for i, name in enumerate(mode_names)}
    text_range, text_point, text_upper, text_lower, unreadable_mode = (
        mode_names.index(name)
        for name in ("text_range", "text_point", "text_upper", "text_lower", "text_unreadable")
    )
    numbers = is_mode["numbers_both"] | is_mode["numbers_min"] | is_mode["numbers_max"]
    echo = numbers & (rng.random(n) < NUMBERS_WITH_TEXT)
    # Leads with numbers that also write text write the same budget as a range or a bound.
    echoed = np.where(
        is_mode["numbers_both"],
        text_range,
        np.where(is_mode["numbers_min"], text_lower, text_upper),
    )
    text_mode = np.where(numbers, np.where(echo, echoed, -1), mode)
    x = np.where(is_mode["numbers_min"], lo, np.where(is_mode["numbers_max"], hi, x))

    # Formats are grouped by mode and the four formatted modes are consecutive.
    format_modes = np.array([mode_names.index(row[0]) for row in BUDGET_FORMATS])
    formatted = (text_mode >= text_range) & (text_mode <= text_lower)
    bucket = np.clip(text_mode, text_range, text_lower) - text_range
    fmt = np.where(formatted, _pick(rng, bucket, list(format_modes - text_range)), -1)
    # "1.2M" formats only for amounts of a million or more; others use the mode's first format.
    millions = np.array(["_m}" in row[1] for row in BUDGET_FORMATS])
    first_of_mode = np.searchsorted(format_modes, format_modes)
    safe_fmt = np.maximum(fmt, 0)
    amount = np.where(text_mode == text_range, lo, x)
    small = (fmt >= 0) & millions[safe_fmt] & (amount < 1000.0)
    fmt = np.where(small, first_of_mode[safe_fmt], fmt)
    in_millions = (fmt >= 0) & millions[np.maximum(fmt, 0)]
    hundred = np.full(n, 100.0)
    lo = np.where(in_millions, _round_to(lo, hundred), lo)
    hi = np.where(in_millions, np.maximum(_round_to(hi, hundred), lo + 100.0), hi)
    x = np.where(in_millions, _round_to(x, hundred), x)
    x = np.where(is_mode["numbers_min"], lo, np.where(is_mode["numbers_max"], hi, x))  # re-sync

    values = pl.DataFrame(
        {"lo": lo.astype(np.int64), "hi": hi.astype(np.int64), "x": x.astype(np.int64)}
    )
    exprs = {
        "lo": pl.col("lo"),
        "hi": pl.col("hi"),
        "x": pl.col("x"),
        "lo_usd": _usd(pl.col("lo")),
        "hi_usd": _usd(pl.col("hi")),
        "x_usd": _usd(pl.col("x")),
        "lo_m": _millions(pl.col("lo")),
        "hi_m": _millions(pl.col("hi")),
        "x_m": _millions(pl.col("x")),
    }
    templates = [row[1] for row in BUDGET_FORMATS] + list(UNREADABLE_BUDGETS)
    unreadable = len(BUDGET_FORMATS) + rng.integers(0, len(UNREADABLE_BUDGETS), n)
    choice = np.where(text_mode == unreadable_mode, unreadable, fmt)
    text = _render(templates, np.maximum(choice, 0), choice < 0, values, exprs)

    has_min = is_mode["numbers_both"] | is_mode["numbers_min"]
    has_max = is_mode["numbers_both"] | is_mode["numbers_max"]
    text_low = np.isin(text_mode, [text_range, text_point, text_lower])
    text_high = np.isin(text_mode, [text_range, text_point, text_upper])
    text_lo_value = np.where(text_mode == text_range, lo, x)
    text_hi_value = np.where(text_mode == text_range, hi, x)
    low = np.where(
        numbers, np.where(has_min, lo, np.nan), np.where(text_low, text_lo_value, np.nan)
    )
    high = np.where(
        numbers, np.where(has_max, hi, np.nan), np.where(text_high, text_hi_value, np.nan)
    )
    clarity = np.array([row[1] for row in BUDGET_MODES], dtype=np.float64)[mode]
    return _Budget(
        asked=asked,
        text=text,
        minimum=np.where(has_min, lo * 1000.0, np.nan),
        maximum=np.where(has_max, hi * 1000.0, np.nan),
        clarity=clarity,
        low=low * 1000.0,
        high=high * 1000.0,
    )


def _usd(thousands: pl.Expr) -> pl.Expr:
    """Whole dollars with thousands separators ("$1,250,000") from an amount in thousands."""
    return (
        pl.when(thousands >= 1000)
        .then(
            pl.format(
                "${},{},000",
                thousands // 1000,
                (thousands % 1000).cast(pl.String).str.zfill(3),
            )
        )
        .otherwise(pl.format("${},000", thousands))
    )


def _millions(thousands: pl.Expr) -> pl.Expr:
    """Millions with one decimal ("1.2") from an amount in thousands (a multiple of 100)."""
    return pl.format("{}.{}", thousands // 1000, (thousands % 1000) // 100)


@dataclass(frozen=True)
class _Interactions:
    """Flat interactions sorted by lead then time: lead index and offset from created_at."""

    lead: Ints
    offset_us: Ints
    counts: Ints


#: Interaction intensity at creation (per day, at engagement 0) and its decay time (days).
BASE_RATE: Final = 0.55
DECAY_DAYS: Final = 8.0
#: After as_of, converted leads decay this slowly, and start this much more active.
CONVERTED_DECAY_DAYS: Final = 15.0
CONVERTED_RATE_FACTOR: Final = 1.2


def _decaying_events(
    rng: np.random.Generator,
    rate: Floats,
    tau: Floats,
    begin_days: Floats,
    end_days: Floats,
) -> tuple[Ints, Floats]:
    """Poisson events of intensity rate·exp(-t/tau) on [begin, end]: per-lead counts and times."""
    head = np.exp(-begin_days / tau)
    tail = np.exp(-end_days / tau)
    counts = rng.poisson(rate * tau * (head - tail)).astype(np.int64)
    lead = np.repeat(np.arange(len(rate)), counts)
    u = rng.random(len(lead))
    times = -tau[lead] * np.log(head[lead] - u * (head[lead] - tail[lead]))
    return counts, times


def _sorted(lead: Ints, offset: Ints, counts: Ints) -> _Interactions:
    """Sort flat events by lead then time, the order the history column is written in."""
    order = np.lexsort((offset, lead))
    return _Interactions(lead[order], offset[order], counts)


def _pre_interactions(
    rng: np.random.Generator, engagement: Floats, as_of_off: Ints
) -> _Interactions:
    """Interactions in [created_at, as_of], the only ones the oracle may look at."""
    n = len(engagement)
    as_of_days = as_of_off / DAY_US
    tau = np.full(n, DECAY_DAYS)
    counts, times = _decaying_events(
        rng, BASE_RATE * np.exp(engagement), tau, np.zeros(n), as_of_days
    )
    lead = np.repeat(np.arange(n), counts)
    offset = np.minimum(np.floor(times * DAY_US).astype(np.int64), as_of_off[lead])
    return _sorted(lead, offset, counts)


def _post_interactions(
    rng: np.random.Generator, engagement: Floats, as_of_off: Ints, converted: Bools
) -> _Interactions:
    """Interactions in (as_of, created_at + 45 d]; converted leads keep engaging (leakage trap)."""
    n = len(engagement)
    tau = np.where(converted, CONVERTED_DECAY_DAYS, DECAY_DAYS)
    rate = BASE_RATE * np.exp(engagement) * np.where(converted, CONVERTED_RATE_FACTOR, 1.0)
    counts, times = _decaying_events(
        rng, rate, tau, as_of_off / DAY_US, np.full(n, float(WINDOW_DAYS))
    )
    lead = np.repeat(np.arange(n), counts)
    offset = np.clip(
        np.ceil(times * DAY_US).astype(np.int64), as_of_off[lead] + 1, WINDOW_DAYS * DAY_US
    )
    return _sorted(lead, offset, counts)


@dataclass(frozen=True)
class _Attributes:
    """Per-interaction type code and measurements; NaN marks a missing measurement."""

    kind: Ints
    response_time_hours: Floats
    message_length: Floats
    questions_asked: Floats


def _interaction_attributes(
    rng: np.random.Generator, readiness: Floats, speed: Floats, lead: Ints, detail: Bools
) -> _Attributes:
    """Type, response time, message length and questions of each interaction, from readiness;
    a lead whose CRM keeps no detail has only the type and time of each."""
    m = len(lead)
    r = readiness[lead]
    untracked = ~detail[lead]
    kind = _categorical(rng, [base + slope * r for base, slope in INTERACTION_TYPE_LOGITS])
    visit = kind == INTERACTION_TYPES.index("open_house_visit")
    call = kind == INTERACTION_TYPES.index("call")
    hours = np.exp(np.log(3.0) - 0.7 * r - speed[lead] + rng.standard_normal(m))
    hours = np.minimum(np.round(hours, 2), 720.0)
    hours = np.where(
        untracked | visit | (rng.random(m) < MISSING["response_time_hours"]), np.nan, hours
    )
    length = np.round(np.exp(np.log(140.0) + 0.3 * r + 0.7 * rng.standard_normal(m)))
    length = np.minimum(length, 100_000.0)
    length = np.where(
        untracked | visit | call | (rng.random(m) < MISSING["message_length"]), np.nan, length
    )
    questions = rng.poisson(np.exp(np.clip(-0.2 + 0.35 * r, -5, 4))).astype(np.float64)
    questions = np.where(
        untracked | visit | (rng.random(m) < MISSING["questions_asked"]), np.nan, questions
    )
    return _Attributes(kind, hours, length, questions)


def _group_mean(lead: Ints, values: Floats, n: int) -> Floats:
    """Per-lead mean of the non-missing values (NaN for a lead with none)."""
    valid = ~np.isnan(values)
    count = np.bincount(lead[valid], minlength=n)
    total = np.bincount(lead[valid], weights=values[valid], minlength=n)
    mean: Floats = np.divide(total, count, out=np.full(n, np.nan), where=count > 0)
    return mean


def _as_of_stats(
    pre: _Interactions, attrs: _Attributes, as_of_off: Ints, n: int
) -> dict[str, Floats]:
    """The oracle's interaction quantities, computed from interactions at or before as_of."""
    recent = pre.offset_us > as_of_off[pre.lead] - 7 * DAY_US
    last = np.cumsum(pre.counts) - 1
    has_any = pre.counts > 0
    last_offset = pre.offset_us[np.where(has_any, last, 0)] if len(pre.lead) else np.zeros(n)
    since = np.where(has_any, (as_of_off - last_offset) / DAY_US, np.nan)

    hours = attrs.response_time_hours
    valid = ~np.isnan(hours)
    lead_v, hours_v = pre.lead[valid], hours[valid]
    order = np.lexsort((hours_v, lead_v))
    sorted_hours = hours_v[order]
    k = np.bincount(lead_v, minlength=n)
    first = np.cumsum(k) - k
    middle = np.where(k > 0, first + (k - 1) // 2, 0)
    median = np.where(k > 0, sorted_hours[middle] if len(sorted_hours) else np.nan, np.nan)
    fast = np.bincount(lead_v, weights=(hours_v <= 1.0).astype(np.float64), minlength=n)
    return {
        "interactions_7d": np.bincount(pre.lead[recent], minlength=n).astype(np.float64),
        "days_since_last": since,
        "median_response_hours": median,
        "fast_response_share": np.divide(fast, k, out=np.full(n, np.nan), where=k > 0),
        "mean_message_length": _group_mean(pre.lead, attrs.message_length, n),
        "questions_per_interaction": _group_mean(pre.lead, attrs.questions_asked, n),
    }


def _history_column(
    created_us: Ints,
    pre: _Interactions,
    pre_attrs: _Attributes,
    post: _Interactions,
    post_attrs: _Attributes,
) -> pl.Series:
    """Build the interaction list column from flat arrays via Arrow offsets, without a loop."""
    lead = np.concatenate([pre.lead, post.lead])
    order = np.argsort(lead, kind="stable")
    lead = lead[order]
    timestamp = created_us[lead] + np.concatenate([pre.offset_us, post.offset_us])[order]

    def merged(name: str) -> Floats:
        """One attribute of pre and post interactions, in history order."""
        values: Floats = np.concatenate([getattr(pre_attrs, name), getattr(post_attrs, name)])
        return values[order]

    kind = np.concatenate([pre_attrs.kind, post_attrs.kind])[order]
    hours, length, questions = (
        merged(name) for name in ("response_time_hours", "message_length", "questions_asked")
    )
    struct = pa.StructArray.from_arrays(
        [
            pa.array(timestamp, type=pa.timestamp("us", tz="UTC")),
            pa.DictionaryArray.from_arrays(
                pa.array(kind.astype(np.int32)), pa.array(INTERACTION_TYPES)
            ).cast(pa.large_string()),
            pa.array(hours, mask=np.isnan(hours)),
            pa.array(np.nan_to_num(length).astype(np.int64), mask=np.isnan(length)),
            pa.array(np.nan_to_num(questions).astype(np.int64), mask=np.isnan(questions)),
        ],
        names=list(INTERACTION_DTYPE.to_schema()),
    )
    counts = pre.counts + post.counts
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    lists = pa.LargeListArray.from_arrays(pa.array(offsets), struct)
    return pl.Series("interaction_history", lists).cast(pl.List(INTERACTION_DTYPE))


def _days_to_close(
    rng: np.random.Generator, months: Floats, within: Bools, closed: Bools
) -> Floats:
    """Whole days from created_at to closing, on the side of the timeline the outcome says."""
    n = len(months)
    has_timeline = ~np.isnan(months)
    limit = np.where(has_timeline, months, 1.0) * DAYS_PER_MONTH
    inside = np.floor(7.0 + (limit - 7.0) * rng.beta(2.0, 1.3, n))
    late = np.ceil(limit + 1.0 + rng.exponential(15.0 + 0.4 * limit))
    unstated = np.round(20.0 + rng.gamma(2.0, 30.0, n))
    days = np.where(has_timeline, np.where(within, inside, late), unstated)
    return np.where(closed, days, np.nan)


def _sale_price(
    rng: np.random.Generator, budget: _Budget, market: Ints, location: Floats, closed: Bools
) -> Floats:
    """Closing price: the budget's estimate, else the market's (or national) price, with noise."""
    n = len(market)
    low, high = budget.low, budget.high
    estimate = np.where(
        ~np.isnan(low) & ~np.isnan(high),
        (low + high) / 2,
        np.where(~np.isnan(high), 0.9 * high, 1.1 * low),
    )
    known = ~np.isnan(estimate)
    market_price = np.array([m.price_k for m in MARKETS])[market] * 1000.0
    fallback = np.where(np.nan_to_num(location) >= 1.0, market_price, NATIONAL_PRICE_K * 1000.0)
    base = np.where(known, estimate, fallback)
    sigma = np.where(known, 0.08, 0.30)
    price = np.round(base * np.exp(sigma * rng.standard_normal(n)) / 500.0) * 500.0
    return np.where(closed, price, np.nan)
