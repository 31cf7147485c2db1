"""CRM routes: connections (admins), the webhooks CRMs post, the inbox and the outbox."""

from __future__ import annotations

from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, Body, Path, Query, Request, Response
from pydantic import Field

from leadscore.core.http import ERROR_RESPONSES, JSON
from leadscore.crm.schemas import (
    ConnectionCreated,
    ConnectionIn,
    ConnectionOut,
    ConnectionPatch,
    InboxEntry,
    OutboxEntry,
    WebhookAccepted,
)
from leadscore.deps import SECURED, AdminDep, ServicesDep, SessionDep, signed_by

# 409: the CRM account is connected already.
router = APIRouter(
    prefix="/api/v1/crm", tags=["crm"], responses=ERROR_RESPONSES | {409: ERROR_RESPONSES[404]}
)
ConnectionId = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.post(
    "/connections", status_code=201, response_model=ConnectionCreated, openapi_extra=SECURED
)
async def create_connection(
    body: ConnectionIn, services: ServicesDep, session: SessionDep, principal: AdminDep
) -> ConnectionCreated:
    """Connect a CRM account to your team (a generic webhook's secret is shown this once)."""
    return await services.crm.connections.create(session, principal, body)


@router.get("/connections", response_model=list[ConnectionOut], openapi_extra=SECURED)
async def list_connections(
    services: ServicesDep, session: SessionDep, principal: AdminDep
) -> list[ConnectionOut]:
    """Your team's CRM connections; secrets are never shown."""
    return await services.crm.connections.all(session, principal)


@router.get("/connections/{connection_id}", response_model=ConnectionOut, openapi_extra=SECURED)
async def get_connection(
    connection_id: ConnectionId, services: ServicesDep, session: SessionDep, principal: AdminDep
) -> ConnectionOut:
    """One of your team's CRM connections."""
    return await services.crm.connections.get(session, principal, connection_id)


@router.patch("/connections/{connection_id}", response_model=ConnectionOut,
              openapi_extra=SECURED)  # fmt: skip
async def update_connection(
    connection_id: ConnectionId,
    body: ConnectionPatch,
    services: ServicesDep,
    session: SessionDep,
    principal: AdminDep,
) -> ConnectionOut:
    """Change a connection's credentials, API base, write-back or field mapping."""
    return await services.crm.connections.update(session, principal, connection_id, body)


@router.delete("/connections/{connection_id}", status_code=204, openapi_extra=SECURED)
async def delete_connection(
    connection_id: ConnectionId, services: ServicesDep, session: SessionDep, principal: AdminDep
) -> Response:
    """Disconnect: its webhooks are refused from now on, its waiting write-backs dropped."""
    await services.crm.connections.delete(session, principal, connection_id)
    return Response(status_code=204)


@router.post(
    "/gohighlevel/webhook", response_model=WebhookAccepted,
    openapi_extra=signed_by("GoHighLevelSignature"),
)  # fmt: skip
async def gohighlevel_webhook(request: Request, services: ServicesDep) -> Response:
    """GoHighLevel's webhooks (x-wh-signature): stored before this answer, processed after."""
    answer = await services.crm.receiver.gohighlevel(request.headers, await request.body())
    return Response(orjson.dumps(answer), media_type=JSON)


@router.post(
    "/followupboss/webhook", response_model=WebhookAccepted,
    openapi_extra=signed_by("FollowUpBossSignature"),
)  # fmt: skip
async def followupboss_webhook(
    request: Request,
    services: ServicesDep,
    connection_id: Annotated[
        int | None,
        Query(ge=1, le=2**31 - 1, description="Which connection, when several share a key."),
    ] = None,
) -> Response:
    """Follow Up Boss's webhooks (FUB-Signature): stored before this answer, the people they
    name read from its API after."""
    answer = await services.crm.receiver.followupboss(
        request.headers, await request.body(), connection_id
    )
    return Response(orjson.dumps(answer), media_type=JSON)


@router.post(
    "/webhook/{connection_id}", response_model=WebhookAccepted,
    openapi_extra=signed_by("LeadScoreSignature"),
)  # fmt: skip
async def generic_webhook(
    connection_id: ConnectionId, request: Request, services: ServicesDep
) -> Response:
    """A lead in our schema from Zapier, Make or a custom CRM (X-LeadScore-Signature): stored
    before this answer, scored after."""
    answer = await services.crm.receiver.generic(
        connection_id, request.headers, await request.body()
    )
    return Response(orjson.dumps(answer), media_type=JSON)


@router.get("/inbox", response_model=list[InboxEntry], openapi_extra=SECURED)
async def list_inbox(
    services: ServicesDep,
    session: SessionDep,
    principal: AdminDep,
    status: Literal["pending", "done", "ignored", "rejected", "failed"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[InboxEntry]:
    """Your team's latest webhooks and how each was processed (rejected and failed ones too)."""
    return await services.crm.inbox(session, principal, status, limit)


@router.get("/outbox", response_model=list[OutboxEntry], openapi_extra=SECURED)
async def list_outbox(
    services: ServicesDep,
    session: SessionDep,
    principal: AdminDep,
    status: Literal["pending", "sent", "failed", "superseded", "cancelled"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[OutboxEntry]:
    """Your team's latest write-backs to its CRMs, and how each went."""
    return await services.crm.outbox(session, principal, status, limit)


@router.post("/outbox/retry", openapi_extra=SECURED)
async def retry_outbox(
    services: ServicesDep,
    session: SessionDep,
    principal: AdminDep,
    ids: Annotated[
        list[Annotated[int, Field(ge=1, le=2**63 - 1)]] | None, Body(embed=True, max_length=1000)
    ] = None,
) -> dict[str, int]:
    """Send failed write-backs again (these ids, or all of your team's), now."""
    return {"retried": await services.crm.retry(session, principal, ids)}
