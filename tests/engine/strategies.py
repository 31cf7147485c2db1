"""Hypothesis strategies for valid leads, shared by the feature property tests."""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class WrittenAmount:
    """An amount as a CRM user types it, and the dollars it can mean after its scale."""

    text: str
    values: tuple[float, ...]
    scaled: bool


@dataclass(frozen=True)
class WrittenBudget:
    """A budget phrase, what kind of answer it allows, and the amounts or decade it names."""

    text: str
    kind: str  # "point", "pair", "ceiling", "floor" or "shorthand"
    amounts: tuple[WrittenAmount, ...]
    decade: tuple[float, float] | None = None


_SCALES = {
    "k": 1e3,
    "K": 1e3,
    " k": 1e3,
    " thousand": 1e3,
    " grand": 1e3,
    "m": 1e6,
    "M": 1e6,
    "mm": 1e6,
    " mil": 1e6,
    " million": 1e6,
}


@st.composite
def written_amounts(draw: st.DrawFn) -> WrittenAmount:
    """Whole, decimal, decimal-comma, comma-grouped or dotted numbers, with or without a scale."""
    currency = draw(st.sampled_from(["", "", "$", "$ "]))
    scale = draw(st.sampled_from(["", "", "", *_SCALES]))
    if scale:
        limit = 99_999 if _SCALES[scale] == 1e3 else 150
        whole = draw(st.integers(min_value=0, max_value=limit))
        decimals = draw(st.sampled_from(["", "", "5", "25", "1"]))
        mark = draw(st.sampled_from([".", ","]))
        number = (
            f"{whole}{mark}{decimals}" if decimals else f"{whole:,}" if whole > 999 else str(whole)
        )
        value = float(f"{whole}.{decimals}" if decimals else whole)
        return WrittenAmount(f"{currency}{number}{scale}", (value * _SCALES[scale],), True)
    whole = draw(st.one_of(st.integers(1, 9_999), st.integers(10_000, 150_000_000)))
    style = draw(st.sampled_from(["plain", "comma", "dots"]))
    if style == "comma":
        number = f"{whole:,}"
    elif style == "dots" and whole >= 1_000_000:
        number = f"{whole:,}".replace(",", ".")
    else:
        number = str(whole)
    # Without a scale of its own, an amount may take its partner's scale or be bare thousands.
    return WrittenAmount(f"{currency}{number}", (whole, whole * 1e3, whole * 1e6), False)


_PAIRS = (
    "{a}-{b}",
    "{a} - {b}",
    "{a}–{b}",
    "{a} to {b}",
    "from {a} to {b}",
    "between {a} and {b}",
    "{a} and {b}",
    "{a} {b}",
    "{a}/{b}",
    "{a} / {b}",
)
_CEILINGS = (
    "up to {a}",
    "under {a}",
    "below {a}",
    "no more than {a}",
    "less than {a}",
    "at most {a}",
    "max {a}",
    "{a} or less",
    "{a} or under",
    "{a} and under",
    "{a} or below",
    "{a} max",
    "{a} tops",
)
_FLOORS = (
    "at least {a}",
    "no less than {a}",
    "over {a}",
    "from {a}",
    "minimum {a}",
    "starting at {a}",
    "{a}+",
    "{a} +",
    "{a} plus",
    "{a} and up",
    "{a} or more",
    "{a} and above",
    "{a} or higher",
    "{a} minimum",
)
_POINTS = ("{a}", "around {a}", "about {a}", "~{a}", "approx. {a}", "roughly {a}")
_QUALIFIERS = ("low", "mid", "high", "upper", "lower", "middle")


@st.composite
def written_shorthands(draw: st.DrawFn) -> WrittenBudget:
    """ "low 500s", "mid-to-high 400's", "the 400s", "low 1.2Ms": a decade, or a third of it."""
    qualifier = draw(st.sampled_from(["", *_QUALIFIERS]))
    if qualifier and draw(st.booleans()):
        qualifier += draw(st.sampled_from(["-to-", " to ", "-", "/"])) + draw(
            st.sampled_from(_QUALIFIERS)
        )
    if draw(st.booleans()):
        tens = draw(st.integers(min_value=1 if qualifier else 10, max_value=99))
        zeros = 2 if tens % 10 == 0 else 1
        number, start, span, unit = str(tens * 10), tens * 10.0, 10.0**zeros, 1e3
        suffix = draw(st.sampled_from(["s", "'s", "ks", "k's"] + (["k"] if qualifier else [])))
    else:
        whole = draw(st.integers(min_value=1, max_value=9))
        decimal = draw(st.sampled_from(["", "2", "5", "25"]))
        number = f"{whole}.{decimal}" if decimal else str(whole)
        start, span, unit = float(number), 10.0 ** -len(decimal), 1e6
        suffix = draw(st.sampled_from(["Ms", "M's", " millions", "mm's"]))
    space = " " if qualifier else ""
    lead, currency = (
        draw(st.sampled_from(["", "the ", "in the "])),
        draw(st.sampled_from(["", "$"])),
    )
    text = f"{lead}{qualifier}{space}{currency}{number}{suffix}"
    decade = (round(start * unit), round((start + span) * unit))
    return WrittenBudget(text, "shorthand", (), decade)


@st.composite
def written_phrases(draw: st.DrawFn) -> WrittenBudget:
    """One budget phrase of any kind, with nothing around it."""
    kind = draw(st.sampled_from(["point", "pair", "ceiling", "floor", "shorthand"]))
    if kind == "shorthand":
        phrase = draw(written_shorthands())
    else:
        templates = {"point": _POINTS, "pair": _PAIRS, "ceiling": _CEILINGS, "floor": _FLOORS}
        template = draw(st.sampled_from(templates[kind]))
        a = draw(written_amounts())
        b = draw(written_amounts())
        amounts = (a, b) if kind == "pair" else (a,)
        phrase = WrittenBudget(template.format(a=a.text, b=b.text), kind, amounts)
    return phrase


@st.composite
def written_budgets(draw: st.DrawFn) -> WrittenBudget:
    """A budget phrase CRM users write, sometimes with unrelated words (no digits) around it."""
    phrase = draw(written_phrases())
    junk = st.text(alphabet="abcdefghijklmnopqrstuvwxyz ABCXYZ.!?'", max_size=20)
    before, after = draw(junk), draw(junk)
    text = (
        (before + draw(st.sampled_from([", ", "; ", " | "])) if before else "")
        + phrase.text
        + (draw(st.sampled_from([", ", "; ", " | ", ". "])) + after if after else "")
    )
    return WrittenBudget(text, phrase.kind, phrase.amounts, phrase.decade)


@st.composite
def two_open_phrases(draw: st.DrawFn) -> str:
    """A ceiling and a floor (or two of a kind) side by side: "400k max 600k+", "min 1m, 2m max"."""
    phrases = [
        draw(st.sampled_from(_CEILINGS + _FLOORS)).format(a=draw(written_amounts()).text)
        for _ in range(2)
    ]
    return phrases[0] + draw(st.sampled_from([" ", ", ", "; ", " and "])) + phrases[1]


@st.composite
def two_written_budgets(draw: st.DrawFn) -> tuple[str, WrittenBudget, WrittenBudget, bool]:
    """Two phrases in one text ("min 400k, max 600k"), and whether two amounts touch."""
    first, second = draw(written_phrases()), draw(written_phrases())
    joiner = draw(st.sampled_from([", ", "; ", " ", " and "]))
    touching = (
        joiner in (" ", " and ")
        and bool(first.amounts)
        and bool(second.amounts)
        and first.text.endswith(first.amounts[-1].text)
        and second.text.startswith(second.amounts[0].text)
    )
    return first.text + joiner + second.text, first, second, touching
