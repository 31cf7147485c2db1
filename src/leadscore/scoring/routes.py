"""Scoring routes: parse, call one service function, return."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import (
    APIRouter,
    Query,
    Request,
    Response,
)
from pydantic import AwareDatetime

from leadscore.core.http import ERROR_RESPONSES, JSON, IdempotencyKey, LeadIdPath, json_body
from leadscore.core.idempotency import Once
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
from leadscore.scoring.filters import LeadFilterDep, LeadSort
from leadscore.scoring.schemas import (
    UPLOAD_FORM,
    BatchRequest,
    BatchResponse,
    HistoryResponse,
    LeadDetail,
    LeadsResponse,
    ScoreRequest,
    ScoreResponse,
    StatsResponse,
    UploadAccepted,
)
from leadscore.scoring.upload import csv_name

router = APIRouter(prefix="/api/v1/ml", tags=["scoring"], responses=ERROR_RESPONSES)


@router.post(
    "/score", response_model=ScoreResponse, openapi_extra=json_body(ScoreRequest) | SECURED
)
async def score(
    request: Request,
    services: ServicesDep,
    principal: WriterDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Score one lead: probability, class, confidence, reasons, commission."""
    # Parsed straight from bytes by pydantic-core: the hottest route skips a JSON round trip.
    raw = await request.body()
    parsed = ScoreRequest.model_validate_json(raw)
    lead = Lead.model_construct(lead_id=parsed.lead_id, lead_data=parsed.lead_data)
    once = Once.of(idempotency_key, raw)
    body = await services.scoring.score(principal, lead, parsed.options, once)
    return Response(body, media_type=JSON)


@router.post("/batch-score", response_model=BatchResponse, openapi_extra=SECURED)
async def batch_score(
    request: BatchRequest,
    services: ServicesDep,
    principal: WriterDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Score up to 100 leads; results in input order, a bad lead fails alone."""
    once = Once.of(idempotency_key, request.model_dump_json().encode())
    body = await services.scoring.batch(principal, request.leads, request.options, once)
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
    cursor: Annotated[
        int | None, Query(ge=1, le=2**63 - 1, description="`next_cursor` of the previous page")
    ] = None,
) -> Response:
    """Every score of a lead with time, model version and top reasons, newest first."""
    body = await services.scoring.history(session, principal, lead_id, limit, cursor)
    return Response(body, media_type=JSON)


@router.get("/leads", response_model=LeadsResponse, openapi_extra=SECURED)
async def list_leads(
    services: ServicesDep,
    session: SessionDep,
    principal: PrincipalDep,
    keep: LeadFilterDep,
    sort: Annotated[
        LeadSort,
        Query(description="descending; ties by lead_id; leads without the value last"),
    ] = "score",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[
        str | None, Query(max_length=1000, description="`next_cursor` of the previous page")
    ] = None,
) -> Response:
    """The team's leads with their latest score, a page at a time."""
    body = await services.leads.list(session, principal, keep, sort, limit, cursor)
    return Response(body, media_type=JSON)


@router.get("/leads/{lead_id}", response_model=LeadDetail, openapi_extra=SECURED)
async def lead_detail(
    lead_id: LeadIdPath,
    services: ServicesDep,
    session: SessionDep,
    principal: PrincipalDep,
    history_limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> Response:
    """A lead's latest data and score, and its score history with the change of each."""
    body = await services.leads.detail(session, principal, lead_id, history_limit)
    return Response(body, media_type=JSON)


@router.get("/stats", response_model=StatsResponse, openapi_extra=SECURED)
async def stats(
    services: ServicesDep,
    session: SessionDep,
    principal: PrincipalDep,
    since: Annotated[AwareDatetime | None, Query(description="default: a day before until")] = None,
    until: Annotated[AwareDatetime | None, Query(description="default: now")] = None,
) -> Response:
    """The team's scores, spread, classes, calibration, pipeline and throughput over a window."""
    body = await services.stats.stats(session, principal, since, until)
    return Response(body, media_type=JSON)


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
