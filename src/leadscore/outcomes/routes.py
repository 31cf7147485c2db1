"""Outcome routes: parse, call the service, return."""

from __future__ import annotations

from typing import Any

from fastapi import (
    APIRouter,
    Request,
    Response,
)

from leadscore.core.http import ERROR_RESPONSES, JSON, IdempotencyKey
from leadscore.core.idempotency import Once
from leadscore.core.schemas import ErrorResponse
from leadscore.deps import (
    SECURED,
    ServicesDep,
    SessionDep,
    WriterDep,
)
from leadscore.outcomes.schemas import OutcomesResponse
from leadscore.outcomes.service import MAX_OUTCOMES, parse_outcomes

router = APIRouter(prefix="/api/v1/ml", tags=["scoring"], responses=ERROR_RESPONSES)


OUTCOMES_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {JSON: {"schema": {"oneOf": [
            {"$ref": "#/components/schemas/OutcomeIn"},
            {"type": "array", "items": {"$ref": "#/components/schemas/OutcomeIn"},
             "minItems": 1, "maxItems": MAX_OUTCOMES},
        ]}, "example": {"lead_id": "lead_12345", "outcome": "closed",
                        "occurred_at": "2026-11-02T16:00:00Z", "sale_price": 612000}}},
    }
}  # fmt: skip


@router.post(
    "/outcomes",
    response_model=OutcomesResponse,
    responses={409: {"model": ErrorResponse}},
    openapi_extra=OUTCOMES_BODY | SECURED,
)
async def post_outcomes(
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    principal: WriterDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Record what happened to scored leads (one or a list): all or nothing, repeats ignored."""
    raw = await request.body()
    items = parse_outcomes(raw)
    once = Once.of(idempotency_key, raw)
    body = await services.outcomes.record(session, principal, items, once)
    return Response(body, media_type=JSON)
