"""What routes receive: the wired services and the authenticated caller."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Request, WebSocket
from fastapi.security import APIKeyHeader
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from leadscore.auth.principal import Principal
from leadscore.auth.service import AuthenticationError, Authenticator, TeamAdmin, require_role
from leadscore.core.bus import EventBus
from leadscore.core.cache import Cache
from leadscore.core.config import ServiceSettings
from leadscore.core.db import transaction
from leadscore.core.errors import RateLimitedError
from leadscore.core.logs import DependencyLog, annotate
from leadscore.core.metrics import Metrics
from leadscore.core.ratelimit import RateLimiter, RateLimitUnavailableError
from leadscore.core.writer import ScoreWriter
from leadscore.crm.service import CrmService
from leadscore.live.events import EventPublisher
from leadscore.live.hub import LiveHub
from leadscore.models.admin import ModelAdmin
from leadscore.models.drift import DriftService
from leadscore.models.holder import ModelHolder
from leadscore.models.registry import Registry
from leadscore.models.shadow import ShadowScorer
from leadscore.models.training import RetrainService
from leadscore.models.watcher import ModelWatcher
from leadscore.outcomes.service import OutcomeService
from leadscore.qualification.llm import LLMQualifier
from leadscore.qualification.service import QualificationService
from leadscore.reports.service import ReportService
from leadscore.scoring.leads import LeadsService
from leadscore.scoring.repository import ScoreRecord
from leadscore.scoring.service import ScoringService
from leadscore.scoring.stats import StatsService
from leadscore.scoring.upload import LeadUploads

log = logging.getLogger(__name__)


@dataclass
class Services:
    """Everything the lifespan builds and closes; one per worker process."""

    settings: ServiceSettings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    cache: Cache
    limiter: RateLimiter
    models: ModelHolder
    writer: ScoreWriter[ScoreRecord]
    shadow: ShadowScorer
    metrics: Metrics
    scoring: ScoringService
    leads: LeadsService
    stats: StatsService
    outcomes: OutcomeService
    auth: Authenticator
    teams: TeamAdmin
    bus: EventBus
    events: EventPublisher
    hub: LiveHub
    started_at: datetime
    registry: Registry
    watcher: ModelWatcher
    model_admin: ModelAdmin
    training: RetrainService
    drift: DriftService
    uploads: LeadUploads
    crm: CrmService
    qualification: QualificationService
    reports: ReportService
    limiter_log: DependencyLog = field(
        default_factory=lambda: DependencyLog(log, "redis (rate limiter, failing open)")
    )
    qualifier: LLMQualifier | None = None  # only with LEADSCORE_ANTHROPIC_API_KEY


async def get_services(request: Request) -> Services:
    """The services of the app serving this request (async: FastAPI would thread a sync one)."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def request_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's one unit of work, committed when the route returns and before the reply
    is sent (a commit that fails answers an error, never a 200), rolled back if it raises."""
    services: Services = request.app.state.services
    async with transaction(services.sessions) as session:
        yield session


# scope="function": the commit runs before the response starts, not after it was sent.
SessionDep = Annotated[AsyncSession, Depends(request_session, scope="function")]
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="A team API key.")
# Documented in the OpenAPI schema (`api.app`); read by `authenticate` without FastAPI's
# security dependencies, which cost more per request than the whole lookup.
SECURITY_SCHEMES: dict[str, dict[str, str]] = {
    "APIKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                     "description": "A team API key."},
    "HTTPBearer": {"type": "http", "scheme": "bearer",
                   "description": "A JWT from POST /api/v1/auth/token."},
}  # fmt: skip
# The OpenAPI `security` of every route that takes a principal dependency.
SECURED: dict[str, Any] = {"security": [{name: []} for name in SECURITY_SCHEMES]}
# CRM webhooks carry no key: each is signed, with its provider's header.
WEBHOOK_SCHEMES: dict[str, dict[str, str]] = {
    "GoHighLevelSignature": {"type": "apiKey", "in": "header", "name": "x-wh-signature",
                             "description": "RSA-SHA256 of the body by GoHighLevel's key."},
    "FollowUpBossSignature": {"type": "apiKey", "in": "header", "name": "FUB-Signature",
                              "description": "HMAC-SHA256 (hex) keyed with the system key."},
    "LeadScoreSignature": {"type": "apiKey", "in": "header", "name": "X-LeadScore-Signature",
                           "description": "HMAC-SHA256 (hex) of the body with the "
                           "connection's signing secret."},
}  # fmt: skip


def signed_by(scheme: str) -> dict[str, Any]:
    """The OpenAPI `security` of a webhook signed with this scheme."""
    assert scheme in WEBHOOK_SCHEMES
    return {"security": [{scheme: []}]}


def _bearer_token(authorization: str | None) -> str | None:
    """The credentials of an `Authorization: Bearer ...` header; other schemes are ignored."""
    if not authorization:
        return None
    scheme, _, credentials = authorization.partition(" ")
    credentials = credentials.strip()
    return credentials if scheme.lower() == "bearer" and credentials else None


async def authenticate(request: Request) -> Principal:
    """Authenticate an HTTP request by its headers, then count it against the rate limit."""
    headers = request.headers
    return await authenticate_credentials(
        request.app.state.services,
        _bearer_token(headers.get("authorization")),
        headers.get("x-api-key"),
    )


def websocket_credentials(websocket: WebSocket) -> tuple[str | None, str | None, str | None]:
    """Bearer token, API key and the subprotocol to accept, from a WebSocket handshake.

    Browsers cannot set headers on a WebSocket, so the token may also come as the offered
    subprotocols `["bearer", "<token>"]` (the server then accepts `bearer`) or as `?token=`.
    """
    headers = websocket.headers
    token = _bearer_token(headers.get("authorization"))
    offered = [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",") if p]
    subprotocol = None
    if "bearer" in offered:
        subprotocol = "bearer"
        position = offered.index("bearer")
        if token is None and position + 1 < len(offered):
            token = offered[position + 1]
    token = token or websocket.query_params.get("token") or None
    return token, headers.get("x-api-key"), subprotocol


async def authenticate_credentials(
    services: Services, bearer: str | None, api_key: str | None
) -> Principal:
    """Authenticate a bearer token or an API key, then count it against the key's limit."""
    if bearer is not None:
        principal = await services.auth.from_token(bearer)
    elif api_key:
        principal = await services.auth.from_api_key(api_key)
    else:
        raise AuthenticationError("send an X-API-Key header or an Authorization: Bearer token")
    annotate(team=principal.team_id)  # the access line and every later line name the team
    try:
        decision = await services.limiter.hit(
            f"key:{principal.key_id}", services.settings.rate_limit_per_minute, 60.0
        )
    except RateLimitUnavailableError as exc:
        # Failing open: an outage of the limiter's Redis must not stop scoring; health shows it.
        services.limiter_log.down(str(exc)[:200])
        return principal
    services.limiter_log.up()
    if not decision.allowed:
        raise RateLimitedError(decision.retry_after_seconds)
    return principal


async def get_writer_principal(request: Request) -> Principal:
    """Scoring writes history: agents and admins only."""
    return require_role(await authenticate(request), "admin", "agent")


async def get_admin_principal(request: Request) -> Principal:
    """Administration: admins only."""
    return require_role(await authenticate(request), "admin")


# Any role of any team: reads are filtered to the caller's team downstream.
PrincipalDep = Annotated[Principal, Depends(authenticate)]
WriterDep = Annotated[Principal, Depends(get_writer_principal)]
AdminDep = Annotated[Principal, Depends(get_admin_principal)]
