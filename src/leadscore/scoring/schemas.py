"""Request and response shapes of scoring, with the examples shown in /docs.

Pure pydantic on purpose: the Python client (`leadscore.client`) parses answers with these
models, so nothing here may import the engine's numeric stack or the server.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from leadscore.core.schemas import _Strict
from leadscore.engine.schema import LeadData, LeadId

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


class ScoreOptions(BaseModel):
    """What to include in a score, and whether to bypass the cache."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    return_feature_importance: bool = True
    calculate_commission: bool = True
    force_refresh: bool = False


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
    """A lead's scores, newest first; `next_cursor` fetches the next page (null on the last)."""

    lead_id: str
    scores: list[HistoryEntry]
    next_cursor: str | None = None


class TopQuestion(BaseModel):
    """The first question to ask the lead (the first of `qualification.ask_next`)."""

    field: str
    question: str


class ListReason(BaseModel):
    """One of a lead's top two reasons, with whatever else its score stored (feature, group)."""

    model_config = ConfigDict(extra="allow")

    text: str
    points: float


class LeadItem(BaseModel):
    """A lead of the list with its latest score."""

    lead_id: str
    name: str | None
    email: str | None
    source: str | None
    ml_score: float
    classification: Literal["hot", "warm", "cold"]
    ml_confidence: float
    qualification_needed: bool
    top_question: TopQuestion | None
    reasons: list[ListReason] = Field(max_length=2, description="the top two, biggest first")
    expected_commission: float | None
    change_points: float | None = Field(
        description="points since the previous score; null for a lead scored once"
    )
    scored_at: datetime
    model_version: str


class LeadsResponse(BaseModel):
    """One page of the team's leads; `next_cursor` fetches the next (null on the last page)."""

    leads: list[LeadItem]
    next_cursor: str | None


class LeadDetail(BaseModel):
    """A lead: its latest data, its latest score and its history, newest first."""

    lead_id: str
    lead_data: dict[str, Any]
    first_seen_at: datetime
    updated_at: datetime
    latest: ScoreResponse
    history: list[HistoryEntry]


class Bin(BaseModel):
    """Scores in [lower, upper) (the top bin includes 100)."""

    lower: int
    upper: int
    count: int


class ClassCounts(BaseModel):
    """Counts per class."""

    hot: int
    warm: int
    cold: int


class CalibrationBand(BaseModel):
    """Leads with an outcome whose latest score is in [lower, upper): predicted vs actual."""

    lower: int
    upper: int
    leads: int
    expected: float = Field(description="mean predicted probability (ml_score / 100)")
    actual: float = Field(description="share converted (a `converted` or `closed` outcome)")


class Pipeline(BaseModel):
    """Sum of the expected commission of the team's leads, by their latest class."""

    hot: float
    warm: float
    cold: float


class Latency(BaseModel):
    """Scoring latency percentiles in ms (null before any score)."""

    p50: float | None
    p95: float | None
    p99: float | None


class MinuteCount(BaseModel):
    """Scores in the bucket starting at `minute`."""

    minute: datetime
    count: int


class StatsResponse(BaseModel):
    """A team's figures: window counts from the score history, calibration and pipeline over
    all its leads (by their latest score), latency and cache hits as GET /metrics/performance."""

    since: datetime
    until: datetime
    scores: int = Field(description="scores in [since, until)")
    score_distribution: list[Bin] = Field(min_length=10, max_length=10)
    classes: ClassCounts
    conversion_by_band: list[CalibrationBand] = Field(
        description="bands with at least one lead that has an outcome"
    )
    commission_pipeline: Pipeline
    latency_ms: Latency = Field(description="since the servers started, as /metrics/performance")
    cache_hit_rate: float | None = Field(description="since the servers started")
    qualification_rate: float | None = Field(
        description="share of the window's scores with qualification needed; null without scores"
    )
    bucket_seconds: int = Field(description="60, or coarser so that at most 1440 points")
    scores_per_minute: list[MinuteCount] = Field(max_length=1440)


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
