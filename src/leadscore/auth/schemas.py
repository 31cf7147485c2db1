"""Request and response shapes of the token exchange, key administration and team settings."""

from __future__ import annotations

from datetime import datetime
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


Role = Literal["admin", "agent", "viewer"]


class KeyOut(BaseModel):
    """An API key as admins see it: never its secret, nor its hash."""

    id: int
    name: str
    role: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


class KeyCreate(_Strict):
    """A new key for the caller's team."""

    name: str = Field(min_length=1, max_length=100, description="What the key is for.")
    role: Role


class KeyCreated(KeyOut):
    """A new key: `key` is shown this once, only its hash is stored."""

    key: str


class TeamSettingsPatch(_Strict):
    """The settings to change; a field sent as null goes back to the server default."""

    commission_rate: float | None = Field(default=None, ge=0, le=1)
    hot_threshold: float | None = Field(default=None, ge=0, le=100)
    warm_threshold: float | None = Field(default=None, ge=0, le=100)
    escalation_confidence: float | None = Field(
        default=None, ge=0, le=1, description="Escalate a lead scored with less confidence."
    )


class TeamSettingsOut(BaseModel):
    """A team's own settings; null means the server default (`LEADSCORE_*`)."""

    team: str
    commission_rate: float | None
    hot_threshold: float | None
    warm_threshold: float | None
    escalation_confidence: float | None
