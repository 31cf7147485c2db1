"""The live-events WebSocket and its admin figures."""

from __future__ import annotations

from typing import Any

from fastapi import (
    APIRouter,
    WebSocket,
)

from leadscore.auth.service import AuthenticationError
from leadscore.core.db import CONNECTION_ERRORS, is_connection_error
from leadscore.core.errors import DATABASE_DOWN, RateLimitedError
from leadscore.core.http import ERROR_RESPONSES
from leadscore.core.logs import DependencyLog
from leadscore.deps import (
    SECURED,
    AdminDep,
    Services,
    ServicesDep,
    authenticate_credentials,
    websocket_credentials,
)
from leadscore.live.protocol import CLOSE_TRY_AGAIN
from leadscore.live.stats import merge_metrics

router = APIRouter(prefix="/api/v1/ml/ws", tags=["live events"], responses=ERROR_RESPONSES)


@router.websocket("/live-scores")
async def live_scores(websocket: WebSocket) -> None:
    """Live events for the caller's team; credentials are checked before anything is sent."""
    services: Services = websocket.app.state.services
    token, api_key, subprotocol = websocket_credentials(websocket)
    try:
        principal = await authenticate_credentials(services, token, api_key)
    except (AuthenticationError, RateLimitedError) as exc:
        await services.hub.refuse(websocket, str(exc), subprotocol)
        return
    except CONNECTION_ERRORS as exc:
        # A key not in the cache needs the database: while it is down, "try again later"
        # (browsers see close codes, not a refused handshake's status), counted in its outage.
        if not is_connection_error(exc):
            raise
        database_log: DependencyLog = websocket.app.state.database_log
        database_log.down(f"{type(exc).__name__}: {str(exc)[:200]}")
        await services.hub.refuse(websocket, DATABASE_DOWN, subprotocol, code=CLOSE_TRY_AGAIN)
        return
    await services.hub.serve(websocket, principal, subprotocol)


@router.get("/metrics", openapi_extra=SECURED)
async def live_metrics(services: ServicesDep, principal: AdminDep) -> dict[str, Any]:
    """Admins: connections, messages in/out, drops, fan-out latency, subscriptions per event."""
    workers = await services.hub.cluster()
    return merge_metrics([w["metrics"] for w in workers])


@router.get("/connections", openapi_extra=SECURED)
async def live_connections(services: ServicesDep, principal: AdminDep) -> dict[str, Any]:
    """Admins: their team's live connections on every worker, with subscriptions and queue."""
    connections = [
        c
        for w in await services.hub.cluster()
        for c in w["connections"]
        if c["team_id"] == principal.team_id
    ]
    return {"count": len(connections), "connections": connections}
