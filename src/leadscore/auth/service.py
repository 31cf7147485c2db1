"""Authentication: API keys (hashed at rest) and short-lived JWTs, resolved to a Principal."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Final

import jwt
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadscore.auth import repository as repo
from leadscore.auth.principal import Principal
from leadscore.core.config import ServiceSettings
from leadscore.core.errors import LeadScoreError
from leadscore.core.tables import Team

ROLES: Final = ("admin", "agent", "viewer")
KEY_CACHE_SECONDS: Final = 30.0


class AuthenticationError(LeadScoreError):
    """No credentials, or credentials that do not check out."""

    status_code = 401
    code = "unauthorized"


class ForbiddenError(LeadScoreError):
    """Valid credentials whose role may not do this."""

    status_code = 403
    code = "forbidden"


class Authenticator:
    """Turns an API key or a bearer token into a Principal; keys are cached for 30 s."""

    def __init__(
        self, settings: ServiceSettings, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self._keys: dict[str, tuple[float, Principal | None]] = {}
        self._teams: dict[int, tuple[float, float | None]] = {}

    async def from_api_key(self, secret: str) -> Principal:
        """The key's owner; a revoked key stops working within 30 s on every worker."""
        now = time.monotonic()
        fingerprint = repo.hash_key(secret)
        hit = self._keys.get(fingerprint)
        if hit is None or hit[0] < now:
            async with self.sessions() as session:
                owner = await repo.key_owner(session, secret)
                rate = await self._team_rate(session, owner.team_id) if owner else None
            principal = (
                Principal(owner.key_id, owner.team_id, owner.team_name, owner.role, rate)
                if owner
                else None
            )
            if len(self._keys) > 10_000:
                self._keys.clear()
            hit = (now + KEY_CACHE_SECONDS, principal)
            self._keys[fingerprint] = hit
        if hit[1] is None:
            raise AuthenticationError("invalid API key")
        return hit[1]

    async def _team_rate(self, session: AsyncSession, team_id: int) -> float | None:
        now = time.monotonic()
        cached = self._teams.get(team_id)
        if cached is None or cached[0] < now:
            result = await session.execute(select(Team.commission_rate).where(Team.id == team_id))
            cached = (now + KEY_CACHE_SECONDS, result.scalar_one_or_none())
            self._teams[team_id] = cached
        return cached[1]

    def issue_token(self, principal: Principal) -> tuple[str, int]:
        """A signed JWT for this key's team and role, valid for the configured TTL."""
        now = datetime.now(UTC)
        ttl = self.settings.jwt_ttl_seconds
        claims = {
            "sub": str(principal.key_id),
            "team_id": principal.team_id,
            "team": principal.team_name,
            "role": principal.role,
            "iss": self.settings.jwt_issuer,
            "aud": self.settings.jwt_audience,
            "iat": now,
            "nbf": now,
            "exp": now + timedelta(seconds=ttl),
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self.settings.secret, algorithm=self.settings.jwt_algorithm), ttl

    async def from_token(self, token: str) -> Principal:
        """Verify signature (algorithm pinned), expiry, issuer and audience."""
        try:
            claims = jwt.decode(
                token,
                self.settings.secret,
                algorithms=[self.settings.jwt_algorithm],
                audience=self.settings.jwt_audience,
                issuer=self.settings.jwt_issuer,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthenticationError("token expired") from exc
        except jwt.InvalidTokenError as exc:
            raise AuthenticationError(f"invalid token: {exc}") from exc
        role = claims.get("role")
        team_id = claims.get("team_id")
        if role not in ROLES or not isinstance(team_id, int):
            raise AuthenticationError("invalid token: missing team or role")
        async with self.sessions() as session:
            rate = await self._team_rate(session, team_id)
        return Principal(int(claims["sub"]), team_id, str(claims.get("team", "")), role, rate)


def require_role(principal: Principal, *allowed: str) -> Principal:
    """Refuse a principal whose role is not in `allowed`."""
    if principal.role not in allowed:
        raise ForbiddenError(f"the {principal.role} role may not do this")
    return principal
