"""Queries of teams and API keys; callers own the transaction."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import select
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


async def create_api_key(
    session: AsyncSession, team: Team, role: str, name: str, now: datetime
) -> str:
    """Store a new key's hash and return the key itself, which is never stored."""
    prefix = secrets.token_hex(6)
    secret = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    session.add(
        ApiKey(
            team_id=team.id,
            prefix=prefix,
            key_hash=hash_key(secret),
            role=role,
            name=name,
            created_at=now,
        )
    )
    await session.flush()
    return secret


@dataclass(frozen=True)
class KeyOwner:
    """Who an API key belongs to."""

    key_id: int
    team_id: int
    team_name: str
    role: str


def key_prefix(secret: str) -> str | None:
    """The lookup prefix of a well-formed key, None for anything else."""
    if not secret.startswith(KEY_PREFIX):
        return None
    prefix, sep, _ = secret[len(KEY_PREFIX) :].partition("_")
    return prefix if sep and len(prefix) == 12 else None


async def key_owner(session: AsyncSession, secret: str) -> KeyOwner | None:
    """The owner of an active key, compared in constant time; None when unknown or revoked."""
    prefix = key_prefix(secret)
    if prefix is None:
        return None
    result = await session.execute(
        select(ApiKey, Team.name)
        .join(Team, Team.id == ApiKey.team_id)
        .where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))
    )
    row = result.one_or_none()
    if row is None:
        return None
    key, team_name = row
    if not hmac.compare_digest(key.key_hash, hash_key(secret)):
        return None
    return KeyOwner(key.id, key.team_id, team_name, key.role)
