"""The authenticated caller, shared by every domain that acts for a team."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key of one team, with one role."""

    key_id: int
    team_id: int
    team_name: str
    role: str
    commission_rate: float | None = None
    #: When the credential stops (a token's `exp`, epoch seconds); None for an API key.
    expires_at: float | None = None
