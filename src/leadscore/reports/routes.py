"""Report routes: the leads list as a CSV or XLSX download, and the broker's PDF report."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime

from leadscore.core.http import ERROR_RESPONSES
from leadscore.deps import SECURED, PrincipalDep, ServicesDep, SessionDep
from leadscore.scoring.filters import LeadFilterDep, LeadSort

router = APIRouter(prefix="/api/v1/ml", tags=["reports"], responses=ERROR_RESPONSES)

_XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_DOWNLOAD: dict[str, Any] = {"content": {"text/csv": {}, _XLSX: {}}}


@router.get("/leads/export", openapi_extra=SECURED, responses={200: _DOWNLOAD})
async def export_leads(
    services: ServicesDep,
    principal: PrincipalDep,
    keep: LeadFilterDep,
    format: Annotated[Literal["csv", "xlsx"], Query(description="csv or xlsx")] = "csv",
    sort: Annotated[LeadSort, Query(description="descending, as the list")] = "score",
) -> StreamingResponse:
    """Every lead the list shows for these filters, in its order, streamed as CSV or XLSX."""
    download = await services.reports.export(principal, keep, sort, format)
    return StreamingResponse(
        download.body,
        media_type=download.media_type,
        headers={"Content-Disposition": f'attachment; filename="{download.filename}"',
                 "Cache-Control": "no-store"},
    )  # fmt: skip


@router.get(
    "/report.pdf", openapi_extra=SECURED,
    responses={200: {"content": {"application/pdf": {}}}},
)  # fmt: skip
async def broker_report(
    services: ServicesDep,
    session: SessionDep,
    principal: PrincipalDep,
    since: Annotated[
        AwareDatetime | None, Query(description="ISO 8601 with zone; default: 30 days ago")
    ] = None,
    paper: Annotated[Literal["a4", "letter"], Query(description="page size")] = "a4",
) -> Response:
    """The broker's report: pipeline, leads to call, conversion by band, scores, the
    qualification queue and model health, as a PDF."""
    body = await services.reports.report(session, principal, since, paper)
    filename = services.reports.report_name(principal)
    return Response(
        body,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{filename}"',
                 "Cache-Control": "no-store"},
    )  # fmt: skip
