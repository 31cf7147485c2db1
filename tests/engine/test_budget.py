"""Budget parsing follows docs/conventions.md row by row and never raises."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from leadscore.engine.budget import (
    MAX_PRICE,
    MIN_PRICE,
    PriceRange,
    budget_clarity,
    estimate_prices,
    parse_budget,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # ranges, separators, suffixes
        ("$350,000 - $450,000", (350_000, 450_000)),
        ("500k-750k", (500_000, 750_000)),
        ("$1.8M-$2.2M", (1.8e6, 2.2e6)),
        ("500k to 750k", (500_000, 750_000)),
        ("500k–750k", (500_000, 750_000)),
        ("500 thousand - 750 thousand", (500_000, 750_000)),
        ("1.5mm-2mm", (1.5e6, 2e6)),
        ("from 500k to 700k", (500_000, 700_000)),
        # a suffix on B alone applies to A
        ("500-750k", (500_000, 750_000)),
        ("1-2 million", (1e6, 2e6)),
        # bare numbers below 10,000 in a suffix-less range are thousands
        ("500-750", (500_000, 750_000)),
        ("500 to 750", (500_000, 750_000)),
        ("500-750000", (500_000, 750_000)),
        # reversed ranges are swapped
        ("750k-500k", (500_000, 750_000)),
        # upper bounds
        ("under 1.5m", (None, 1.5e6)),
        ("up to 900k", (None, 900_000)),
        ("below $400,000", (None, 400_000)),
        ("max 600k", (None, 600_000)),
        ("maximum: 600k", (None, 600_000)),
        ("less than 300k", (None, 300_000)),
        ("no more than 300k", (None, 300_000)),
        ("at most $2M", (None, 2e6)),
        # lower bounds
        ("over 1m", (1e6, None)),
        ("above 800k", (800_000, None)),
        ("at least 250k", (250_000, None)),
        ("from 300k", (300_000, None)),
        ("min 300k", (300_000, None)),
        ("minimum 300k", (300_000, None)),
        ("more than 300k", (300_000, None)),
        ("starting at $450k", (450_000, None)),
        ("$400K+", (400_000, None)),
        # points
        ("around $600k", (600_000, 600_000)),
        ("about 600k", (600_000, 600_000)),
        ("approx 600k", (600_000, 600_000)),
        ("approx. 600k", (600_000, 600_000)),
        ("approximately 600k", (600_000, 600_000)),
        ("roughly 600k", (600_000, 600_000)),
        ("~600k", (600_000, 600_000)),
        ("1.2 million", (1.2e6, 1.2e6)),
        ("650000", (650_000, 650_000)),
        ("$650,000", (650_000, 650_000)),
        ("Budget: 500K", (500_000, 500_000)),
        # bounds of plausibility are inclusive
        ("10k", (10_000, 10_000)),
        ("100m", (1e8, 1e8)),
        # an implausible number is skipped, not guessed from
        ("3 bed under 500k", (None, 500_000)),
        # no amount or implausible amount
        ("looking for something nice", None),
        ("$5", None),
        ("5k", None),
        ("500", None),
        ("101m", None),
        ("$5-$500k", None),
        ("", None),
        ("   ", None),
        (None, None),
    ],
)
def test_parse_budget_table(text: str | None, expected: tuple[float | None, ...] | None) -> None:
    """Every convention row reads back to the value the generator meant."""
    result = parse_budget(text)
    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(PriceRange(*expected))
        assert isinstance(result, PriceRange)


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (400_000, 600_000, 500_000),
        (None, 1_000_000, 900_000),
        (500_000, None, 550_000),
        (None, None, None),
    ],
)
def test_estimate_price(low: float | None, high: float | None, expected: float | None) -> None:
    """Midpoint for both ends, 0.9 × high or 1.1 × low for one, unknown for none."""
    got = float(estimate_price(low, high)[0])
    assert np.isnan(got) if expected is None else got == pytest.approx(expected)


@pytest.mark.parametrize(
    ("rng", "text_given", "expected"),
    [
        (PriceRange(1e5, 2e5), True, 3),
        (PriceRange(1e5, 1e5), True, 3),
        (PriceRange(None, 2e5), True, 2),
        (PriceRange(1e5, None), False, 2),
        (None, True, 1),
        (None, False, 0),
    ],
)
def test_budget_clarity(rng: PriceRange | None, text_given: bool, expected: int) -> None:
    """3 both ends, 2 one end, 1 unreadable text, 0 nothing given."""
    assert budget_clarity(rng, text_given) == expected


def test_huge_number_is_not_a_price() -> None:
    """A number too large for a float is rejected rather than overflowing."""
    assert parse_budget("9" * 5_000) is None
    assert parse_budget("$" + "1" * 400 + "k") is None


@given(st.text())
def test_parse_budget_never_raises_and_is_plausible(text: str) -> None:
    """Any string gives None or an ordered range inside the plausible price band."""
    result = parse_budget(text)
    if result is not None:
        assert result.low is not None or result.high is not None
        for end in result:
            assert end is None or MIN_PRICE <= end <= MAX_PRICE
        if result.low is not None and result.high is not None:
            assert result.low <= result.high


@given(
    st.one_of(
        st.text(alphabet="0123456789$,.kKmM -–+~toupnderaboutmax", max_size=30),
        st.from_regex(
            r"\$?[0-9]{1,7}(\.[0-9])?[kKmM]?( ?- ?\$?[0-9]{1,7}[kKmM]?)?", fullmatch=True
        ),
    )
)
def test_parse_budget_on_amount_like_text(text: str) -> None:
    """Amount-heavy strings (where the regex actually engages) keep the same guarantees."""
    result = parse_budget(text)
    if result is not None:
        assert all(end is None or MIN_PRICE <= end <= MAX_PRICE for end in result)
        if result.low is not None and result.high is not None:
            assert result.low <= result.high


@given(
    st.floats(min_value=MIN_PRICE, max_value=MAX_PRICE),
    st.floats(min_value=MIN_PRICE, max_value=MAX_PRICE),
)
def test_estimate_price_between_ends(a: float, b: float) -> None:
    """With both ends known, the estimate lies between them."""
    low, high = min(a, b), max(a, b)
    estimate = float(estimate_price(low, high)[0])
    assert low <= estimate <= high


@given(st.one_of(st.none(), st.floats(min_value=MIN_PRICE, max_value=MAX_PRICE)))
def test_estimate_price_one_end(value: float | None) -> None:
    """One known end nudges the estimate inward from that end."""
    if value is None:
        assert np.isnan(estimate_price(None, None)[0])
    else:
        assert estimate_price(value, None)[0] == pytest.approx(1.1 * value)
        assert estimate_price(None, value)[0] == pytest.approx(0.9 * value)


def estimate_price(low: float | None, high: float | None) -> np.ndarray:
    """One lead through the vectorised estimate."""
    nan = float("nan")
    return estimate_prices(
        np.array([nan if low is None else low]), np.array([nan if high is None else high])
    )
