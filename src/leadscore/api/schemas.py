"""Request and response shapes of the v1 HTTP contract, with the examples shown in /docs."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

__all__ = ["ScoreOptions"]

from pydantic import BaseModel, ConfigDict, Field

from leadscore.engine.schema import LeadData, LeadId
from leadscore.services.scoring import ScoreOptions

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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


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

    leads: list[dict[str, Any]] = Field(min_length=1, max_length=100)
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


class HistoryEntry(BaseModel):
    """One past score of a lead."""

    scored_at: datetime
    model_version: str
    ml_score: float
    classification: str
    cache_hit: bool
    reasons: list[ReasonOut] | None


class HistoryResponse(BaseModel):
    """A lead's scores, newest first."""

    lead_id: str
    scores: list[HistoryEntry]


class TokenRequest(_Strict):
    """Exchange an API key (here or in X-API-Key) for a short-lived JWT."""

    api_key: str | None = Field(default=None, max_length=200)


class TokenResponse(BaseModel):
    """A bearer token."""

    access_token: str
    token_type: Literal["bearer"]
    expires_in: int
    role: str
    team: str


class CheckOut(BaseModel):
    """One dependency check."""

    status: Literal["ok", "error"]
    latency_ms: float
    detail: str | None = None


class HealthResponse(BaseModel):
    """healthy / degraded (cache down) / unhealthy (model or database down)."""

    status: Literal["healthy", "degraded", "unhealthy"]
    checks: dict[str, CheckOut]
    model_version: str | None


class ErrorResponse(BaseModel):
    """Every error: a stable code and a human detail."""

    error: str
    detail: Any


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


class PromoteRequest(_Strict):
    """Promote a version; `force` skips the gate and is recorded with the reason."""

    force: bool = False
    reason: str | None = Field(default=None, max_length=500)


class RollbackRequest(_Strict):
    """Roll back the global champion, or with `team` this team's own champion."""

    team: bool = False


class TrialRequest(_Strict):
    """Start, change or end a champion/challenger trial on live traffic."""

    mode: Literal["shadow", "split", "off"]
    share: float = Field(
        default=0.1, gt=0.0, lt=1.0,
        description="split: the challenger's share of leads, chosen by lead_id hash",
    )  # fmt: skip
    team: bool = Field(default=False, description="the team's own trial (else the global one)")


class TrialState(BaseModel):
    """A scope's trial: which versions, which mode, since when and by whom."""

    scope: str
    mode: str
    share: float
    champion: str | None
    challenger: str | None
    started_at: str | None
    actor: str | None


class VersionQuality(BaseModel):
    """One version's quality on the compared leads."""

    version: str
    n: int
    auc: float | None = None
    brier: float | None = None
    log_loss: float | None = None
    ece: float | None = None
    positive_rate: float | None = None
    reliability: list[dict[str, float]] | None = None


class Comparison(BaseModel):
    """Champion and challenger on the same leads with outcomes."""

    team_id: int
    leads: int
    converted: int
    champion: VersionQuality
    challenger: VersionQuality
    scored_by_one_only: dict[str, int]
    auc_difference_ci: list[float] | None
    brier_difference_ci: list[float] | None
    challenger_not_worse: bool
    reason: str
    margins: dict[str, float]


class ModelChange(BaseModel):
    """One alias change, as the audit trail records it."""

    scope: str
    action: str
    from_version: str | None
    to_version: str
    forced: bool
    detail: dict[str, Any]
    actor: str
    at: str


class ModelSummary(BaseModel):
    """A registered version."""

    version: str
    team_id: int | None
    aliases: list[str]
    registered_at: str
    trained_at: str | None
    parent_version: str | None
    trained_by: str | None
    metrics: dict[str, Any] | None
    data_fingerprint: str | None
    feature_spec: str | None


class ModelDetail(ModelSummary):
    """A version with its whole card and its scope's alias history."""

    card: dict[str, Any]
    history: list[ModelChange]


class TrainRequest(_Strict):
    """Train the caller's team model on its outcomes; `promote` when the gate passes it."""

    promote: bool = False


class TrainStarted(BaseModel):
    """A training job began; `model_status` events report its progress and result."""

    job: str
    team_id: int
    status: Literal["started"]


class TrainResult(BaseModel):
    """A new challenger: its version, what it came from, its metrics and its gate report."""

    job: str
    team_id: int
    version: str
    parent_version: str
    leads: int
    metrics: dict[str, Any]
    gate: dict[str, Any]
    promoted: bool
