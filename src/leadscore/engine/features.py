"""The 28-feature specification: one list that drives training, serving, reasons and the docs."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np

from leadscore.engine.budget import estimate_prices
from leadscore.engine.raw import FloatArray, RawBatch

US_PER_DAY: Final = 86_400.0 * 1_000_000.0
SOURCE_SMOOTHING: Final = 50.0
#: Bump when a feature's computation changes without its description changing.
FEATURE_SPEC_VERSION: Final = 1

GROUPS: Final[dict[str, str]] = {
    "response_patterns": "Response patterns",
    "budget_signals": "Budget signals",
    "timeline_urgency": "Timeline urgency",
    "location_specificity": "Location specificity",
    "family_demographics": "Family demographics",
    "financial_readiness": "Financial readiness",
    "real_estate_experience": "Real-estate experience",
    "communication_quality": "Communication quality",
}


@dataclass(frozen=True)
class SourceEncoding:
    """Smoothed conversion rate per normalised lead source, learned when the model is trained."""

    rates: Mapping[str, float]
    prior: float

    @classmethod
    def fit(cls, sources: list[str | None], converted: FloatArray) -> SourceEncoding:
        """Shrink each source's rate toward the overall rate so rare sources are not trusted."""
        prior = float(np.mean(converted))
        totals: dict[str, list[float]] = {}
        for source, label in zip(sources, converted.tolist(), strict=True):
            if source is not None:
                totals.setdefault(source, [0.0, 0.0])
                totals[source][0] += label
                totals[source][1] += 1.0
        rates = {
            source: (hits + SOURCE_SMOOTHING * prior) / (count + SOURCE_SMOOTHING)
            for source, (hits, count) in sorted(totals.items())
        }
        return cls(rates, prior)

    def encode(self, sources: list[str | None]) -> FloatArray:
        """Known source → its rate; unseen source → the overall rate; no source → missing."""
        return np.array(
            [np.nan if s is None else self.rates.get(s, self.prior) for s in sources],
            dtype=np.float64,
        )

    def to_dict(self) -> dict[str, object]:
        """Plain JSON form stored in the model artifact."""
        return {"rates": dict(self.rates), "prior": self.prior}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> SourceEncoding:
        """Rebuild from the artifact's JSON."""
        rates = data["rates"]
        prior = data["prior"]
        assert isinstance(rates, dict)
        assert isinstance(prior, float | int)
        return cls({str(k): float(v) for k, v in rates.items()}, float(prior))


Compute = Callable[[RawBatch, SourceEncoding], FloatArray]
Describe = Callable[[float], str]


@dataclass(frozen=True)
class FeatureSpec:
    """One feature: its name, group, meaning, range, missing rule, how to compute and explain it."""

    name: str
    group: str
    meaning: str
    value_range: str
    missing: str
    compute: Compute
    describe: Describe
    protected: bool = False
    #: +1 when more of it can only raise the conversion score, -1 only lower it (a training
    #: constraint, so no team's history can make a pre-approval count against a lead); 0 free.
    direction: int = 0


def _ratio(num: FloatArray, den: FloatArray) -> FloatArray:
    """num / den where den > 0, missing elsewhere."""
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _col(name: str) -> Compute:
    return lambda raw, _enc: raw.col(name)  # a view: transform copies it into its output


def _log1p(name: str) -> Compute:
    return lambda raw, _enc: np.log1p(raw.col(name))


def _days(name: str) -> Compute:
    return lambda raw, _enc: raw.col(name) / US_PER_DAY


def estimated_price(raw: RawBatch) -> FloatArray:
    """Sale price implied by the lead's budget, NaN when it gives none."""
    return estimate_prices(raw.col("budget_low"), raw.col("budget_high"))


def _budget_width(raw: RawBatch, _enc: SourceEncoding) -> FloatArray:
    low, high = raw.col("budget_low"), raw.col("budget_high")
    return _ratio(high - low, (high + low) / 2.0)


def _saved(raw: RawBatch, _enc: SourceEncoding) -> FloatArray:
    saved, favorites = raw.col("saved_searches"), raw.col("favorites")
    total = np.where(np.isnan(saved), 0.0, saved) + np.where(np.isnan(favorites), 0.0, favorites)
    return np.where(np.isnan(saved) & np.isnan(favorites), np.nan, total)


def _urgent(raw: RawBatch, _enc: SourceEncoding) -> FloatArray:
    months = raw.col("timeline_months")
    return np.where(np.isnan(months), np.nan, (months <= 3.0).astype(np.float64))


def _per_person(raw: RawBatch, _enc: SourceEncoding) -> FloatArray:
    return _ratio(raw.col("bedrooms"), raw.col("household_size"))


def _message_mean(raw: RawBatch, _enc: SourceEncoding) -> FloatArray:
    return np.log1p(_ratio(raw.col("msg_sum"), raw.col("n_msg")))


def _questions(raw: RawBatch, _enc: SourceEncoding) -> FloatArray:
    return _ratio(raw.col("q_sum"), raw.col("n_q"))


def _fast_share(raw: RawBatch, _enc: SourceEncoding) -> FloatArray:
    return _ratio(raw.col("n_fast"), raw.col("n_resp"))


def _source(raw: RawBatch, enc: SourceEncoding) -> FloatArray:
    return enc.encode(raw.sources)


def _budget_log_price(raw: RawBatch, _enc: SourceEncoding) -> FloatArray:
    price = estimated_price(raw)
    out = np.full(price.shape, np.nan)
    np.log(price, out=out, where=price > 0)
    return out


def _fmt(
    template: str,
    transform: Callable[[float], float] = lambda v: v,
    unknown: str | None = None,
) -> Describe:
    """A reason text from a template; missing values say so instead of printing nan."""
    missing = unknown or template.split("{")[0].rstrip(": ") + ": unknown"

    def describe(value: float) -> str:
        if math.isnan(value):
            return missing
        return template.format(transform(value))

    return describe


def _counted(
    template: str,
    nouns: tuple[str, str],
    unknown: str,
    transform: Callable[[float], float] = lambda v: v,
) -> Describe:
    """A reason text with a whole count and its noun, singular when the count shown is 1
    ("1 property", "3 properties"); `template` has `{n}` and `{noun}`."""

    def describe(value: float) -> str:
        if math.isnan(value):
            return unknown
        shown = f"{transform(value):.0f}"
        return template.format(n=shown, noun=nouns[0] if shown == "1" else nouns[1])

    return describe


def _yes_no(yes: str, no: str, unknown: str) -> Describe:
    return lambda v: unknown if math.isnan(v) else (yes if v >= 0.5 else no)


def _plural(n: float, one: str, many: str) -> str:
    """ "1 reply", "3 replies", "1.5 questions": the number as shown decides the noun."""
    shown = f"{n:.1f}".removesuffix(".0")
    return f"{shown} {one if shown == '1' else many}"


def _reply_time_text(log_hours: float) -> str:
    if math.isnan(log_hours):
        return "Reply time unknown"
    hours = math.expm1(log_hours)
    if hours < 1.0:
        return "Typically replies within an hour"
    return f"Typically replies in {_plural(hours, 'hour', 'hours')}"


def _fast_share_text(share: float) -> str:
    if math.isnan(share):
        return "Reply speed unknown"
    if share >= 1.0:
        return "Every reply came within an hour"
    if share <= 0.0:
        return "No reply came within an hour"
    return f"{share:.0%} of replies came within an hour"


def _recent_text(count: float) -> str:
    if math.isnan(count):
        return "Recent contact unknown"
    if count <= 0:
        return "No contact in the last 7 days"
    return f"{_plural(count, 'interaction', 'interactions')} in the last 7 days"


def _last_contact_text(days: float) -> str:
    if math.isnan(days):
        return "No interactions yet"
    if days < 1.0:
        return "Last contact today"
    return f"Last contact {_plural(math.floor(days), 'day', 'days')} ago"


def _repeat_views_text(views: float) -> str:
    if math.isnan(views):
        return "Repeat views unknown"
    if views <= 1:
        return "Viewed no listing more than once" if views < 1 else "Viewed each listing once"
    times = {2: "twice"}.get(int(views), f"{views:.0f} times")
    return f"Viewed the same listing {times}"


_LEAD_AGE: Final = _counted("Lead is {n} {noun} old", ("day", "days"), "Lead age unknown")


def _lead_age_text(days: float) -> str:
    if math.isnan(days) or days >= 1.0:
        return _LEAD_AGE(days)
    return "New lead: arrived today"


def _criteria_text(count: float) -> str:
    if math.isnan(count) or count <= 0:
        return "No property criteria given"
    if count >= 2:
        return "Said which type of home and how many bedrooms"
    return "Said which type of home or how many bedrooms"


def _questions_text(per: float) -> str:
    if math.isnan(per):
        return "Questions per message unknown"
    return f"Asks {_plural(per, 'question', 'questions')} per message"


def _timeline_text(months: float) -> str:
    if math.isnan(months):
        return "Timeline unknown"
    if months <= 0.5:
        return "Wants to buy as soon as possible"
    shown = f"{months:g}"
    return f"Wants to buy within {shown} {'month' if shown == '1' else 'months'}"


_CLARITY = ("No budget given", "Budget given but unreadable", "Budget open-ended", "Clear budget")
_FINANCING = ("Financing undecided", "Mortgage financing", "Mortgage pre-approved", "Paying cash")
_LOCATION = ("Vague location", "City-level location", "Neighbourhood chosen", "Exact address/ZIP")


def _ordinal(labels: tuple[str, ...], unknown: str) -> Describe:
    return lambda v: unknown if math.isnan(v) else labels[int(min(max(v, 0), len(labels) - 1))]


FEATURES: Final[tuple[FeatureSpec, ...]] = (
    FeatureSpec(
        "response_hours_median", "response_patterns",
        "log(1 + lower-median reply time in hours) over interactions up to the as-of time",
        "0 … 9", "no reply times", _log1p("resp_median"),
        _reply_time_text,
        direction=-1,
    ),
    FeatureSpec(
        "fast_response_share", "response_patterns",
        "share of replies that came within 1 hour", "0 … 1", "no reply times",
        _fast_share, _fast_share_text,
        direction=1,
    ),
    FeatureSpec(
        "interaction_count", "response_patterns",
        "interactions up to the as-of time", "0 … 1000", "never (0)",
        _col("n_inter"),
        _counted("{n} {noun} so far", ("interaction", "interactions"), "Interactions unknown"),
    ),
    FeatureSpec(
        "interactions_last_7d", "response_patterns",
        "interactions in the 7 days before the as-of time", "0 … 1000", "never (0)",
        _col("n_inter_7d"), _recent_text,
    ),
    FeatureSpec(
        "days_since_last_interaction", "response_patterns",
        "days from the last interaction to the as-of time", "0 … ∞", "no interactions",
        _days("last_inter_age_us"), _last_contact_text,
    ),
    FeatureSpec(
        "source_conversion_prior", "response_patterns",
        "smoothed conversion rate of the lead's source, learned at training (m = 50)",
        "0 … 1", "no source", _source,
        _fmt(
            "Lead source converts at {:.1%}", unknown="Lead source unknown",
        ),
    ),
    FeatureSpec(
        "properties_viewed", "response_patterns",
        "log(1 + properties viewed on the site)", "0 … 14", "no web activity",
        _log1p("properties_viewed"),
        _counted(
            "Viewed {n} {noun}", ("property", "properties"), "Properties viewed unknown",
            transform=np.expm1,
        ),
    ),
    FeatureSpec(
        "repeat_listing_views", "response_patterns",
        "most views of one single listing", "0 … ∞", "no web activity",
        _col("repeat_views"), _repeat_views_text,
        direction=1,
    ),
    FeatureSpec(
        "saved_and_favorites", "response_patterns",
        "saved searches + favourited listings", "0 … ∞", "both unknown",
        _saved,
        _counted(
            "Saved {n} {noun}", ("search or favourite", "searches and favourites"),
            "Saved searches unknown",
        ),
    ),
    FeatureSpec(
        "budget_log_price", "budget_signals",
        "log of the estimated sale price from the budget", "9.2 … 18.4", "no readable budget",
        _budget_log_price, _fmt("Budget around ${:,.0f}", np.exp, "No readable budget"),
    ),
    FeatureSpec(
        "budget_relative_width", "budget_signals",
        "(max − min) / midpoint of the budget range", "0 … 2", "not a two-sided budget",
        _budget_width, _fmt("Budget range of ±{:.0%} around its middle", lambda v: v / 2),
    ),
    FeatureSpec(
        "budget_clarity", "budget_signals",
        "0 none, 1 unreadable text, 2 one-sided, 3 range or point", "0 … 3", "never",
        _col("budget_clarity"), _ordinal(_CLARITY, "Budget unknown"),
    ),
    FeatureSpec(
        "timeline_months", "timeline_urgency",
        "stated time to buy in months", "0.5 … 60", "no readable timeline",
        _col("timeline_months"), _timeline_text,
        direction=-1,
    ),
    FeatureSpec(
        "timeline_urgent", "timeline_urgency",
        "1 when the stated timeline is 3 months or less", "0 / 1", "no readable timeline",
        _urgent,
        _yes_no("Wants to move within 3 months", "No rush: more than 3 months", "Timeline unknown"),
        direction=1,
    ),
    FeatureSpec(
        "lead_age_days", "timeline_urgency",
        "days from lead creation to the as-of time", "0 … ∞", "no created_at",
        _days("lead_age_us"),
        _lead_age_text,
    ),
    FeatureSpec(
        "location_specificity", "location_specificity",
        "0 vague, 1 city/area, 2 neighbourhood, 3 address or ZIP", "0 … 3", "no location",
        _col("loc_score"), _ordinal(_LOCATION, "Location unknown"),
    ),
    FeatureSpec(
        "location_terms", "location_specificity",
        "words in the location preference", "1 … 40", "no location",
        _col("loc_terms"),
        _counted("Location described in {n} {noun}", ("word", "words"), "No location given"),
    ),
    FeatureSpec(
        "property_criteria", "location_specificity",
        "how many of property type and bedrooms are stated", "0 … 2", "never",
        _col("n_property_criteria"), _criteria_text,
    ),
    FeatureSpec(
        "household_size", "family_demographics",
        "people in the household (protected: familial status)", "1 … 30", "not given",
        _col("household_size"),
        _fmt("Household of {:.0f}", unknown="Household size unknown"),
        protected=True,
    ),
    FeatureSpec(
        "school_district_interest", "family_demographics",
        "asked about school districts (protected: familial status)", "0 / 1", "not given",
        _col("school"),
        _yes_no("Interested in schools", "No school interest", "School interest unknown"),
        protected=True,
    ),
    FeatureSpec(
        "bedrooms_per_person", "family_demographics",
        "bedrooms wanted per household member (protected: familial status)", "0 … 50",
        "bedrooms or household unknown", _per_person,
        _fmt(
            "{:.1f} bedrooms per person", unknown="Bedrooms per person unknown",
        ),
        protected=True,
    ),
    FeatureSpec(
        "pre_approved", "financial_readiness",
        "pre-approved for a mortgage", "0 / 1", "not given",
        _col("pre_approved"),
        _yes_no("Pre-approved for a mortgage", "Not pre-approved", "Pre-approval unknown"),
        direction=1,
    ),
    FeatureSpec(
        "financing_readiness", "financial_readiness",
        "0 undecided, 1 mortgage, 2 pre-approved mortgage, 3 cash", "0 … 3", "not readable",
        _col("financing"), _ordinal(_FINANCING, "Financing unknown"),
    ),
    FeatureSpec(
        "previous_transactions", "real_estate_experience",
        "home purchases or sales before", "0 … 1000", "not given",
        _col("prev_tx"),
        _counted(
            "{n} previous {noun}", ("transaction", "transactions"),
            "Previous transactions unknown",
        ),
    ),
    FeatureSpec(
        "first_time_buyer", "real_estate_experience",
        "first-time buyer", "0 / 1", "not given",
        _col("ftb"), _yes_no("First-time buyer", "Experienced buyer", "Buyer experience unknown"),
    ),
    FeatureSpec(
        "message_length_mean", "communication_quality",
        "log(1 + mean message length in characters)", "0 … 11.5", "no message lengths",
        _message_mean,
        _counted(
            "Messages average {n} {noun}", ("character", "characters"),
            "Message length unknown", transform=np.expm1,
        ),
    ),
    FeatureSpec(
        "questions_per_interaction", "communication_quality",
        "questions asked per interaction", "0 … 1000", "no question counts",
        _questions, _questions_text,
    ),
    FeatureSpec(
        "contact_completeness", "communication_quality",
        "how many of name, email and phone are given", "0 … 3", "never",
        _col("contact_count"),
        _fmt("Gave {:.0f} of 3 contact details", unknown="Contact details unknown"),
    ),
)  # fmt: skip

FEATURE_NAMES: Final[tuple[str, ...]] = tuple(f.name for f in FEATURES)
FEATURE_INDEX: Final[dict[str, int]] = {f.name: i for i, f in enumerate(FEATURES)}
PROTECTED: Final[frozenset[str]] = frozenset(f.name for f in FEATURES if f.protected)
#: The conversion score may only rise (+1) or fall (-1) with these features, all else equal.
CONVERSION_DIRECTIONS: Final[dict[str, int]] = {
    f.name: f.direction for f in FEATURES if f.direction
}


def transform(raw: RawBatch, encoding: SourceEncoding) -> FloatArray:
    """The (n, 28) feature matrix; missing stays NaN, never a silent zero."""
    out = np.empty((len(raw), len(FEATURES)), dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        for j, spec in enumerate(FEATURES):
            out[:, j] = spec.compute(raw, encoding)
    return out


def spec_hash() -> str:
    """Fingerprint of the feature definitions; an artifact trained on another spec is refused."""
    described: list[object] = [FEATURE_SPEC_VERSION]
    described += [
        [f.name, f.group, f.meaning, f.value_range, f.missing, f.protected] for f in FEATURES
    ]
    return hashlib.sha256(json.dumps(described).encode()).hexdigest()[:16]


def markdown_table() -> str:
    """The documented feature table, generated from the spec so docs cannot drift."""
    lines = [
        "| # | feature | group | meaning | range | missing when | protected | score can only |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, f in enumerate(FEATURES, start=1):
        protected = "yes" if f.protected else ""
        direction = {1: "rise with it", -1: "fall with it"}.get(f.direction, "")
        lines.append(
            f"| {i} | `{f.name}` | {GROUPS[f.group]} | {f.meaning} | {f.value_range} "
            f"| {f.missing} | {protected} | {direction} |"
        )
    return "\n".join(lines) + "\n"
