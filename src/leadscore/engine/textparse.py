"""Free-text lead fields → small numeric signals, read as docs/conventions.md writes them."""

from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import Final

_DASHES: Final = str.maketrans({"–": "-", "—": "-", "‒": "-", "−": "-"})
_NUM = r"(?<![0-9.])([0-9]+(?:\.[0-9]+)?)"
_UNIT = r"(days?|weeks?|months?|years?)\b"
_MONTHS_PER: Final[dict[str, float]] = {
    "day": 12 / 365.25,
    "week": 1 / 4.345,
    "month": 1.0,
    "year": 12.0,
}

_TIMELINE_UNKNOWN_RE: Final = re.compile(
    r"\b(?:just browsing|not sure|unsure|unknown|someday|tbd)\b"
)
#: Ordered: the first matching row wins; the number rows come before "now" so that
#: "3-6 months from now" is 4.5, and the 18-month row before the generic ones.
_TIMELINE_ROWS: Final[tuple[tuple[re.Pattern[str], float], ...]] = (
    (
        re.compile(
            r"\b(?:over a year|more than a year)\b|(?<![0-9.])(?:1\+\s*years?|12\+\s*months?)"
            r"|(?<![0-9.])1\s*(?:-|to)\s*2\s*years?\b"
        ),
        18.0,
    ),
    (re.compile(r"\b(?:within a year|next year)\b"), 12.0),
    (re.compile(r"\b(?:within 30 days|within a month|this month)\b"), 1.0),
)
_TIMELINE_RANGE_RE: Final = re.compile(_NUM + r"\s*(?:-|to)\s*" + _NUM + r"\s*" + _UNIT)
_TIMELINE_SINGLE_RE: Final = re.compile(_NUM + r"\s*" + _UNIT)
_TIMELINE_URGENT_RE: Final = re.compile(r"\b(?:asap|immediately|right away|now|urgent)\b")

_ZIP_RE: Final = re.compile(r"(?<![0-9])[0-9]{5}(?![0-9])")
_STREET_RE: Final = re.compile(
    r"\b[0-9]+\s+[a-z][a-z0-9'-]*\.?\s+"
    r"(?:st|street|ave|avenue|rd|road|blvd|dr|drive|ln|lane|ct|way|pl)\b"
)
_VAGUE_RE: Final = re.compile(
    r"\b(?:anywhere|any|not sure|unsure|flexible|open|tbd|somewhere|don'?t know)\b"
)
_AREA_END_RE: Final = re.compile(r"\b(?:area|region|county|metro|suburbs?)\W*$")
_TERM_SPLIT_RE: Final = re.compile(r"[\s,]+")

_FINANCING_ROWS: Final[tuple[tuple[re.Pattern[str], int], ...]] = (
    (re.compile(r"\bcash\b"), 3),
    (re.compile(r"\bpre[-\s]?approved\b"), 2),
    (re.compile(r"\b(?:mortgage|conventional|fha|va|loans?|financing secured)\b"), 1),
    (re.compile(r"\b(?:need financing|not sure|unsure|undecided|none)\b"), 0),
)

_CATEGORY_SEP_RE: Final = re.compile(r"[\s\-./_]+")


def _clean(text: str) -> str:
    """Lower-case and unify dashes so one set of patterns covers every spelling."""
    return text.lower().translate(_DASHES).replace("’", "'")


def _months(amount: str, unit: str) -> float:
    """Convert a count of days/weeks/months/years to months."""
    return float(amount) * _MONTHS_PER[unit.rstrip("s")]


@lru_cache(maxsize=4096)
def parse_timeline_months(text: str | None) -> float | None:
    """Read a purchase timeline as months until buying, or None when the lead doesn't know."""
    if text is None:
        return None
    clean = _clean(text)
    if _TIMELINE_UNKNOWN_RE.search(clean):
        return None
    for pattern, value in _TIMELINE_ROWS:
        if pattern.search(clean):
            return value
    months: float | None = None
    if rng := _TIMELINE_RANGE_RE.search(clean):
        months = (_months(rng[1], rng[3]) + _months(rng[2], rng[3])) / 2
    elif single := _TIMELINE_SINGLE_RE.search(clean):
        months = _months(single[1], single[2])
    elif _TIMELINE_URGENT_RE.search(clean):
        months = 0.5
    return months if months is not None and math.isfinite(months) else None


@lru_cache(maxsize=4096)
def location_specificity(text: str | None) -> tuple[int, int] | None:
    """Score how precisely a lead named where to buy (0..3) and count its words."""
    if text is None:
        return None
    terms = len([piece for piece in _TERM_SPLIT_RE.split(text) if piece])
    if terms == 0:
        return None
    clean = _clean(text)
    if _ZIP_RE.search(clean) or _STREET_RE.search(clean):
        return 3, terms
    if _VAGUE_RE.search(clean):
        return 0, terms
    if terms == 1 or _AREA_END_RE.search(clean):
        return 1, terms
    return 2, terms


@lru_cache(maxsize=4096)
def financing_readiness(text: str | None) -> int | None:
    """Rank how ready the lead's money is (cash 3 … needs financing 0), None if unstated."""
    if text is None:
        return None
    clean = _clean(text)
    for pattern, readiness in _FINANCING_ROWS:
        if pattern.search(clean):
            return readiness
    return None


@lru_cache(maxsize=4096)
def normalise_category(text: str | None) -> str | None:
    """Fold spellings of a category ("Realtor.com", " realtor com ") into one key."""
    if text is None:
        return None
    key = _CATEGORY_SEP_RE.sub("_", text.strip().lower()).strip("_")
    return key or None
