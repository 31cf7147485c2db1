"""Scoring routes: parse, call one service function, return."""

from __future__ import annotations

from typing import Annotated

from fastapi import (
    APIRouter,
    Query,
    Request,
    Response,
)

from leadscore.core.http import ERROR_RESPONSES, JSON, LeadIdPath, json_body
from leadscore.deps import (
    SECURED,
    PrincipalDep,
    ServicesDep,
    SessionDep,
    WriterDep,
)
from leadscore.engine.schema import Lead
from leadscore.scoring.schemas import (
    BatchRequest,
    BatchResponse,
    HistoryResponse,
    ScoreRequest,
    ScoreResponse,
)

router = APIRouter(prefix="/api/v1/ml", tags=["scoring"], responses=ERROR_RESPONSES)


@router.post(
    "/score", response_model=ScoreResponse, openapi_extra=json_body(ScoreRequest) | SECURED
)
async def score(request: Request, services: ServicesDep, principal: WriterDep) -> Response:
    """Score one lead: probability, class, confidence, reasons, commission."""
    # Parsed straight from bytes by pydantic-core: the hottest route skips a JSON round trip.
    parsed = ScoreRequest.model_validate_json(await request.body())
    lead = Lead.model_construct(lead_id=parsed.lead_id, lead_data=parsed.lead_data)
    body = await services.scoring.score(principal, lead, parsed.options)
    return Response(body, media_type=JSON)


@router.post("/batch-score", response_model=BatchResponse, openapi_extra=SECURED)
async def batch_score(
    request: BatchRequest, services: ServicesDep, principal: WriterDep
) -> Response:
    """Score up to 100 leads; results in input order, a bad lead fails alone."""
    body = await services.scoring.batch(principal, request.leads, request.options)
    return Response(body, media_type=JSON)


@router.get("/score/{lead_id}", response_model=ScoreResponse, openapi_extra=SECURED)
async def latest_score(
    lead_id: LeadIdPath, services: ServicesDep, session: SessionDep, principal: PrincipalDep
) -> Response:
    """The latest score of a lead for the caller's team."""
    return Response(await services.scoring.latest(session, principal, lead_id), media_type=JSON)


@router.get("/score/{lead_id}/history", response_model=HistoryResponse, openapi_extra=SECURED)
async def score_history(
    lead_id: LeadIdPath,
    services: ServicesDep,
    session: SessionDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """Every score of a lead with time, model version and top reasons, newest first."""
    return Response(
        await services.scoring.history(session, principal, lead_id, limit), media_type=JSON
    )
