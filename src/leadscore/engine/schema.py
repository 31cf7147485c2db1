"""The lead as data: the v1 contract's request shapes, validated strictly."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

LeadId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,100}$")]
ShortText = Annotated[str, StringConstraints(max_length=200, strip_whitespace=True)]
AttributeValue = str | int | float | bool | None


class _Strict(BaseModel):
    """Base for contract models: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", str_max_length=2000, frozen=True)


class Interaction(_Strict):
    """One touchpoint with the lead: an email reply, a call, a text, a showing request."""

    timestamp: AwareDatetime
    type: Annotated[str, StringConstraints(max_length=50, strip_whitespace=True)] = "other"
    response_time_hours: Annotated[float, Field(ge=0, le=24 * 365)] | None = None
    message_length: Annotated[int, Field(ge=0, le=100_000)] | None = None
    questions_asked: Annotated[int, Field(ge=0, le=1_000)] | None = None


class WebActivity(_Strict):
    """Behaviour on the team's IDX site or a portal, as a snapshot of counters."""

    sessions: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    page_views: Annotated[int, Field(ge=0, le=10_000_000)] | None = None
    properties_viewed: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    repeat_listing_views: Annotated[int, Field(ge=0, le=1_000_000)] | None = Field(
        default=None, description="Most views of any single listing."
    )
    saved_searches: Annotated[int, Field(ge=0, le=100_000)] | None = None
    favorites: Annotated[int, Field(ge=0, le=100_000)] | None = None
    time_on_site_minutes: Annotated[float, Field(ge=0, le=1_000_000)] | None = None


class LeadData(_Strict):
    """Everything known about a lead; every field is optional because CRMs are incomplete."""

    name: ShortText | None = None
    email: Annotated[str, StringConstraints(max_length=254, strip_whitespace=True)] | None = None
    phone: Annotated[str, StringConstraints(max_length=40, strip_whitespace=True)] | None = None
    source: Annotated[str, StringConstraints(max_length=60, strip_whitespace=True)] | None = None
    budget_range: ShortText | None = None
    budget_min: Annotated[float, Field(ge=0, le=1e10)] | None = None
    budget_max: Annotated[float, Field(ge=0, le=1e10)] | None = None
    location_preference: ShortText | None = None
    timeline: ShortText | None = None
    pre_approved: bool | None = None
    financing: Annotated[str, StringConstraints(max_length=60, strip_whitespace=True)] | None = None
    household_size: Annotated[int, Field(ge=1, le=30)] | None = None
    school_district_interest: bool | None = None
    previous_transactions: Annotated[int, Field(ge=0, le=1_000)] | None = None
    first_time_buyer: bool | None = None
    property_type: (
        Annotated[str, StringConstraints(max_length=60, strip_whitespace=True)] | None
    ) = None
    bedrooms: Annotated[int, Field(ge=0, le=50)] | None = None
    web_activity: WebActivity | None = None
    interaction_history: Annotated[list[Interaction], Field(max_length=1000)] = Field(
        default_factory=list
    )
    created_at: AwareDatetime | None = None
    attributes: Annotated[dict[str, AttributeValue], Field(max_length=100)] = Field(
        default_factory=dict
    )

    @model_validator(mode="after")
    def _budget_order(self) -> LeadData:
        """Refuse a budget whose minimum is above its maximum: it can only be a typo."""
        if (
            self.budget_min is not None
            and self.budget_max is not None
            and self.budget_min > self.budget_max
        ):
            raise ValueError("budget_min must not exceed budget_max")
        return self


class Lead(_Strict):
    """A lead to score: a stable id from the CRM and its data."""

    lead_id: LeadId
    lead_data: LeadData


def utc_timestamp_us(moment: datetime) -> int:
    """Microseconds since the epoch, exact, so every path measures time the same way."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
