"""Authentication: API keys (hashed at rest) and short-lived JWTs, resolved to a Principal."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Final, TypeVar, get_args

import jwt
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadscore.auth import repository as repo
from leadscore.auth.principal import Principal
from leadscore.auth.schemas import KeyCreated, KeyOut, Role, TeamSettingsOut, TeamSettingsPatch
from leadscore.core.config import ServiceSettings, Settings
from leadscore.core.db import after_commit
from leadscore.core.errors import InvalidInputError, LeadScoreError, NotFoundError
from leadscore.core.tables import ApiKey, Team

ROLES: Final = get_args(Role)
_CACHE_LIMIT: Final = 10_000


class AuthenticationError(LeadScoreError):
    """No credentials, or credentials that do not check out."""

    status_code = 401
    code = "unauthorized"


class ForbiddenError(LeadScoreError):
    """Valid credentials whose role may not do this."""

    status_code = 403
    code = "forbidden"


class CredentialsUnavailableError(LeadScoreError):
    """The database that holds the keys did not answer: credentials cannot be checked now."""

    status_code = 503
    code = "unavailable"


class InvalidTeamSettingsError(InvalidInputError):
    """Team settings that are valid one by one but not together (warm must stay below hot)."""


_Entry = tuple[float, Principal | None]
K = TypeVar("K")


class Authenticator:
    """Turns an API key or a bearer token into a Principal.

    What it reads about a key (revoked or not, its team's commission rate) is trusted for
    `key_cache_seconds` (30 s): a revoked key, and every token it issued, stop within that on
    every worker; a team's new settings apply within it. A miss reads in a short session of
    its own (it writes nothing): the hot path authenticates without a request session.
    """

    def __init__(
        self, settings: ServiceSettings, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.cache_seconds = settings.key_cache_seconds
        self._by_secret: dict[str, _Entry] = {}
        self._by_id: dict[int, _Entry] = {}
        self._by_team: dict[int, _Entry] = {}

    async def from_api_key(self, secret: str) -> Principal:
        """The key's owner; a revoked key stops working within the cache window."""
        now = time.monotonic()
        fingerprint = repo.hash_key(secret)
        hit = self._by_secret.get(fingerprint)
        if hit is None or hit[0] < now:
            async with self.sessions() as session:
                owner = await repo.key_owner(session, secret)
            hit = self._remember(self._by_secret, fingerprint, _principal(owner), now)
        if hit[1] is None:
            raise AuthenticationError("invalid API key")
        return hit[1]

    async def key_principal(self, key_id: int) -> Principal | None:
        """The owner of an active key by its id (through the cache); None if revoked or gone."""
        now = time.monotonic()
        hit = self._by_id.get(key_id)
        if hit is None or hit[0] < now:
            async with self.sessions() as session:
                owners = await repo.active_key_owners(session, [key_id])
            hit = self._remember(self._by_id, key_id, _principal(owners.get(key_id)), now)
        return hit[1]

    async def team_principal(self, team_id: int) -> Principal | None:
        """The team acting through a background job (a CRM webhook, the LLM qualifier): its
        own settings apply as to its keys; None when the team is gone."""
        now = time.monotonic()
        hit = self._by_team.get(team_id)
        if hit is None or hit[0] < now:
            async with self.sessions() as session:
                team = await repo.team_by_id(session, team_id)
            principal = None if team is None else Principal(
                0, team.id, team.name, "system", team.commission_rate,
                hot_threshold=team.hot_threshold, warm_threshold=team.warm_threshold,
                escalation_confidence=team.escalation_confidence,
            )  # fmt: skip
            hit = self._remember(self._by_team, team_id, principal, now)
        return hit[1]

    async def active_keys(self, key_ids: Collection[int]) -> set[int]:
        """Which of these keys are active now, read from the database (and cached) at once."""
        if not key_ids:
            return set()
        now = time.monotonic()
        try:
            async with self.sessions() as session:
                owners = await repo.active_key_owners(session, key_ids)
        except (SQLAlchemyError, OSError) as exc:
            raise CredentialsUnavailableError(f"keys cannot be checked: {exc}") from exc
        for key_id in key_ids:
            self._remember(self._by_id, key_id, _principal(owners.get(key_id)), now)
        return set(owners)

    def _remember(
        self, cache: dict[K, _Entry], key: K, principal: Principal | None, now: float
    ) -> _Entry:
        if len(cache) > _CACHE_LIMIT:
            cache.clear()
        entry = (now + self.cache_seconds, principal)
        cache[key] = entry
        return entry

    def forget_key(self, key_id: int) -> None:
        """This worker stops trusting what it read about a key (revoked here just now)."""
        self._by_id.pop(key_id, None)
        _forget(self._by_secret, lambda p: p.key_id == key_id)

    def forget_team(self, team_id: int) -> None:
        """This worker rereads a team's keys (its settings changed here just now)."""
        _forget(self._by_secret, lambda p: p.team_id == team_id)
        _forget(self._by_id, lambda p: p.team_id == team_id)
        self._by_team.pop(team_id, None)

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
        token = jwt.encode(
            claims,
            self.settings.secret,
            algorithm=self.settings.jwt_algorithm,
            headers={"kid": str(principal.key_id)},
        )
        return token, ttl

    async def from_token(self, token: str) -> Principal:
        """Verify signature (algorithm pinned), expiry, issuer and audience, then that the
        key it names (`kid`) is still active: a token dies with its key."""
        try:
            decoded: dict[str, Any] = jwt.decode_complete(
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
        claims = decoded["payload"]
        kid = decoded["header"].get("kid")
        if not isinstance(kid, str) or not kid.isdigit() or kid != claims["sub"]:
            raise AuthenticationError("invalid token: it names no key (kid)")
        principal = await self.key_principal(int(kid))
        if principal is None:
            raise AuthenticationError("token refused: its key was revoked")
        if claims.get("team_id") != principal.team_id or claims.get("role") != principal.role:
            raise AuthenticationError("invalid token: team or role differ from its key's")
        return replace(principal, expires_at=float(claims["exp"]))


def _forget(cache: dict[K, _Entry], matches: Callable[[Principal], bool]) -> None:
    for key, (_, principal) in list(cache.items()):
        if principal is not None and matches(principal):
            del cache[key]


def _principal(owner: repo.KeyOwner | None) -> Principal | None:
    if owner is None:
        return None
    return Principal(
        owner.key_id, owner.team_id, owner.team_name, owner.role, owner.commission_rate,
        hot_threshold=owner.hot_threshold, warm_threshold=owner.warm_threshold,
        escalation_confidence=owner.escalation_confidence,
    )  # fmt: skip


async def team_id_by_name(session: AsyncSession, name: str) -> int:
    """A team's id by name, for the domains above that name teams (the command line)."""
    team = await repo.team_by_name(session, name)
    if team is None:
        raise NotFoundError(f"no team named {name!r}")
    return team.id


def require_role(principal: Principal, *allowed: str) -> Principal:
    """Refuse a principal whose role is not in `allowed`."""
    if principal.role not in allowed:
        raise ForbiddenError(f"the {principal.role} role may not do this")
    return principal


class TeamAdmin:
    """A team's keys and settings, for its admins over HTTP and for the `leadscore` command.

    With an `Authenticator` (in the server), a change also takes effect on this worker as
    soon as it commits; other workers see it within their key cache window.
    """

    def __init__(self, defaults: Settings, authenticator: Authenticator | None = None) -> None:
        self.defaults = defaults
        self.authenticator = authenticator

    async def team_id(self, session: AsyncSession, name: str) -> int:
        """The id of a team named on the command line."""
        team = await repo.team_by_name(session, name)
        if team is None:
            raise NotFoundError(f"no team named {name!r}")
        return team.id

    async def list_keys(
        self, session: AsyncSession, team_id: int | None
    ) -> list[tuple[str, KeyOut]]:
        """A team's keys (or every team's), revoked ones included, with their team's name."""
        rows = await repo.list_keys(session, team_id)
        return [(team, _key_out(key)) for key, team in rows]

    async def create_key(
        self, session: AsyncSession, team_id: int, name: str, role: str
    ) -> KeyCreated:
        """A new key of this team; its secret is returned this once."""
        key, secret = await repo.new_api_key(session, team_id, role, name, datetime.now(UTC))
        return KeyCreated(**_key_out(key).model_dump(), key=secret)

    async def revoke_key(self, session: AsyncSession, key_id: int, team_id: int | None) -> KeyOut:
        """Revoke a key (and every token it issued); revoking it again changes nothing."""
        key = await repo.key_by_id(session, key_id, team_id)
        if key is None:
            raise NotFoundError(f"no key {key_id}")
        if key.revoked_at is None:
            key.revoked_at = datetime.now(UTC)
        revoked = _key_out(key)
        if self.authenticator is not None:
            after_commit(session, partial(self.authenticator.forget_key, key_id))
        return revoked

    async def team_settings(self, session: AsyncSession, team_id: int) -> TeamSettingsOut:
        """A team's own settings (null: the server default)."""
        team = await repo.team_by_id(session, team_id)
        if team is None:
            raise NotFoundError(f"no team {team_id}")
        return _settings_out(team)

    async def update_team_settings(
        self, session: AsyncSession, team_id: int, patch: TeamSettingsPatch
    ) -> TeamSettingsOut:
        """Change the fields sent (null: back to the default); warm must stay below hot."""
        team = await repo.team_by_id(session, team_id)
        if team is None:
            raise NotFoundError(f"no team {team_id}")
        changes = patch.model_dump(include=patch.model_fields_set)
        hot = changes.get("hot_threshold", team.hot_threshold)
        warm = changes.get("warm_threshold", team.warm_threshold)
        hot = self.defaults.hot_threshold if hot is None else hot
        warm = self.defaults.warm_threshold if warm is None else warm
        if warm >= hot:
            raise InvalidTeamSettingsError(
                f"warm_threshold ({warm:g}) must be below hot_threshold ({hot:g}); "
                "a threshold left unset is the server default"
            )
        for name, value in changes.items():
            setattr(team, name, value)
        updated = _settings_out(team)
        if self.authenticator is not None:
            after_commit(session, partial(self.authenticator.forget_team, team_id))
        return updated


def _key_out(key: ApiKey) -> KeyOut:
    return KeyOut(
        id=key.id, name=key.name, role=key.role, prefix=key.prefix,
        created_at=key.created_at, revoked_at=key.revoked_at,
    )  # fmt: skip


def _settings_out(team: Team) -> TeamSettingsOut:
    return TeamSettingsOut(
        team=team.name, commission_rate=team.commission_rate, hot_threshold=team.hot_threshold,
        warm_threshold=team.warm_threshold, escalation_confidence=team.escalation_confidence,
    )  # fmt: skip
