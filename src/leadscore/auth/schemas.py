"""Request and response shapes of the token exchange."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from leadscore.core.schemas import _Strict


class TokenRequest(_Strict):
    """Exchange an API key (here or in X-API-Key) for a short-lived JWT."""

    api_key: str | None = Field(default=None, max_length=200)


class TokenResponse(BaseModel):
    """A bearer token."""

    access_token: str
    token_type: Literal["bearer"]
    expires_in: int
    role: str
    team: str
