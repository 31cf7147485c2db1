"""The flat, columnar form of leads used by files, training and batch features."""

from __future__ import annotations

from typing import Final

import polars as pl

UTC_US: Final = pl.Datetime("us", "UTC")

INTERACTION_DTYPE: Final = pl.Struct(
    {
        "timestamp": UTC_US,
        "type": pl.String,
        "response_time_hours": pl.Float64,
        "message_length": pl.Int64,
        "questions_asked": pl.Int64,
    }
)

WEB_FIELDS: Final[dict[str, pl.DataType]] = {
    "sessions": pl.Int64(),
    "page_views": pl.Int64(),
    "properties_viewed": pl.Int64(),
    "repeat_listing_views": pl.Int64(),
    "saved_searches": pl.Int64(),
    "favorites": pl.Int64(),
    "time_on_site_minutes": pl.Float64(),
}

#: Canonical lead columns: lead_data's scalar fields, web_activity flattened with dotted names,
#: the interaction list, and the optional as-of instant features are computed at.
LEAD_COLUMNS: Final[dict[str, pl.DataType]] = {
    "lead_id": pl.String(),
    "name": pl.String(),
    "email": pl.String(),
    "phone": pl.String(),
    "source": pl.String(),
    "budget_range": pl.String(),
    "budget_min": pl.Float64(),
    "budget_max": pl.Float64(),
    "location_preference": pl.String(),
    "timeline": pl.String(),
    "pre_approved": pl.Boolean(),
    "financing": pl.String(),
    "household_size": pl.Int64(),
    "school_district_interest": pl.Boolean(),
    "previous_transactions": pl.Int64(),
    "first_time_buyer": pl.Boolean(),
    "property_type": pl.String(),
    "bedrooms": pl.Int64(),
    **{f"web_activity.{name}": dtype for name, dtype in WEB_FIELDS.items()},
    "interaction_history": pl.List(INTERACTION_DTYPE),
    "created_at": UTC_US,
    "as_of": UTC_US,
}

#: Outcome columns written by the generator and read by training.
OUTCOME_COLUMNS: Final[dict[str, pl.DataType]] = {
    "converted": pl.Boolean(),
    "closed": pl.Boolean(),
    "closed_within_timeline": pl.Boolean(),
    "sale_price": pl.Float64(),
    "days_to_close": pl.Float64(),
}

#: The generator's true probabilities, kept so tests can compare a model with the oracle.
ORACLE_COLUMNS: Final[dict[str, pl.DataType]] = {
    "p_conversion": pl.Float64(),
    "p_closing": pl.Float64(),
    "p_timeline": pl.Float64(),
}

ATTRIBUTE_PREFIX: Final = "attributes."
