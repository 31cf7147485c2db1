"""The health report's shape."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class CheckOut(BaseModel):
    """One dependency check."""

    status: Literal["ok", "error"]
    latency_ms: float
    detail: str | None = None


class HealthResponse(BaseModel):
    """healthy / degraded (cache down) / unhealthy (model or database down: a 503 whose
    `error` and `detail` are those of every other route's 503, so one client check fits all)."""

    status: Literal["healthy", "degraded", "unhealthy"]
    checks: dict[str, CheckOut]
    model_version: str | None
    error: Literal["database_unavailable", "model_unavailable"] | None = Field(
        default=None, description="Only when unhealthy: which essential dependency failed."
    )
    detail: str | None = Field(default=None, description="Only when unhealthy.")
