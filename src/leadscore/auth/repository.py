"""Queries of teams and API keys; callers own the transaction."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import Row, Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from leadscore.core.tables import (
    ApiKey,
    Team,
)

KEY_PREFIX: Final = "lsk_"


async def team_by_name(session: AsyncSession, name: str) -> Team | None:
    """The team with this name, if any."""
    result = await session.execute(select(Team).where(Team.name == name))
    return result.scalar_one_or_none()


async def create_team(session: AsyncSession, name: str, now: datetime) -> Team:
    """A new team; the caller commits."""
    team = Team(name=name, created_at=now)
    session.add(team)
    await session.flush()
    return team


def hash_key(secret: str) -> str:
    """API keys are 256-bit random secrets, so one SHA-256 is enough to store them safely."""
    return hashlib.sha256(secret.encode()).hexdigest()


async def team_by_id(session: AsyncSession, team_id: int) -> Team | None:
    """The team with this id, if any."""
    return await session.get(Team, team_id)


async def new_api_key(
    session: AsyncSession, team_id: int, role: str, name: str, now: datetime
) -> tuple[ApiKey, str]:
    """Store a new key's hash; returns its row and the key itself, which is never stored."""
    prefix = secrets.token_hex(6)
    secret = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey(
        team_id=team_id, prefix=prefix, key_hash=hash_key(secret), role=role, name=name,
        created_at=now,
    )  # fmt: skip
    session.add(key)
    await session.flush()
    return key, secret


async def create_api_key(
    session: AsyncSession, team: Team, role: str, name: str, now: datetime
) -> str:
    """Store a new key's hash and return the key itself, which is never stored."""
    return (await new_api_key(session, team.id, role, name, now))[1]


async def list_keys(session: AsyncSession, team_id: int | None) -> Sequence[Row[ApiKey, str]]:
    """Keys with their team's name, of one team or of all, oldest first."""
    query = select(ApiKey, Team.name).join(Team, Team.id == ApiKey.team_id).order_by(ApiKey.id)
    if team_id is not None:
        query = query.where(ApiKey.team_id == team_id)
    return (await session.execute(query)).all()


async def key_by_id(session: AsyncSession, key_id: int, team_id: int | None) -> ApiKey | None:
    """One key, revoked or not; None when unknown or (with `team_id`) another team's."""
    key = await session.get(ApiKey, key_id)
    return key if key is not None and team_id in (None, key.team_id) else None


@dataclass(frozen=True)
class KeyOwner:
    """Who an API key belongs to."""

    key_id: int
    team_id: int
    team_name: str
    role: str
    commission_rate: float | None
    hot_threshold: float | None
    warm_threshold: float | None
    escalation_confidence: float | None


def key_prefix(secret: str) -> str | None:
    """The lookup prefix of a well-formed key, None for anything else."""
    if not secret.startswith(KEY_PREFIX):
        return None
    prefix, sep, _ = secret[len(KEY_PREFIX) :].partition("_")
    return prefix if sep and len(prefix) == 12 else None


_OWNER_COLUMNS: Final = 8


def _owners() -> Select[int, int, str, str, float | None, float | None, float | None, float | None]:
    """What a key lookup reads, in one query: the key, its team, the team's own settings."""
    return select(
        ApiKey.id, ApiKey.team_id, Team.name, ApiKey.role, Team.commission_rate,
        Team.hot_threshold, Team.warm_threshold, Team.escalation_confidence,
    ).join(Team, Team.id == ApiKey.team_id)  # fmt: skip


async def key_owner(session: AsyncSession, secret: str) -> KeyOwner | None:
    """The owner of an active key, compared in constant time; None when unknown or revoked."""
    prefix = key_prefix(secret)
    if prefix is None:
        return None
    result = await session.execute(
        _owners()
        .add_columns(ApiKey.key_hash)
        .where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))
    )
    row = result.one_or_none()
    if row is None or not hmac.compare_digest(row.key_hash, hash_key(secret)):
        return None
    return KeyOwner(*row[:_OWNER_COLUMNS])


async def active_key_owners(session: AsyncSession, key_ids: Collection[int]) -> dict[int, KeyOwner]:
    """The owners of those keys that exist and are not revoked, by key id."""
    result = await session.execute(
        _owners().where(ApiKey.id.in_(list(key_ids)), ApiKey.revoked_at.is_(None))
    )
    return {row[0]: KeyOwner(*row) for row in result}
