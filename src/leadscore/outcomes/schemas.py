"""Response shapes of recorded outcomes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class OutcomeResult(BaseModel):
    """What happened to one submitted outcome."""

    lead_id: str
    outcome: Literal["converted", "closed", "lost"]
    status: Literal["recorded", "unchanged"]


class OutcomesResponse(BaseModel):
    """Outcomes stored by this request (committed before the reply) and repeats ignored."""

    recorded: int
    unchanged: int
    results: list[OutcomeResult]
