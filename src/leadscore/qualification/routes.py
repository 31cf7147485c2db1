"""Qualification queue routes: parse, call one service function, return."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from leadscore.core.http import ERROR_RESPONSES, JSON
from leadscore.deps import SECURED, PrincipalDep, ServicesDep, SessionDep, WriterDep
from leadscore.qualification.schemas import (
    Escalation,
    EscalationsPage,
    Resolved,
    ResolveRequest,
    Status,
)

router = APIRouter(
    prefix="/api/v1/ml/escalations",
    tags=["qualification"],
    responses=ERROR_RESPONSES | {409: ERROR_RESPONSES[404]},
)
EscalationId = Annotated[int, Path(ge=1, le=2**63 - 1)]


@router.get("", response_model=EscalationsPage, openapi_extra=SECURED)
async def list_escalations(
    services: ServicesDep,
    session: SessionDep,
    principal: PrincipalDep,
    status: Annotated[Status | None, Query(description="default: open and claimed")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[
        str | None, Query(max_length=200, description="`next_cursor` of the previous page")
    ] = None,
) -> Response:
    """The team's qualification queue, oldest first, with the questions to ask each lead."""
    body = await services.qualification.list(session, principal, status, limit, cursor)
    return Response(body, media_type=JSON)


@router.post("/{escalation_id}/claim", response_model=Escalation, openapi_extra=SECURED)
async def claim(
    escalation_id: EscalationId, services: ServicesDep, session: SessionDep, principal: WriterDep
) -> Response:
    """Take an open escalation (409 when someone else has it or it is resolved)."""
    body = await services.qualification.claim(session, principal, escalation_id)
    return Response(body, media_type=JSON)


@router.post("/{escalation_id}/resolve", response_model=Resolved, openapi_extra=SECURED)
async def resolve(
    escalation_id: EscalationId,
    request: ResolveRequest,
    services: ServicesDep,
    session: SessionDep,
    principal: WriterDep,
) -> Response:
    """Resolve with the answers: the lead's data updated, the lead re-scored, the outcome
    (if any) recorded as a label."""
    body = await services.qualification.resolve(session, principal, escalation_id, request)
    return Response(body, media_type=JSON)
