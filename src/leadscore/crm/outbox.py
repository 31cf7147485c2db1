"""Scores out: write-backs queued in the score's own transaction, delivered by a sender.

The hook runs in every batch of scores: a lead linked to a CRM contact whose class changed,
or whose score moved by the connection's threshold since the last write-back, gets an outbox
row (an older one still waiting for that contact is superseded). The sender takes due rows
under a lease, honours each connection's rate limit, and retries failures with exponential
backoff and jitter; after the last attempt a row is `failed`, listed for the team's admins.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadscore.core.db import after_commit, transaction
from leadscore.core.logs import bound
from leadscore.core.ratelimit import RateLimiter, RateLimitUnavailableError
from leadscore.core.tables import CrmOutboxRow
from leadscore.crm import repository as repo
from leadscore.crm.connections import ConnectionService
from leadscore.crm.providers.base import Delivery, Provider
from leadscore.crm.schemas import WriteBack
from leadscore.crm.secrets import SecretUnreadableError
from leadscore.scoring.repository import ScoreRecord

log = logging.getLogger(__name__)
LEASE_SECONDS: Final = 60.0
BATCH: Final = 20


def moved(write_back: WriteBack, score: float, classification: str,
          written_score: float | None, written_class: str | None) -> bool:  # fmt: skip
    """Whether a new score is worth writing: first, another class, or moved by the threshold."""
    if not write_back.enabled:
        return False
    if written_score is None or written_class != classification:
        return True
    return abs(score - written_score) >= write_back.threshold_points


class OutboxHook:
    """The score hook: queues the write-backs a batch of scores calls for."""

    def __init__(self, wake: Callable[[], None]) -> None:
        self.wake = wake

    async def __call__(self, session: AsyncSession, records: Sequence[ScoreRecord]) -> None:
        """Queue write-backs in the scores' own transaction."""
        latest: dict[tuple[int, str], ScoreRecord] = {}
        for record in records:
            latest[(record.team_id, record.lead_id)] = record
        linked = await repo.contacts_of_leads(session, list(latest))
        queued = 0
        now = datetime.now(UTC)
        for contact, connection in linked:
            record = latest[(contact.team_id, contact.lead_id)]
            write_back = WriteBack.model_validate(connection.write_back)
            if connection.api_base is None:
                continue  # a generic webhook without a URL: nowhere to write back to
            if not moved(write_back, record.ml_score, record.classification,
                         contact.written_score, contact.written_class):  # fmt: skip
                continue
            commission = (record.result.get("commission") or {}).get("expected_commission")
            await repo.enqueue_write_back(session, CrmOutboxRow(
                team_id=contact.team_id, connection_id=contact.connection_id,
                contact_id=contact.contact_id, lead_id=contact.lead_id,
                payload={"ml_score": record.ml_score, "classification": record.classification,
                         "expected_commission": commission,
                         "model_version": record.model_version,
                         "scored_at": record.scored_at.isoformat()},
                status="pending", attempts=0, next_attempt_at=now, created_at=now,
            ))  # fmt: skip
            contact.written_score = record.ml_score
            contact.written_class = record.classification
            queued += 1
        if queued:
            after_commit(session, self.wake)


def backoff(attempts: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter: uniform in [base, min(cap, base·2^(n-1))]."""
    ceiling = min(cap, base * 2 ** max(0, attempts - 1))
    return rng.uniform(min(base, ceiling), ceiling)


class OutboxSender:
    """Delivers due write-backs, each connection within its rate limit."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        connections: ConnectionService,
        providers: Mapping[str, Provider],
        http: httpx.AsyncClient,
        limiter: RateLimiter,
        *,
        base_seconds: float,
        max_seconds: float,
        max_attempts: int,
        gate: asyncio.Lock | None = None,
    ) -> None:
        self.sessions = sessions
        self.connections = connections
        self.providers = providers
        self.http = http
        self.limiter = limiter
        self.base_seconds = base_seconds
        self.max_seconds = max_seconds
        self.max_attempts = max_attempts
        #: Held around each write (SQLite): see `crm.store`.
        self.gate = gate
        self.rng = random.Random()
        self._paused: dict[int, float] = {}  # connection → monotonic time it may send again
        self.sent = 0
        self.retried = 0
        self.failed = 0

    def _gated(self) -> contextlib.AbstractAsyncContextManager[object]:
        return self.gate if self.gate is not None else contextlib.nullcontext()

    async def step(self) -> bool:
        """Deliver one batch; True when more may be due now."""
        now = datetime.now(UTC)
        async with self.sessions() as session:
            if not await repo.any_write_back_due(session, now):
                return False  # polled idle: no write transaction, no turn at SQLite's gate
        async with self._gated(), transaction(self.sessions) as session:
            rows = await repo.claim_write_backs(
                session, now, now + timedelta(seconds=LEASE_SECONDS), BATCH
            )
        if not rows:
            return False
        results = await asyncio.gather(*(self._deliver_bound(row) for row in rows))
        async with self._gated(), transaction(self.sessions) as session:
            for row, values in zip(rows, results, strict=True):
                await repo.settle_write_back(session, row.id, **values)
        return len(rows) == BATCH

    async def _deliver_bound(self, row: CrmOutboxRow) -> dict[str, object]:
        """Deliver with the write-back and its team named on every line it logs."""
        with bound(write_back=str(row.id), team=row.team_id):
            return await self._deliver(row)

    async def _deliver(self, row: CrmOutboxRow) -> dict[str, object]:
        """Send one write-back; what to record of it."""
        now = datetime.now(UTC)
        try:
            connection = await self.connections.by_id(row.connection_id)
        except SecretUnreadableError as exc:  # listed as failed; retried once the key is back
            self.failed += 1
            return {"status": "failed", "attempts": row.attempts + 1, "last_error": str(exc)}
        provider = self.providers.get(connection.provider) if connection else None
        if connection is None or provider is None:
            return {"status": "cancelled", "last_error": "the connection was removed"}
        paused = self._paused.get(connection.id, 0.0) - time.monotonic()
        if paused > 0:
            return {"next_attempt_at": now + timedelta(seconds=paused)}
        limit, window = provider.rate_limit
        try:
            decision = await self.limiter.hit(f"crm:{connection.id}", limit, window,
                                              cost=provider.requests_per_write_back)  # fmt: skip
        except RateLimitUnavailableError:
            decision = None  # the CRM's own 429 still holds us back
        if decision is not None and not decision.allowed:
            wait = decision.retry_after_seconds
            return {"next_attempt_at": now + timedelta(seconds=wait)}
        try:
            delivery = await provider.write_back(connection, row.contact_id, row.payload,
                                                 self.http)  # fmt: skip
        except httpx.HTTPError as exc:
            delivery = Delivery("retry", f"{type(exc).__name__}: {str(exc)[:200]}")
        if delivery.pause_for:
            self._paused[connection.id] = time.monotonic() + delivery.pause_for
        attempts = row.attempts + 1
        if delivery.result == "sent":
            self.sent += 1
            log.info("write-back sent", extra={"provider": connection.provider})
            return {"status": "sent", "attempts": attempts, "sent_at": now, "last_error": None}
        if delivery.result == "failed" or attempts >= self.max_attempts:
            self.failed += 1
            log.warning("write-back %d to %s contact %s failed: %s", row.id, connection.provider,
                        row.contact_id, delivery.detail)  # fmt: skip
            return {"status": "failed", "attempts": attempts, "last_error": delivery.detail}
        self.retried += 1
        delay = max(backoff(attempts, self.base_seconds, self.max_seconds, self.rng),
                    delivery.retry_after or 0.0)  # fmt: skip
        return {"attempts": attempts, "next_attempt_at": now + timedelta(seconds=delay),
                "last_error": delivery.detail}  # fmt: skip
