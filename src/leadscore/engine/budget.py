"""Budget text → price range, so free-form CRM budgets become numeric features."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final, NamedTuple

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

MIN_PRICE: Final = 10_000.0
MAX_PRICE: Final = 100_000_000.0
_BARE_THOUSANDS_BELOW: Final = 10_000.0
_THOUSAND: Final = 1e3
_MILLION: Final = 1e6
_SCALE: Final[dict[str, float]] = {
    "k": _THOUSAND,
    "grand": _THOUSAND,
    "thousand": _THOUSAND,
    "thousands": _THOUSAND,
    "m": _MILLION,
    "mm": _MILLION,
    "mil": _MILLION,
    "mill": _MILLION,
    "mln": _MILLION,
    "mio": _MILLION,
    "million": _MILLION,
    "millions": _MILLION,
}
#: Where each "low / mid / high" qualifier sits in a shorthand's decade, in thirds.
_THIRDS: Final[dict[str | None, tuple[int, int]]] = {
    None: (0, 3),
    "low": (0, 1),
    "lower": (0, 1),
    "mid": (1, 2),
    "middle": (1, 2),
    "high": (2, 3),
    "upper": (2, 3),
}
#: Decimals a millions shorthand may carry ("1.25Ms"); finer decades are not a way people talk.
_SHORTHAND_DECIMALS: Final = 2

# A number: "1.200.000" (dotted thousands), "1,2" (a decimal comma, valid only with a scale),
# "1,200,000" / "12,50,000" (comma thousands), "1200.50"; never the start of a longer number.
_NUMBER: Final = (
    r"(?<![0-9.,])(?P<{n}>[0-9]{{1,3}}(?:\.[0-9]{{3}}){{2,}}|[0-9]+,[0-9]{{1,2}}"
    r"|[0-9]+(?:(?:,[0-9]{{2,3}})*,[0-9]{{3}})?(?:\.[0-9]+)?)(?![0-9]|[.,][0-9])"
)
_SCALE_WORDS: Final = r"millions?|thousands?|grand|mill?|mln|mio|mm|m|k"
_AMOUNT: Final = r"(?:[$€£]\s*)?" + _NUMBER + r"(?:\s*(?P<{s}>" + _SCALE_WORDS + r")\b)?"
_DASH: Final = "[-‐‑‒–—−]"
_DIGIT_RE: Final = re.compile("[0-9]")
_QUALIFIER: Final = r"low(?:er)?|mid(?:dle)?|high|upper"
# A decade shorthand: "low 500s", "mid-to-high 400's", "the 400s", "1.2Ms", "mid 400k"; the
# "s" is required except after a qualifier with a scale. {q}/{r}/{d}/{ds}/{s} name its groups.
_DECADE: Final = (
    r"(?:(?=[hlmu])(?<![a-z])(?P<{q}>" + _QUALIFIER + r")"
    r"(?:(?:[\s/]|"
    + _DASH
    + r")+(?:(?:to|or)(?:\s|"
    + _DASH
    + r")+)?(?P<{r}>"
    + _QUALIFIER
    + r"))?"
    r"(?:\s|" + _DASH + r")*)?"
    r"(?:the\s+)?(?:[$€£]\s*)?(?<![0-9.,])(?P<{d}>[0-9]+(?:\.[0-9]+)?)(?![0-9]|[.,][0-9])"
    r"(?:\s*(?P<{ds}>million|mill?|mm|m|k))?(?P<{s}>'?s)?\b(?({s})|(?({q})(?({ds})|(?!))|(?!)))"
)
# After a floor, "max" before an amount is that amount's prefix ("min 400k max 600k"), and so
# is "min" after a ceiling; otherwise a word after an amount is its tail ("600k max").
_NEXT_AMOUNT: Final = r"(?![.:]?\s*(?:[$€£]\s*)?[0-9])"
#: One amount expression: an optional prefix word, then a decade shorthand (or two: "high 400s
#: to low 500s"), or an amount with an optional tail (a second amount, "+", "or less", "and up").
#: The lookaheads on first characters only let the regex skip positions quickly.
_EXPR_RE: Final = re.compile(
    r"(?:(?=[abcfgilmnorsu~<>≤≥])(?<![a-z])(?:"
    r"(?P<between>between|btwn)"
    r"|(?P<upper>no more than|not more than|no higher than|no greater than|not over|not above"
    r"|not to exceed|less than|lower than|up to|upto|under|below|at most|max(?:imum)?|<=?|≤)"
    r"|(?P<lower>at least|no less than|not less than|no lower than|not under|not below"
    r"|more than|greater than|starting (?:at|from)|upwards of|in excess of|over|above|from"
    r"|min(?:imum)?|>=?|≥)"
    r"|(?P<about>approx(?:imately)?|around|about|roughly|circa|~)"
    r")[.:]?\s*)?"
    r"(?:"
    + _DECADE.format(q="q1", r="q2", d="d", ds="ds", s="s")
    + r"(?:\s*(?:"
    + _DASH
    + r"|to\b|thru\b|through\b|/)\s*"
    + _DECADE.format(q="q3", r="q4", d="d2", ds="ds2", s="s2")
    + r")?"
    r"|" + _AMOUNT.format(n="a", s="sa") + r"(?:"
    r"(?P<sep>\s*(?:"
    + _DASH
    + r"|to\b|thru\b|through\b|and\b|&|/)\s*|\s+)"
    + _AMOUNT.format(n="b", s="sb")
    + r"|(?P<plus>\s*\+)"
    r"|(?P<upper_after>\s*(?:(?:or|and|&)\s*(?:less|under|below|lower)\b"
    r"|(?:max(?:imum)?|tops|at (?:the )?most)\b(?(lower)" + _NEXT_AMOUNT + r")))"
    r"|(?P<lower_after>\s*(?:(?:or|and|&)\s*(?:more|up|over|above|higher|greater|upwards?)\b"
    r"|(?:plus|min(?:imum)?|at (?:the )?least)\b(?(upper)" + _NEXT_AMOUNT + r")))"
    r")?)"
)


class PriceRange(NamedTuple):
    """A buyer's price range; either end may be unknown (None)."""

    low: float | None
    high: float | None


def _amount(number: str, scale: str | None) -> float | None:
    """Dollars for a matched number and scale word; None for a decimal comma with no scale."""
    if number.count(".") > 1:
        number = number.replace(".", "")
    elif number.count(",") == 1 and len(number) - number.index(",") <= 3:
        if scale is None:
            return None
        number = number.replace(",", ".")
    return float(number.replace(",", "")) * _SCALE.get(scale or "", 1.0)


def _plausible(value: float | None) -> bool:
    """Whether an amount is a believable home price rather than a typo or another number."""
    return value is not None and MIN_PRICE <= value <= MAX_PRICE


def _loose(match: re.Match[str]) -> bool:
    """Whether two amounts are only side by side (spaces, "/", a bare "and"), not a stated range."""
    sep = match["sep"].strip()
    return sep in ("", "/") or (sep in ("and", "&") and match["between"] is None)


def _pair(match: re.Match[str]) -> PriceRange | None:
    """Two amounts as a sorted range, or None when either end is not a believable price."""
    sep = match["sep"].strip()
    scale_b = match["sb"]
    # Spaces and "/" join two amounts that must each stand alone ("$400k $500k", "400k/500k").
    scale_a = match["sa"] or (scale_b if sep not in ("", "/") else None)
    low, high = _amount(match["a"], scale_a), _amount(match["b"], scale_b)
    if low is None or high is None:
        return None
    # A bare "500-750" is in thousands only in a stated range (a dash, "to", "between ... and").
    if not _loose(match) and match["sa"] is None and scale_b is None:
        low = low * _THOUSAND if low < _BARE_THOUSANDS_BELOW else low
        high = high * _THOUSAND if high < _BARE_THOUSANDS_BELOW else high
    if not (_plausible(low) and _plausible(high)):
        return None
    return PriceRange(min(low, high), max(low, high))


def _decade(
    digits: str, scale: str | None, first: str | None, second: str | None
) -> tuple[float, float] | None:
    """The dollars a "low/mid/high Ns" names: a third (or more) of the decade, to $1,000."""
    whole, _, fraction = digits.partition(".")
    millions = scale not in (None, "k")
    unit = _MILLION if millions else _THOUSAND
    zeros = len(whole) - len(whole.rstrip("0"))
    if fraction:
        if not millions or len(fraction) > _SHORTHAND_DECIMALS:
            return None
        span = 10.0 ** -len(fraction)
    elif not millions and (
        zeros == 0 or int(whole) >= 1000 or (first is None and int(whole) < 100)
    ):
        return None  # "455s", "1990s", or a bare "80s" (a decade of years, not of prices)
    else:
        span = 10.0**zeros
    thirds = [_THIRDS[first]] + ([_THIRDS[second]] if second else [])
    start, end = min(t[0] for t in thirds), max(t[1] for t in thirds)
    base = float(digits)
    low = round((base + span * start / 3) * unit / _THOUSAND) * _THOUSAND
    high = round((base + span * end / 3) * unit / _THOUSAND) * _THOUSAND
    return low, high


def _shorthand(match: re.Match[str]) -> PriceRange | None:
    """One decade shorthand, or the span of two; None if either is not a decade."""
    if match["upper"] is not None or match["lower"] is not None:
        return None  # "under the 500s" may mean below 500k or below 600k: do not guess
    ends = [_decade(match["d"], match["ds"], match["q1"], match["q2"])]
    if match["d2"] is not None:
        ends.append(_decade(match["d2"], match["ds2"], match["q3"], match["q4"]))
    if any(end is None for end in ends):
        return None
    low = min(end[0] for end in ends if end is not None)
    high = max(end[1] for end in ends if end is not None)
    if not (_plausible(low) and _plausible(high)):
        return None
    return PriceRange(low, high)


def _read(match: re.Match[str]) -> tuple[PriceRange | None, int]:
    """Interpret one amount expression, and where to look next if it is not a price."""
    if match["d"] is not None:
        return _shorthand(match), match.end()
    if match["b"] is not None:
        rng = _pair(match)
        loose = _loose(match)
        if loose and rng is not None and rng.low == rng.high:
            # "under 500k 500k" is still a ceiling, not a point
            if match["upper"] is not None:
                return PriceRange(None, rng.high), match.end()
            if match["lower"] is not None:
                return PriceRange(rng.low, None), match.end()
        if rng is not None or not loose:
            return rng, match.end()
        # A loose second number ("$400k 3 bedrooms") leaves the first amount on its own.
        resume = match.start("b")
    else:
        # A tail after a number that is no price may belong to the next one ("1 and under 500k").
        resume = match.end("sa") if match["sa"] is not None else match.end("a")
    value = _amount(match["a"], match["sa"])
    if not _plausible(value):
        return None, resume
    ceiling = match["upper"] is not None or match["upper_after"] is not None
    floor = (
        match["lower"] is not None or match["lower_after"] is not None or match["plus"] is not None
    )
    if ceiling and floor:
        return None, resume  # "under 500k or more" contradicts itself
    if ceiling:
        return PriceRange(None, value), resume
    if floor:
        return PriceRange(value, None), resume
    return PriceRange(value, value), resume


def _next_range(text: str, pos: int) -> tuple[PriceRange | None, int]:
    """The first plausible amount expression from `pos`, and where the text after it starts."""
    while (match := _EXPR_RE.search(text, pos)) is not None:
        rng, pos = _read(match)
        if rng is not None:
            return rng, match.end()
    return None, len(text)


_JOIN_RE: Final = re.compile(r"\s*(?:" + _DASH + r"|to|through|thru|and)\s*")


def _joined(text: str, pos: int, first: PriceRange) -> PriceRange:
    """A shorthand and an amount joined into one range ("low 500s to 600k", "400k to mid
    500s"): the lower end of the first to the upper end of the second, when they rise."""
    join = _JOIN_RE.match(text, pos)
    if join is None:
        return first
    match = _EXPR_RE.match(text, join.end())
    if match is None:
        return first
    second, _ = _read(match)
    if second is None or second.low is None or second.high is None:
        return first
    if first.low is None or second.high <= first.low:
        return first
    return PriceRange(first.low, second.high)


@lru_cache(maxsize=4096)
def parse_budget(text: str | None) -> PriceRange | None:
    """Read the first plausible amount expression in a budget text; None rather than a guess."""
    if not text:
        return None
    lowered = text.lower()
    if _DIGIT_RE.search(lowered) is None:
        return None  # every expression has a number; skip the pattern on "flexible", "TBD"
    rng, pos = _next_range(lowered, 0)
    if rng is not None and rng.low is not None and rng.high is not None:
        return _joined(lowered, pos, rng)
    if rng is None or (rng.low is None) == (rng.high is None):
        return rng
    # A floor and a ceiling written apart ("min 400k, max 600k") make one range.
    other, _ = _next_range(lowered, pos)
    if other is None or (other.low is None) == (rng.low is None):
        return rng
    low, high = rng.low if rng.low is not None else other.low, rng.high or other.high
    if low is None or high is None or low >= high:
        return rng
    return PriceRange(low, high)


def estimate_prices(low: FloatArray, high: FloatArray) -> FloatArray:
    """Sale price from budget ends (NaN = unknown): midpoint, 0.9 × a ceiling, 1.1 × a floor."""
    both = (low + high) / 2.0
    return np.where(np.isnan(low), high * 0.9, np.where(np.isnan(high), low * 1.1, both))


def budget_clarity(rng: PriceRange | None, text_given: bool) -> int:
    """Score how much the budget tells us: 3 both ends, 2 one end, 1 unreadable text, 0 nothing."""
    known = 0 if rng is None else (rng.low is not None) + (rng.high is not None)
    if known == 2:
        return 3
    if known == 1:
        return 2
    return 1 if text_given else 0
