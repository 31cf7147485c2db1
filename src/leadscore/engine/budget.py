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
_SCALE: Final[dict[str, float]] = {
    "k": 1e3,
    "thousand": 1e3,
    "m": 1e6,
    "mm": 1e6,
    "million": 1e6,
}
_DASHES: Final = str.maketrans({"–": "-", "—": "-", "‒": "-", "−": "-"})

_NUM = (
    r"(?:\$\s*)?(?<![0-9.,])(?P<{n}>[0-9][0-9,]*(?:\.[0-9]+)?)"
    r"(?:\s*(?P<{s}>million|thousand|mm|m|k)\b)?"
)
_AMOUNT_RE: Final = re.compile(
    r"(?:(?<![a-z])(?:"
    r"(?P<upper>no more than|less than|up to|under|below|at most|max(?:imum)?)"
    r"|(?P<lower>at least|more than|starting at|over|above|from|min(?:imum)?)"
    r"|(?P<about>approx(?:imately)?|around|about|roughly|~)"
    r")[.:]?\s*)?"
    + _NUM.format(n="a", s="sa")
    + r"(?:\s*(?:-|to\b)\s*"
    + _NUM.format(n="b", s="sb")
    + r"|(?P<plus>\s*\+))?"
)


class PriceRange(NamedTuple):
    """A buyer's price range; either end may be unknown (None)."""

    low: float | None
    high: float | None


def _amount(number: str, suffix: str | None) -> float:
    """Turn a matched number and optional k/m suffix into dollars."""
    return float(number.replace(",", "")) * _SCALE.get(suffix or "", 1.0)


def _plausible(value: float) -> bool:
    """Whether an amount is a believable home price rather than a typo or another number."""
    return MIN_PRICE <= value <= MAX_PRICE


def _read(match: re.Match[str]) -> PriceRange | None:
    """Interpret one amount expression (range, bound, or point), or None if implausible."""
    if match["b"] is not None:
        suffix_b = match["sb"]
        suffix_a = match["sa"] or suffix_b
        low, high = _amount(match["a"], suffix_a), _amount(match["b"], suffix_b)
        if suffix_a is None and suffix_b is None:
            low = low * 1e3 if low < _BARE_THOUSANDS_BELOW else low
            high = high * 1e3 if high < _BARE_THOUSANDS_BELOW else high
        if not (_plausible(low) and _plausible(high)):
            return None
        return PriceRange(min(low, high), max(low, high))
    value = _amount(match["a"], match["sa"])
    if not _plausible(value):
        return None
    if match["upper"] is not None:
        return PriceRange(None, value)
    if match["about"] is None and (match["lower"] is not None or match["plus"] is not None):
        return PriceRange(value, None)
    return PriceRange(value, value)


@lru_cache(maxsize=4096)
def parse_budget(text: str | None) -> PriceRange | None:
    """Read the first plausible amount expression in a budget text; None rather than a guess."""
    if not text:
        return None
    for match in _AMOUNT_RE.finditer(text.lower().translate(_DASHES)):
        rng = _read(match)
        if rng is not None:
            return rng
    return None


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
