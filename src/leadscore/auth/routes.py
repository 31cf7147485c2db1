"""Authentication routes: the token exchange, a team's keys and its settings."""

from __future__ import annotations

from typing import Annotated

from fastapi import (
    APIRouter,
    Body,
    Path,
    Security,
)

from leadscore.auth.schemas import (
    KeyCreate,
    KeyCreated,
    KeyOut,
    TeamSettingsOut,
    TeamSettingsPatch,
    TokenRequest,
    TokenResponse,
)
from leadscore.auth.service import AuthenticationError
from leadscore.core.http import ERROR_RESPONSES
from leadscore.deps import (
    SECURED,
    AdminDep,
    PrincipalDep,
    ServicesDep,
    SessionDep,
    api_key_header,
)

router = APIRouter(prefix="/api/v1/auth", tags=["auth"], responses=ERROR_RESPONSES)
teams_router = APIRouter(prefix="/api/v1/teams", tags=["teams"], responses=ERROR_RESPONSES)


@router.post("/token", response_model=TokenResponse)
async def token(
    services: ServicesDep,
    api_key: Annotated[str | None, Security(api_key_header)],
    request: Annotated[TokenRequest | None, Body()] = None,
) -> TokenResponse:
    """Exchange an API key (body `api_key` or header X-API-Key) for a short-lived JWT."""
    secret = (request.api_key if request else None) or api_key
    if not secret:
        raise AuthenticationError("send the API key as X-API-Key or in the body as api_key")
    principal = await services.auth.from_api_key(secret)
    access_token, ttl = services.auth.issue_token(principal)
    return TokenResponse(
        access_token=access_token,
        token_type="bearer",
        expires_in=ttl,
        role=principal.role,
        team=principal.team_name,
    )


@router.get("/keys", response_model=list[KeyOut], openapi_extra=SECURED)
async def list_keys(
    services: ServicesDep, session: SessionDep, principal: AdminDep
) -> list[KeyOut]:
    """Admins: their team's keys, revoked ones included (never a secret or its hash)."""
    return [key for _, key in await services.teams.list_keys(session, principal.team_id)]


@router.post("/keys", response_model=KeyCreated, status_code=201, openapi_extra=SECURED)
async def create_key(
    services: ServicesDep, session: SessionDep, principal: AdminDep, request: KeyCreate
) -> KeyCreated:
    """Admins: a new key of their team; its secret is in this answer only."""
    return await services.teams.create_key(session, principal.team_id, request.name, request.role)


@router.delete("/keys/{key_id}", response_model=KeyOut, openapi_extra=SECURED)
async def revoke_key(
    services: ServicesDep,
    session: SessionDep,
    principal: AdminDep,
    key_id: Annotated[int, Path(ge=1, le=2_147_483_647)],
) -> KeyOut:
    """Admins: revoke a key of their team and every token it issued (idempotent)."""
    return await services.teams.revoke_key(session, key_id, principal.team_id)


@teams_router.get("/me", response_model=TeamSettingsOut, openapi_extra=SECURED)
async def my_team(
    services: ServicesDep, session: SessionDep, principal: PrincipalDep
) -> TeamSettingsOut:
    """The caller's team settings; null means the server default."""
    return await services.teams.team_settings(session, principal.team_id)


@teams_router.patch("/me", response_model=TeamSettingsOut, openapi_extra=SECURED)
async def update_my_team(
    services: ServicesDep, session: SessionDep, principal: AdminDep, request: TeamSettingsPatch
) -> TeamSettingsOut:
    """Admins: change the fields sent (null resets one); applies within 30 s on every worker."""
    return await services.teams.update_team_settings(session, principal.team_id, request)
