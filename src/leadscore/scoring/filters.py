"""The leads list's filter parameters, parsed once for the list and for its export."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, Query
from pydantic import AwareDatetime

from leadscore.scoring.repository import LeadFilter

LeadSort = Literal["score", "expected_commission", "scored_at", "change"]


def lead_filter(
    classification: Literal["hot", "warm", "cold"] | None = None,
    qualification: Literal["needed", "not_needed"] | None = None,
    min_score: Annotated[float | None, Query(ge=0, le=100)] = None,
    source: Annotated[str | None, Query(max_length=60, description="case-insensitive")] = None,
    scored_since: Annotated[AwareDatetime | None, Query(description="ISO 8601 with zone")] = None,
    q: Annotated[
        str | None, Query(min_length=1, max_length=254, description="in the name or email")
    ] = None,
) -> LeadFilter:
    """Which leads the list (and an export of it) keeps."""
    return LeadFilter(
        classification=classification,
        qualification_needed=None if qualification is None else qualification == "needed",
        min_score=min_score,
        source=source,
        scored_since=scored_since,
        q=q,
    )


LeadFilterDep = Annotated[LeadFilter, Depends(lead_filter)]
