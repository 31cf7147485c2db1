"""The generator's contract: canonical frame, realistic gaps, and an oracle a model can reach."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from leadscore.engine import synthetic as syn
from leadscore.engine.budget import budget_clarity, parse_budget
from leadscore.engine.frame import LEAD_COLUMNS, ORACLE_COLUMNS, OUTCOME_COLUMNS, WEB_FIELDS
from leadscore.engine.textparse import (
    financing_readiness,
    location_specificity,
    normalise_category,
    parse_timeline_months,
)

ROOT = Path(__file__).resolve().parents[2]
N = 5_000
DAY_US = syn.DAY_US
ALWAYS_PRESENT = {
    "lead_id",
    "interaction_history",
    "created_at",
    "as_of",
    "converted",
    "closed",
    "p_conversion",
    "p_closing",
}
STRUCTURALLY_SPARSE = {"budget_min", "budget_max"}
WEB = [f"web_activity.{name}" for name in WEB_FIELDS]
OUTCOME_ONLY = {"closed_within_timeline", "sale_price", "days_to_close", "p_timeline"}


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    """One generated batch shared by the tests that only read it."""
    return syn.generate(N, seed=2024)


def _history(frame: pl.DataFrame) -> pl.DataFrame:
    """One row per interaction with its lead's row number, converted flag and as_of."""
    return (
        frame.select(
            pl.int_range(pl.len()).alias("row"),
            "created_at",
            "as_of",
            "converted",
            "interaction_history",
        )
        .explode("interaction_history")
        .unnest("interaction_history")
        .filter(pl.col("timestamp").is_not_null())
    )


def test_columns_and_dtypes_are_canonical(frame: pl.DataFrame) -> None:
    expected = {**LEAD_COLUMNS, **OUTCOME_COLUMNS, **ORACLE_COLUMNS}
    assert list(frame.schema.items()) == list(expected.items())
    assert frame.height == N


def test_ids_follow_creation_order_and_as_of_is_within_three_weeks(frame: pl.DataFrame) -> None:
    assert frame["lead_id"].to_list() == [f"syn_{i:07d}" for i in range(N)]
    assert frame["created_at"].is_sorted()
    lag = (frame["as_of"] - frame["created_at"]).dt.total_microseconds()
    assert lag.min() >= 0  # type: ignore[operator]
    assert lag.max() < syn.AS_OF_MAX_DAYS * DAY_US  # type: ignore[operator]


def test_same_seed_same_frame_other_seed_other_frame() -> None:
    assert_frame_equal(syn.generate(2_000, seed=3), syn.generate(2_000, seed=3))
    assert not syn.generate(2_000, seed=3).equals(syn.generate(2_000, seed=4))


def test_zero_leads_gives_an_empty_canonical_frame() -> None:
    empty = syn.generate(0, seed=1)
    assert empty.height == 0
    assert empty.columns == [*LEAD_COLUMNS, *OUTCOME_COLUMNS, *ORACLE_COLUMNS]


def test_every_nullable_field_is_sometimes_missing(frame: pl.DataFrame) -> None:
    nulls = frame.null_count().row(0, named=True)
    for column, count in nulls.items():
        rate = count / frame.height
        if column in ALWAYS_PRESENT:
            assert count == 0, column
        elif column in STRUCTURALLY_SPARSE:
            assert 0.5 < rate < 0.9, (column, rate)
        elif column in WEB:  # only the IDX site tracks web activity
            assert 0.55 < rate < 0.8, (column, rate)
        elif column in OUTCOME_ONLY:
            assert rate > 0.2, (column, rate)
        else:  # the field's own rate, plus the bare contacts (8 %)
            assert 0.04 < rate < 0.5, (column, rate)
    inner = _history(frame).null_count().row(0, named=True)
    for field in ("response_time_hours", "message_length", "questions_asked"):
        assert inner[field] > 0, field


def test_conversion_rate_and_oracle_spread(frame: pl.DataFrame) -> None:
    assert 0.10 <= frame["converted"].mean() <= 0.15  # type: ignore[operator]
    p = frame["p_conversion"].to_numpy()
    assert (p > 0.7).mean() > 0.005
    assert (p < 0.4).mean() > 0.8


def test_outcomes_are_consistent(frame: pl.DataFrame) -> None:
    closed = frame.filter("closed")
    assert closed["converted"].all()
    assert frame.filter(~pl.col("closed"))["closed_within_timeline"].null_count() == (
        frame.height - closed.height
    )
    assert closed["sale_price"].null_count() == 0
    assert closed["days_to_close"].null_count() == 0
    assert frame["sale_price"].null_count() == frame.height - closed.height
    assert (frame["p_closing"] <= frame["p_conversion"]).all()
    months = np.array([parse_timeline_months(t) or np.nan for t in closed["timeline"].to_list()])
    within = closed["closed_within_timeline"].to_numpy()
    days = closed["days_to_close"].to_numpy()
    readable = ~np.isnan(months)
    assert np.array_equal(closed["closed_within_timeline"].is_null().to_numpy(), ~readable)
    limit = months * syn.DAYS_PER_MONTH
    assert (days[readable & (within == True)] <= limit[readable & (within == True)]).all()  # noqa: E712
    assert (days[readable & (within == False)] > limit[readable & (within == False)]).all()  # noqa: E712


def test_oracle_is_calibrated_by_decile() -> None:
    frame = syn.generate(20_000, seed=77)
    p = frame["p_conversion"].to_numpy()
    y = frame["converted"].to_numpy().astype(float)
    for chunk in np.array_split(np.argsort(p), 10):
        expected = p[chunk].sum()
        sd = np.sqrt((p[chunk] * (1 - p[chunk])).sum())
        assert abs(y[chunk].sum() - expected) <= 4 * sd + 1, (expected, y[chunk].sum())
    closing = frame["p_closing"].to_numpy()
    assert abs(frame["closed"].sum() - closing.sum()) <= 4 * np.sqrt(closing.sum()) + 1


def test_oracle_ranks_well(frame: pl.DataFrame) -> None:
    p = frame["p_conversion"].to_numpy()
    y = frame["converted"].to_numpy()
    ranks = np.argsort(np.argsort(p)) + 1.0
    positives = y.sum()
    auc = (ranks[y].sum() - positives * (positives + 1) / 2) / (positives * (len(y) - positives))
    assert 0.80 <= auc <= 0.90


def test_interactions_after_as_of_exist_and_favour_converted_leads(frame: pl.DataFrame) -> None:
    history = _history(frame)
    window = (pl.col("timestamp") - pl.col("created_at")).dt.total_microseconds()
    assert history.select((window >= 0) & (window <= syn.WINDOW_DAYS * DAY_US)).to_series().all()
    assert history.select(pl.col("timestamp").is_sorted().over("row").all()).item(), (
        "history must be in time order"
    )
    after = history.filter(pl.col("timestamp") > pl.col("as_of"))
    per_lead = (
        frame.select(pl.int_range(pl.len()).alias("row"), "converted")
        .join(after.group_by("row").len(), on="row", how="left")
        .group_by("converted")
        .agg(pl.col("len").fill_null(0).mean())
    )
    rates = dict(zip(per_lead["converted"], per_lead["len"], strict=True))
    assert rates[False] > 0.5
    assert rates[True] > 2 * rates[False]


def test_oracle_is_a_function_of_the_observable_row_as_of(frame: pl.DataFrame) -> None:
    oracle = syn.oracle_probabilities(syn.oracle_inputs_from_frame(frame))
    np.testing.assert_allclose(oracle.conversion, frame["p_conversion"].to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(oracle.closing, frame["p_closing"].to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(
        oracle.timeline, frame["p_timeline"].fill_null(np.nan).to_numpy(), rtol=1e-9
    )


def test_family_fields_do_not_move_the_oracle(frame: pl.DataFrame) -> None:
    fields = [f.name for f in syn.OracleInputs.__dataclass_fields__.values()]
    assert not {"household_size", "school_district_interest", "bedrooms"} & set(fields)
    by_size = frame.group_by(pl.col("household_size").clip(1, 4)).agg(pl.col("p_conversion").mean())
    means = by_size["p_conversion"].to_numpy()
    assert means.max() - means.min() < 0.03


@pytest.mark.parametrize(
    ("table", "parser"),
    [(syn.TIMELINE_PHRASES, parse_timeline_months), (syn.FINANCING_PHRASES, financing_readiness)],
)
def test_phrase_tables_parse_to_their_intended_values(
    table: tuple[tuple[int, str, float | None], ...], parser: object
) -> None:
    assert callable(parser)
    for _, text, value in table:
        got = parser(text)
        if value is None:
            assert got is None, text
        else:
            assert got == pytest.approx(value, rel=1e-9), text


def test_sources_normalise_to_their_keys() -> None:
    assert [normalise_category(s.label) for s in syn.SOURCES] == [s.key for s in syn.SOURCES]


def test_locations_parse_to_their_intended_specificity() -> None:
    rng = np.random.default_rng(5)
    readiness = rng.standard_normal(20_000)
    market = rng.integers(0, len(syn.MARKETS), 20_000)
    text, level = syn._location(rng, readiness, market, np.zeros(len(readiness), bool))
    for phrase, expected in zip(text.to_list(), level, strict=True):
        got = location_specificity(phrase)
        assert (None if got is None else got[0]) == (None if np.isnan(expected) else expected)


def test_budgets_parse_to_their_intended_ranges() -> None:
    rng = np.random.default_rng(6)
    n = 20_000
    budget = syn._budget(
        rng, rng.standard_normal(n), rng.integers(0, len(syn.MARKETS), n), np.zeros(n, bool)
    )
    seen_formats = set()
    for i, text in enumerate(budget.text.to_list()):
        numbers = not (np.isnan(budget.minimum[i]) and np.isnan(budget.maximum[i]))
        parsed = parse_budget(text)
        expected = (
            (budget.minimum[i], budget.maximum[i]) if numbers else (budget.low[i], budget.high[i])
        )
        if text is None or (numbers is False and np.isnan(expected).all()):
            assert parsed is None, text
            continue
        seen_formats.add(text.translate(str.maketrans("0123456789", "##########")))
        assert parsed is not None, text
        got = [np.nan if v is None else v for v in parsed]
        np.testing.assert_allclose(got, expected, rtol=1e-9, err_msg=text)
        clarity = budget_clarity(parsed, True) if not numbers else budget.clarity[i]
        assert clarity == budget.clarity[i], text
    assert len(seen_formats) > 30


def test_sale_price_follows_the_budget(frame: pl.DataFrame) -> None:
    closed = frame.filter(pl.col("closed") & pl.col("budget_min").is_not_null())
    closed = closed.filter(pl.col("budget_max").is_not_null())
    ratio = closed["sale_price"] / ((closed["budget_min"] + closed["budget_max"]) / 2)
    assert 0.95 < ratio.median() < 1.05  # type: ignore[operator]


def test_documented_oracle_tables_are_generated_from_the_code() -> None:
    docs = (ROOT / "docs" / "synthetic.md").read_text()
    for block in syn.oracle_markdown().strip().split("\n\n"):
        assert block in docs


@pytest.fixture(scope="module")
def large() -> pl.DataFrame:
    """A bigger batch for the observability rates and the neutrality of unknowns."""
    return syn.generate(40_000, seed=99)


def _source_key(frame: pl.DataFrame) -> pl.Series:
    return frame["source"].map_elements(normalise_category, return_dtype=pl.String)


def _web_tracked(frame: pl.DataFrame) -> pl.Series:
    return frame.select(pl.any_horizontal(pl.col(WEB).is_not_null())).to_series()


def _detail_kept(frame: pl.DataFrame) -> pl.Series:
    """Per lead with 3+ interactions: whether any carries a reply time, length or question count."""
    item = pl.element().struct
    measured = (
        item.field("response_time_hours").is_not_null()
        | item.field("message_length").is_not_null()
        | item.field("questions_asked").is_not_null()
    )
    history = pl.col("interaction_history")
    return frame.select(
        pl.when(history.list.len() >= 3).then(history.list.eval(measured).list.any())
    ).to_series()


def test_portal_leads_never_carry_site_web_activity(large: pl.DataFrame) -> None:
    key, tracked = _source_key(large), _web_tracked(large)
    rates = (
        pl.DataFrame({"key": key, "tracked": tracked}).group_by("key").agg(pl.col("tracked").mean())
    )
    rate = dict(rates.iter_rows())
    assert rate["zillow"] == 0.0
    assert rate["realtor_com"] == 0.0
    assert rate["website"] > 0.9  # the team's IDX site
    assert 0.2 < rate["facebook"] < 0.8  # some ads land on the IDX site
    assert 0.2 < rate["google_ads"] < 0.8
    assert rate["referral"] < 0.1  # few digital traces
    assert rate["open_house"] < 0.1
    for row in syn.OBSERVABILITY:
        if row.key is not None:
            assert abs(rate[row.key] - row.web_tracked) < 0.05, row


def test_tracked_web_activity_is_whole_and_its_zeros_are_real(large: pl.DataFrame) -> None:
    tracked = large.filter(_web_tracked(large))
    assert tracked.select(pl.col(WEB).null_count()).sum_horizontal().item() == 0
    assert (tracked["web_activity.properties_viewed"] == 0).sum() > 50
    untracked = large.filter(~_web_tracked(large))
    assert untracked.select(pl.col(WEB).null_count()).row(0) == (untracked.height,) * len(WEB)


def test_crm_exports_often_lack_interaction_detail(large: pl.DataFrame) -> None:
    """Leads with 3+ interactions and not one measured: the CRM kept no detail for them."""
    frame = pl.DataFrame({"key": _source_key(large), "kept": _detail_kept(large)}).drop_nulls()
    rate = dict(frame.group_by("key").agg(pl.col("kept").mean()).iter_rows())
    for row in syn.OBSERVABILITY:
        if row.key is not None:
            assert abs(rate[row.key] - row.detail_tracked) < 0.08, row
    assert rate["referral"] < rate["zillow"] < rate["website"]


def _gap_neutral(
    intercept: float,
    terms: tuple[syn.Term, ...],
    inputs: syn.OracleInputs,
    offset: np.ndarray,
    weight: np.ndarray,
) -> None:
    """Each term's missing effect, given to the leads that have the quantity, leaves their
    (weighted) mean probability where it is, within 2 %."""
    logit = syn._logit(intercept, terms, inputs) + offset
    for term in terms:
        x = getattr(inputs, term.quantity)
        known = ~np.isnan(x)
        if known.all():
            continue
        effect = term.coef * syn._transform(term.transform, x[known])
        w = weight[known]
        as_known = np.average(syn._sigmoid(logit[known]), weights=w)
        as_gap = np.average(syn._sigmoid(logit[known] - effect + term.missing), weights=w)
        assert as_gap == pytest.approx(as_known, rel=0.02), term


def test_unknown_is_not_evidence_where_it_is_only_unobserved(large: pl.DataFrame) -> None:
    """A field nobody recorded moves no one's odds on average: leads that have it would convert
    at the same mean rate if it were missing (conversion, closing among converters, timeline
    among closers with a timeline); only the never-missing counts carry their zeros."""
    inputs = syn.oracle_inputs_from_frame(large)
    n = large.height
    conversion = large["p_conversion"].to_numpy()
    given = large["p_closing"].to_numpy() / conversion
    has_timeline = (~np.isnan(inputs.timeline_months)).astype(np.float64)
    _gap_neutral(syn.CONVERSION_INTERCEPT, syn.CONVERSION_TERMS, inputs,
                 inputs.source_offset, np.ones(n))  # fmt: skip
    _gap_neutral(syn.CLOSING_INTERCEPT, syn.CLOSING_TERMS, inputs, np.zeros(n), conversion)
    timeline_terms = tuple(t for t in syn.TIMELINE_TERMS if t.quantity != "timeline_months")
    _gap_neutral(syn.TIMELINE_INTERCEPT, timeline_terms, inputs, np.zeros(n),
                 conversion * given * has_timeline)  # fmt: skip


def test_an_empty_lead_is_near_the_base_rate(large: pl.DataFrame) -> None:
    """Nothing known but that it arrived now, with no contact given and no interaction yet: the
    truth is near the population's rate, a little below it for the missing contact."""
    nothing = np.array([np.nan])
    zero = np.array([0.0])
    never_missing = (
        "source_offset", "interactions", "interactions_7d", "lead_age_days",
        "contact_completeness",
    )  # fmt: skip
    empty = syn.OracleInputs(
        **{f.name: nothing for f in dataclasses.fields(syn.OracleInputs)}
        | dict.fromkeys(never_missing, zero)
    )
    base = large["p_conversion"].mean()
    assert isinstance(base, float)
    p = syn.oracle_probabilities(empty).conversion[0]
    assert 0.6 * base < p < base
    contact = dataclasses.replace(empty, contact_completeness=np.array([3.0]))
    assert syn.oracle_probabilities(contact).conversion[0] == pytest.approx(base, rel=0.1)


def test_being_tracked_does_not_move_the_odds(large: pl.DataFrame) -> None:
    """Within a source whose leads are tracked about half the time, tracked and untracked leads
    have the same true odds: observability is drawn apart from behaviour."""
    key, tracked = _source_key(large), _web_tracked(large)
    p = large["p_conversion"].to_numpy()
    ads = (key == "google_ads").fill_null(False).to_numpy()
    on = p[ads & tracked.to_numpy()]
    off = p[ads & ~tracked.to_numpy()]
    se = np.sqrt(on.var() / len(on) + off.var() / len(off))
    assert abs(on.mean() - off.mean()) < 4 * se + 0.005, (on.mean(), off.mean())
