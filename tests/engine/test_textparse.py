"""Timeline, location, financing and category parsing follow docs/conventions.md."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from leadscore.engine.textparse import (
    financing_readiness,
    location_specificity,
    normalise_category,
    parse_timeline_months,
)


@pytest.mark.parametrize(
    ("text", "months"),
    [
        ("ASAP", 0.5),
        ("immediately", 0.5),
        ("right away please", 0.5),
        ("now", 0.5),
        ("Urgent", 0.5),
        ("within 30 days", 1.0),
        ("within a month", 1.0),
        ("1 month", 1.0),
        ("this month", 1.0),
        ("1-3 months", 2.0),
        ("1 to 3 months", 2.0),
        ("3-6 months", 4.5),
        ("3 to 6 months", 4.5),
        ("3–6 months from now", 4.5),
        ("6-12 months", 9.0),
        ("6 to 12 months", 9.0),
        ("12 months", 12.0),
        ("1 year", 12.0),
        ("within a year", 12.0),
        ("next year", 12.0),
        ("over a year", 18.0),
        ("1+ years", 18.0),
        ("12+ months", 18.0),
        ("more than a year", 18.0),
        ("1-2 years", 18.0),
        ("2-4 months", 3.0),
        ("2-4 weeks", 3 / 4.345),
        ("2-3 years", 30.0),
        ("2 months", 2.0),
        ("6 weeks", 6 / 4.345),
        ("45 days", 45 * 12 / 365.25),
        ("2 years", 24.0),
        ("planning to buy in 18 months", 18.0),
        ("just browsing", None),
        ("just browsing for now", None),
        ("not sure", None),
        ("unsure", None),
        ("unknown", None),
        ("someday", None),
        ("TBD", None),
        ("", None),
        ("   ", None),
        (None, None),
        ("whenever", None),
    ],
)
def test_timeline_table(text: str | None, months: float | None) -> None:
    """Each timeline phrase reads back to its months."""
    assert parse_timeline_months(text) == pytest.approx(months)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("78704", (3, 1)),
        ("Austin, TX 78704", (3, 3)),
        ("123 Main St", (3, 3)),
        ("42 Oak Avenue, Austin", (3, 4)),
        ("9 Elm Rd", (3, 3)),
        ("9 Elm Road", (3, 3)),
        ("9 Elm Blvd", (3, 3)),
        ("9 Elm Dr", (3, 3)),
        ("9 Elm Drive", (3, 3)),
        ("9 Elm Ln", (3, 3)),
        ("9 Elm Lane", (3, 3)),
        ("9 Elm Ct", (3, 3)),
        ("9 Elm Way", (3, 3)),
        ("9 Elm Pl", (3, 3)),
        ("9 Elm Ave", (3, 3)),
        ("9 Elm Street", (3, 3)),
        ("anywhere", (0, 1)),
        ("Any", (0, 1)),
        ("not sure", (0, 2)),
        ("unsure", (0, 1)),
        ("flexible", (0, 1)),
        ("open", (0, 1)),
        ("TBD", (0, 1)),
        ("somewhere quiet", (0, 2)),
        ("don't know", (0, 2)),
        ("Don’t know", (0, 2)),
        ("Austin", (1, 1)),
        ("Austin area", (1, 2)),
        ("Bay region", (1, 2)),
        ("Travis County", (1, 2)),
        ("DC metro", (1, 2)),
        ("Chicago suburbs", (1, 2)),
        ("Downtown Austin", (2, 2)),
        ("Hyde Park, Austin", (2, 3)),
        ("Hyde Park,Austin", (2, 3)),
        ("  Austin  ", (1, 1)),
        ("1234 houses", (2, 2)),
        ("", None),
        ("   ", None),
        (" , ", None),
        (None, None),
    ],
)
def test_location_table(text: str | None, expected: tuple[int, int] | None) -> None:
    """Each location shape scores as the convention says, with its word count."""
    assert location_specificity(text) == expected


@pytest.mark.parametrize(
    ("text", "readiness"),
    [
        ("Cash", 3),
        ("cash buyer", 3),
        ("cash or mortgage", 3),
        ("pre-approved", 2),
        ("Preapproved with Chase", 2),
        ("pre approved", 2),
        ("mortgage", 1),
        ("conventional", 1),
        ("FHA", 1),
        ("VA", 1),
        ("VA loan", 1),
        ("loan", 1),
        ("financing secured", 1),
        ("need financing", 0),
        ("not sure", 0),
        ("unsure", 0),
        ("undecided", 0),
        ("none", 0),
        ("Nevada", None),
        ("financing", None),
        ("something else", None),
        ("", None),
        (None, None),
    ],
)
def test_financing_table(text: str | None, readiness: int | None) -> None:
    """Each financing phrase ranks as the convention says; first matching row wins."""
    assert financing_readiness(text) == readiness


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("Zillow", "zillow"),
        (" zillow ", "zillow"),
        ("ZILLOW", "zillow"),
        ("Realtor.com", "realtor_com"),
        ("open house", "open_house"),
        ("Open  -  House", "open_house"),
        ("open_house", "open_house"),
        ("facebook/instagram", "facebook_instagram"),
        ("referral.", "referral"),
        ("", None),
        ("   ", None),
        (" ./- ", None),
        (None, None),
    ],
)
def test_normalise_category(text: str | None, key: str | None) -> None:
    """Spellings of one source fold to one key."""
    assert normalise_category(text) == key


def test_huge_timeline_number_is_unknown() -> None:
    """A count too large for a float is not a timeline."""
    assert parse_timeline_months("9" * 400 + " years") is None


@given(st.text())
def test_timeline_never_raises(text: str) -> None:
    """Any string gives None or a finite, non-negative number of months."""
    months = parse_timeline_months(text)
    assert months is None or (math.isfinite(months) and months >= 0)


@given(st.text(alphabet="0123456789 -+.toweksdaymnhrasp", max_size=30))
def test_timeline_on_number_like_text(text: str) -> None:
    """Number-heavy strings (where the regexes engage) keep the same guarantee."""
    months = parse_timeline_months(text)
    assert months is None or (math.isfinite(months) and months >= 0)


@given(st.text())
def test_location_never_raises(text: str) -> None:
    """Any string gives None (only when it has no words) or a bounded score and its terms."""
    result = location_specificity(text)
    if result is None:
        assert not text.replace(",", " ").split()
    else:
        score, terms = result
        assert 0 <= score <= 3
        assert terms >= 1


@given(st.text())
def test_financing_never_raises(text: str) -> None:
    """Any string gives None or a readiness in 0..3."""
    assert financing_readiness(text) in {None, 0, 1, 2, 3}


@given(st.text())
def test_normalise_category_is_idempotent(text: str) -> None:
    """A key is already normal: folding it again changes nothing."""
    key = normalise_category(text)
    assert key is None or (key and normalise_category(key) == key)
