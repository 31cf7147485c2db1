"""Authentication routes: the token exchange."""

from __future__ import annotations

from typing import Annotated

from fastapi import (
    APIRouter,
    Body,
    Security,
)

from leadscore.auth.schemas import TokenRequest, TokenResponse
from leadscore.auth.service import AuthenticationError
from leadscore.core.http import ERROR_RESPONSES
from leadscore.deps import (
    ServicesDep,
    api_key_header,
)

router = APIRouter(prefix="/api/v1/auth", tags=["auth"], responses=ERROR_RESPONSES)


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
