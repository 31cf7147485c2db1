"""Scoring routes: parse, call one service function, return."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import (
    APIRouter,
    Query,
    Request,
    Response,
)

from leadscore.core.http import ERROR_RESPONSES, JSON, LeadIdPath, json_body
from leadscore.core.uploads import receive_form
from leadscore.deps import (
    SECURED,
    PrincipalDep,
    ServicesDep,
    SessionDep,
    WriterDep,
)
from leadscore.engine.mapping import MAX_MAPPING_BYTES
from leadscore.engine.schema import Lead
from leadscore.scoring.schemas import (
    UPLOAD_FORM,
    BatchRequest,
    BatchResponse,
    HistoryResponse,
    ScoreRequest,
    ScoreResponse,
    UploadAccepted,
)
from leadscore.scoring.upload import csv_name

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


@router.post(
    "/leads/upload", status_code=202, response_model=UploadAccepted,
    openapi_extra=SECURED | UPLOAD_FORM,
)  # fmt: skip
async def upload_leads(
    request: Request, services: ServicesDep, session: SessionDep, principal: WriterDep
) -> dict[str, Any]:
    """Score a CSV of leads (multipart `file`, optional `mapping`) in the background: checked
    before the 202, then scored in chunks with `batch_processing` events for its `batch_id`."""
    async with receive_form(
        request, services.uploads.directory, to_disk={"file": csv_name},
        in_memory={"mapping": MAX_MAPPING_BYTES},
    ) as form:  # fmt: skip
        upload = form.file("file")
        return await services.uploads.start_upload(
            session, principal, upload.path, upload.filename, form.data("mapping")
        )
