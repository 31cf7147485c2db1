"""Health, performance figures and the Prometheus exposition."""

from __future__ import annotations

from typing import Any

from fastapi import (
    APIRouter,
    Response,
)
from fastapi.responses import JSONResponse

from leadscore.core.errors import DatabaseUnavailableError
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
UNHEALTHY = (
    "Unhealthy (the model or the database is down): the report, with `error` (as on every "
    "other route's 503: `database_unavailable` when the database is the cause) and `detail`, "
    "and a Retry-After header"
)


@router.get(
    "/health",
    response_model=HealthResponse,
    responses={503: {"model": HealthResponse, "description": UNHEALTHY}},
)
async def get_health(services: ServicesDep) -> JSONResponse:
    """Public: model, database and cache checked for real, with timeouts."""
    report, ok = await health(
        services.models, services.sessions, services.cache, services.settings.health_timeout_seconds
    )
    if ok:
        return JSONResponse(report)
    # Retry-After as on every other 503: monitors and clients back off the same way.
    retry = DatabaseUnavailableError(report["detail"]).headers()
    return JSONResponse(report, status_code=503, headers=retry)


@router.get("/metrics/performance", openapi_extra=SECURED)
async def performance(services: ServicesDep, principal: PrincipalDep) -> dict[str, Any]:
    """The caller's team's latency percentiles, share under target, cache hit and escalation
    rates, classes (since the servers started)."""
    return services.metrics.summary(principal.team_id)


@root_router.get("/metrics", response_class=Response)
async def prometheus(services: ServicesDep) -> Response:
    """Prometheus text exposition, summed over all workers."""
    exposition = await services.metrics.exposition()
    return Response(exposition, media_type="text/plain; version=0.0.4")
