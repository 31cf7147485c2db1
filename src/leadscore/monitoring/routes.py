"""Health, performance figures and the Prometheus exposition."""

from __future__ import annotations

from typing import Any

from fastapi import (
    APIRouter,
    Response,
)
from fastapi.responses import JSONResponse

from leadscore.core.http import ERROR_RESPONSES
from leadscore.deps import (
    SECURED,
    PrincipalDep,
    ServicesDep,
)
from leadscore.monitoring.schemas import HealthResponse
from leadscore.monitoring.service import health

router = APIRouter(prefix="/api/v1/ml", tags=["scoring"], responses=ERROR_RESPONSES)
root_router = APIRouter(tags=["monitoring"])


@router.get("/health", response_model=HealthResponse, responses={503: {"model": HealthResponse}})
async def get_health(services: ServicesDep) -> JSONResponse:
    """Public: model, database and cache checked for real, with timeouts."""
    report, ok = await health(
        services.models, services.sessions, services.cache, services.settings.health_timeout_seconds
    )
    return JSONResponse(report, status_code=200 if ok else 503)


@router.get("/metrics/performance", openapi_extra=SECURED)
async def performance(services: ServicesDep, principal: PrincipalDep) -> dict[str, Any]:
    """The caller's team's latency percentiles, share under target, cache hit and escalation
    rates, classes (since the servers started)."""
    return services.metrics.summary(principal.team_id)


@root_router.get("/metrics", response_class=Response)
async def prometheus(services: ServicesDep) -> Response:
    """Prometheus text exposition, summed over all workers."""
    return Response(services.metrics.exposition(), media_type="text/plain; version=0.0.4")
