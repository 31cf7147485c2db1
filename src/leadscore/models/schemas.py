"""Request and response shapes of model administration."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from leadscore.core.schemas import _Strict


class PromoteRequest(_Strict):
    """Promote a version; `force` skips the gate and is recorded with the reason."""

    force: bool = False
    reason: str | None = Field(default=None, max_length=500)


class RollbackRequest(_Strict):
    """Roll back this team's own champion (`team: true`) or the global one (`false`); unset,
    the caller's own scope: the team's once it has had a champion of its own, else the global
    one for the operating team (LEADSCORE_GLOBAL_MODELS_TEAM), else the team's (refused)."""

    team: bool | None = None


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


class TrainingJob(BaseModel):
    """A training job of the caller's team: its state, and its challenger or its error."""

    job: str
    team_id: int
    state: Literal["running", "succeeded", "failed"]
    actor: str
    promote: bool
    started_at: str
    finished_at: str | None
    parent_version: str | None
    version: str | None = Field(description="the challenger it registered")
    promoted: bool | None
    error: str | None


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


#: The multipart body of `POST /models/train/export`, which the route streams to disk itself.
EXPORT_FORM: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "title": "TrainExportForm",
                    "type": "object",
                    "required": ["export"],
                    "properties": {
                        "export": {
                            "type": "string",
                            "contentMediaType": "application/octet-stream",
                            "description": "CRM export with outcomes: .csv/.parquet/.jsonl, "
                            "up to LEADSCORE_MAX_UPLOAD_BYTES",
                        },
                        "mapping": {
                            "type": "string",
                            "contentMediaType": "application/octet-stream",
                            "description": "YAML column mapping, UTF-8, up to 64 KiB",
                        },
                        "promote": {"type": "boolean", "default": False},
                    },
                }
            }
        },
    }
}
