"""The health report's shape."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


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
