"""Typed answers: the API's own wire models (pure pydantic, shared with the server), plus the
few shapes only the client builds (live events, a scored file)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from leadscore.auth.schemas import TokenResponse
from leadscore.outcomes.schemas import OutcomeResult, OutcomesResponse
from leadscore.qualification.schemas import Escalation, EscalationsPage
from leadscore.scoring.schemas import (
    BatchResponse,
    BatchSummary,
    HistoryEntry,
    HistoryResponse,
    LeadDetail,
    LeadError,
    LeadItem,
    LeadsResponse,
    ScoreResponse,
    StatsResponse,
)

__all__ = [
    "BatchResponse",
    "BatchSummary",
    "Escalation",
    "EscalationsPage",
    "FileResult",
    "HistoryEntry",
    "HistoryResponse",
    "LeadDetail",
    "LeadError",
    "LeadItem",
    "LeadsResponse",
    "LiveEvent",
    "OutcomeResult",
    "OutcomesResponse",
    "ScoreResponse",
    "StatsResponse",
    "TokenResponse",
]


class LiveEvent(BaseModel):
    """One server event of the live stream (`lead_scored`, `batch_processing`, …)."""

    event_type: str
    event_id: str | None = None
    timestamp: datetime | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class FileResult(BaseModel):
    """A file scored batch by batch: one result per row in file order (None where the row
    failed), each failure with its 0-based row index."""

    total: int
    succeeded: int
    failed: int
    results: list[ScoreResponse | None]
    errors: list[LeadError]
