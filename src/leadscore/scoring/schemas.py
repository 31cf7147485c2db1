"""Request and response shapes of scoring, with the examples shown in /docs."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from leadscore.core.schemas import _Strict
from leadscore.engine.schema import LeadData, LeadId
from leadscore.scoring.service import ScoreOptions

EXAMPLE_LEAD: dict[str, Any] = {
    "lead_id": "lead_12345",
    "lead_data": {
        "name": "Sarah Chen",
        "email": "sarah.chen@example.com",
        "phone": "+1-555-0123",
        "source": "zillow",
        "budget_range": "500k-750k",
        "location_preference": "Downtown Austin",
        "timeline": "3-6 months",
        "pre_approved": True,
        "interaction_history": [
            {
                "timestamp": "2026-01-24T10:30:00Z",
                "type": "email_response",
                "response_time_hours": 2.5,
                "message_length": 156,
                "questions_asked": 3,
            }
        ],
    },
    "options": {
        "return_feature_importance": True,
        "calculate_commission": True,
        "force_refresh": False,
    },
}


class ScoreRequest(_Strict):
    """POST /score body."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE_LEAD]})

    lead_id: LeadId
    lead_data: LeadData
    options: ScoreOptions = Field(default_factory=ScoreOptions)


class BatchRequest(_Strict):
    """POST /batch-score body: each lead is validated on its own, so one bad lead fails alone."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "leads": [{k: v for k, v in EXAMPLE_LEAD.items() if k != "options"}],
                    "options": {"return_feature_importance": True},
                }
            ]
        },
    )

    # Any item: one that is not even an object fails alone, like any other invalid lead.
    leads: list[Any] = Field(min_length=1, max_length=100)
    options: ScoreOptions = Field(default_factory=ScoreOptions)


class Probabilities(BaseModel):
    """Calibrated probabilities; null where the model has no such head."""

    conversion: float
    closing: float | None
    timeline_accuracy: float | None


class CommissionOut(BaseModel):
    """The commission estimate; null fields when the budget gives no price."""

    estimated_commission: float | None
    commission_rate: float
    estimated_sale_price: float | None
    expected_commission: float | None


class ReasonOut(BaseModel):
    """One signed contribution in score points, with its sentence."""

    feature: str
    group: str
    value: float | None
    points: float
    text: str


class QuestionOut(BaseModel):
    """A missing fact to ask the lead about, and its score under either answer."""

    field: str
    question: str
    score_if_yes: float
    score_if_no: float


class QualificationOut(BaseModel):
    """Whether to qualify the lead before trusting its score; why; what to ask first."""

    needed: bool = Field(description="= escalation_recommended")
    reasons: list[Literal["low_confidence", "thin_data"]]
    ask_next: list[QuestionOut] = Field(max_length=3)


class ScoreResponse(BaseModel):
    """The v1 score response."""

    success: Literal[True]
    lead_id: str
    ml_score: float
    ml_confidence: float
    classification: Literal["hot", "warm", "cold"]
    probability_ranges: Probabilities
    feature_importance: dict[str, float] | None
    reasons: list[ReasonOut] | None
    group_contributions: dict[str, float] | None
    commission: CommissionOut | None
    evidence: float = Field(ge=0, le=1, description="share of what the model uses that is known")
    qualification: QualificationOut
    escalation_recommended: bool
    cache_hit: bool
    model_version: str
    scored_at: datetime
    processing_time_ms: float


class LeadError(BaseModel):
    """Why one lead of a batch was not scored."""

    index: int
    lead_id: str | None
    error: str
    detail: Any


class BatchSummary(BaseModel):
    """Counts per class and mean score of the scored leads."""

    hot: int
    warm: int
    cold: int
    mean_score: float | None


class BatchResponse(BaseModel):
    """The batch result: per-lead results in input order (null where that lead failed)."""

    success: bool
    batch_id: str
    total: int
    succeeded: int
    failed: int
    results: list[ScoreResponse | None]
    errors: list[LeadError]
    summary: BatchSummary
    processing_time_ms: float


class ChangePart(BaseModel):
    """One reason group's share of a score change."""

    group: str
    points: float
    text: str | None


class ScoreChange(BaseModel):
    """Why a score moved since the lead's previous score."""

    points: float
    from_score: float
    since: datetime | None
    model_changed: bool
    top: list[ChangePart]
    summary: str = Field(examples=["+14.0: Pre-approved for a mortgage"])


class HistoryEntry(BaseModel):
    """One past score of a lead."""

    scored_at: datetime
    model_version: str
    ml_score: float
    classification: str
    cache_hit: bool
    reasons: list[ReasonOut] | None
    change: ScoreChange | None = Field(description="since the previous score; null for the first")


class HistoryResponse(BaseModel):
    """A lead's scores, newest first."""

    lead_id: str
    scores: list[HistoryEntry]


class UploadAccepted(BaseModel):
    """A lead CSV read and checked: it is scored in the background; follow its
    `batch_processing` events by `batch_id`."""

    batch_id: str
    total: int = Field(description="rows read; each ends succeeded or failed")
    status: Literal["accepted"]


# The multipart body of `POST /leads/upload`, parsed by the route itself.
UPLOAD_FORM: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "title": "LeadUploadForm",
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "contentMediaType": "text/csv",
                            "description": "CSV of leads (lead_id and lead fields), up to "
                            "LEADSCORE_MAX_LEADS_UPLOAD_BYTES (20 MiB) and "
                            "LEADSCORE_MAX_LEADS_UPLOAD_ROWS (10,000)",
                        },
                        "mapping": {
                            "type": "string",
                            "contentMediaType": "application/octet-stream",
                            "description": "YAML column mapping (the team's CRM mapping), "
                            "UTF-8, up to 64 KiB",
                        },
                    },
                }
            }
        },
    }
}
