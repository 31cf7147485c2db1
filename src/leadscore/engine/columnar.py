"""Raw quantities of a canonical polars frame, vectorised: the file and training path.

Kept apart from `raw` so that serving single leads never imports polars.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from leadscore.engine.budget import MAX_PRICE, MIN_PRICE, PriceRange, budget_clarity, parse_budget
from leadscore.engine.raw import (
    FAST_RESPONSE_HOURS,
    NAN,
    RAW_FIELDS,
    RAW_INDEX,
    WEEK_US,
    FloatArray,
    RawBatch,
    _f,
    _location,
    _text_given,
)
from leadscore.engine.schema import utc_timestamp_us
from leadscore.engine.textparse import (
    financing_readiness,
    normalise_category,
    parse_timeline_months,
)


def _float(series: pl.Series) -> FloatArray:
    return series.cast(pl.Float64).fill_null(NAN).to_numpy().astype(np.float64, copy=False)


def _present(df: pl.DataFrame, column: str) -> pl.Series:
    """Whether a text column holds something after trimming, as 0/1."""
    return df[column].str.strip_chars().str.len_chars().fill_null(0).gt(0).cast(pl.Int64)


def _distinct_index(series: pl.Series) -> tuple[list[Any], NDArray[np.int64]]:
    """Distinct values of a column and, per row, the position of its value among them."""
    uniques = series.unique(maintain_order=True)
    lookup = pl.DataFrame({"key": uniques, "i": pl.int_range(uniques.len(), eager=True)})
    joined = (
        series.alias("key")
        .to_frame()
        .join(lookup, on="key", how="left", nulls_equal=True, maintain_order="left")
    )
    return uniques.to_list(), joined["i"].to_numpy().astype(np.int64)


def _lookup(series: pl.Series, fn: Callable[[Any], Sequence[float]], width: int) -> FloatArray:
    """Run a cached scalar parser once per distinct value and broadcast the rows back."""
    uniques, index = _distinct_index(series)
    table = np.array([fn(value) for value in uniques], dtype=np.float64).reshape(-1, width)
    return table[index]


def _budget_text(text: str | None) -> tuple[float, float, float]:
    rng = parse_budget(text)
    low = NAN if rng is None or rng.low is None else rng.low
    high = NAN if rng is None or rng.high is None else rng.high
    return low, high, float(budget_clarity(rng, _text_given(text)))


def _budget_fields(low: float, high: float) -> float:
    rng = PriceRange(None if np.isnan(low) else low, None if np.isnan(high) else high)
    return float(budget_clarity(rng, True))


def _interactions(
    df: pl.DataFrame, as_of_us: pl.Series, put: Callable[[str, FloatArray], None]
) -> None:
    """Aggregate the interaction lists as of each row's instant, exactly as `_lead_row` does."""
    n = df.height
    ts = pl.col("timestamp").dt.epoch("us")
    resp = pl.col("response_time_hours")
    exploded = (
        df.select(
            pl.int_range(n, dtype=pl.Int64).alias("row"),
            as_of_us.alias("as_of_us"),
            pl.col("interaction_history"),
        )
        .explode("interaction_history")
        .unnest("interaction_history")
        .filter(pl.col("timestamp").is_not_null() & (ts <= pl.col("as_of_us")))
    )
    agg = (
        exploded.group_by("row")
        .agg(
            pl.len().alias("n_inter"),
            (ts > pl.col("as_of_us") - WEEK_US).sum().alias("n_inter_7d"),
            (pl.col("as_of_us").first() - ts.max()).alias("last_inter_age_us"),
            resp.drop_nulls().sort().alias("sorted_resp"),
            resp.count().alias("n_resp"),
            (resp <= FAST_RESPONSE_HOURS).sum().alias("n_fast"),
            pl.col("message_length").sum().alias("msg_sum"),
            pl.col("message_length").count().alias("n_msg"),
            pl.col("questions_asked").sum().alias("q_sum"),
            pl.col("questions_asked").count().alias("n_q"),
        )
        .with_columns(
            pl.col("sorted_resp")
            .list.get((pl.col("sorted_resp").list.len() - 1) // 2, null_on_oob=True)
            .alias("resp_median")
        )
    )
    rows = agg["row"].to_numpy()
    for name in ("n_inter", "n_inter_7d", "n_resp", "n_fast", "msg_sum", "n_msg", "q_sum", "n_q"):
        column = np.zeros(n, dtype=np.float64)
        column[rows] = _float(agg[name])
        put(name, column)
    for name in ("last_inter_age_us", "resp_median"):
        column = np.full(n, NAN, dtype=np.float64)
        column[rows] = _float(agg[name])
        put(name, column)


def raw_from_frame(df: pl.DataFrame, as_of: datetime | None = None) -> RawBatch:
    """Raw quantities of a canonical lead frame, vectorised; a per-row `as_of` wins when set."""
    n = df.height
    default_us = utc_timestamp_us(as_of or datetime.now(UTC))
    if "as_of" in df.columns:
        as_of_us = df["as_of"].dt.epoch("us").fill_null(default_us)
    else:
        as_of_us = pl.repeat(default_us, n, dtype=pl.Int64, eager=True)
    out = np.full((n, len(RAW_FIELDS)), NAN, dtype=np.float64)

    def put(name: str, values: FloatArray) -> None:
        out[:, RAW_INDEX[name]] = values

    _interactions(df, as_of_us, put)
    put("lead_age_us", _float(as_of_us - df["created_at"].dt.epoch("us")))

    fields_set = (df["budget_min"].is_not_null() | df["budget_max"].is_not_null()).to_numpy()
    bmin, bmax = _float(df["budget_min"]).copy(), _float(df["budget_max"]).copy()
    bmin[(bmin < MIN_PRICE) | (bmin > MAX_PRICE)] = NAN
    bmax[(bmax < MIN_PRICE) | (bmax > MAX_PRICE)] = NAN
    text = _lookup(df["budget_range"], _budget_text, 3)
    field_clarity = np.array([_budget_fields(a, b) for a, b in zip(bmin, bmax, strict=True)])
    put("budget_low", np.where(fields_set, bmin, text[:, 0]))
    put("budget_high", np.where(fields_set, bmax, text[:, 1]))
    put("budget_clarity", np.where(fields_set, field_clarity, text[:, 2]))

    put(
        "timeline_months",
        _lookup(df["timeline"], lambda t: (_f(parse_timeline_months(t)),), 1)[:, 0],
    )
    loc = _lookup(df["location_preference"], _location, 2)
    put("loc_score", loc[:, 0])
    put("loc_terms", loc[:, 1])
    put(
        "n_property_criteria",
        _float(_present(df, "property_type") + df["bedrooms"].is_not_null().cast(pl.Int64)),
    )
    put("household_size", _float(df["household_size"]))
    put("school", _float(df["school_district_interest"]))
    put("bedrooms", _float(df["bedrooms"]))
    put("pre_approved", _float(df["pre_approved"]))
    put("financing", _lookup(df["financing"], lambda t: (_f(financing_readiness(t)),), 1)[:, 0])
    put("prev_tx", _float(df["previous_transactions"]))
    put("ftb", _float(df["first_time_buyer"]))
    contacts = _present(df, "name") + _present(df, "email") + _present(df, "phone")
    put("contact_count", _float(contacts))
    put("properties_viewed", _float(df["web_activity.properties_viewed"]))
    put("repeat_views", _float(df["web_activity.repeat_listing_views"]))
    put("saved_searches", _float(df["web_activity.saved_searches"]))
    put("favorites", _float(df["web_activity.favorites"]))
    uniques, index = _distinct_index(df["source"])
    normalised = [normalise_category(value) for value in uniques]
    return RawBatch(out, [normalised[i] for i in index])
