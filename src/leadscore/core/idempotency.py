"""Idempotency keys: a write retried with the same `Idempotency-Key` happens once.

The first request with a key reserves it in the shared cache (memory for one worker, Redis for
many: `SET NX`, so two workers cannot both win), acts, and stores its answer; a repeat from the
same team within the window gets that stored answer instead of acting again. A repeat that
arrives while the first is still running is told to retry shortly (409 with Retry-After), one
with another body under the same key is refused (422). A write that fails stores nothing, so its
retry acts. With the cache unreachable the write goes on without the guarantee, as scoring goes
on uncached (health reports the cache down).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from leadscore.core.cache import Cache, CacheUnavailableError
from leadscore.core.errors import InvalidInputError, LeadScoreError

log = logging.getLogger(__name__)

HEADER: Final = "Idempotency-Key"
#: How long a stored answer is replayed: longer than any client's retries take.
WINDOW_SECONDS: Final = 24 * 3600.0
#: How long a reservation holds while its write runs; a worker killed mid-write frees it then.
PENDING_SECONDS: Final = 60.0
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
_PENDING: Final = b"P"
_DONE: Final = b"D"


class IdempotencyInProgressError(LeadScoreError):
    """The first request with this key is still running: retry shortly for its answer."""

    status_code = 409
    code = "idempotency_in_progress"

    def headers(self) -> dict[str, str]:
        """A write takes milliseconds to a few seconds: one second is a fair wait."""
        return {"Retry-After": "1"}


class IdempotencyKeyReusedError(InvalidInputError):
    """The key was used for a different request: keys name one write, never two."""

    code = "idempotency_key_reused"


@dataclass(frozen=True, slots=True)
class Once:
    """A request's idempotency key and the digest of what it asks, so a replay can be checked."""

    key: str
    digest: bytes

    @classmethod
    def of(cls, key: str | None, body: bytes) -> Once | None:
        """The key of a request that sent one (printable ASCII, ≤ 255 characters), else None."""
        if key is None:
            return None
        if not _KEY.match(key):
            raise InvalidInputError(f"{HEADER} must be 1-255 printable ASCII characters")
        return cls(key, hashlib.sha256(body).hexdigest().encode())


class IdempotencyStore:
    """Reserves, replays and records answers to keyed writes in the cache."""

    def __init__(self, cache: Cache, window_seconds: float = WINDOW_SECONDS) -> None:
        self.cache = cache
        self.window_seconds = window_seconds

    @staticmethod
    def _entry(team_id: int, scope: str, once: Once) -> str:
        return f"idem:{team_id}:{scope}:{hashlib.sha256(once.key.encode()).hexdigest()}"

    async def reserve(self, team_id: int, scope: str, once: Once) -> bytes | None:
        """The stored answer of an earlier request with this key, or None once this request
        holds the key and must act (then `complete` or `release` it)."""
        entry = self._entry(team_id, scope, once)
        try:
            if await self.cache.add(entry, _PENDING + once.digest, PENDING_SECONDS):
                return None
            stored = await self.cache.get(entry)
            if stored is None:  # it expired or was released between the two calls
                if await self.cache.add(entry, _PENDING + once.digest, PENDING_SECONDS):
                    return None
                raise IdempotencyInProgressError(f"a request with this {HEADER} is running")
        except CacheUnavailableError as exc:
            log.warning("idempotency key not checked, the cache is down: %s", exc)
            return None
        state, digest, answer = stored[:1], stored[1:65], stored[65:]
        if digest != once.digest:
            raise IdempotencyKeyReusedError(f"this {HEADER} was used for a different request")
        if state == _PENDING:
            raise IdempotencyInProgressError(f"a request with this {HEADER} is still running")
        return answer

    async def complete(self, team_id: int, scope: str, once: Once, answer: bytes) -> None:
        """Store the answer for repeats within the window."""
        entry = self._entry(team_id, scope, once)
        try:
            await self.cache.set(entry, _DONE + once.digest + answer, self.window_seconds)
        except CacheUnavailableError as exc:
            log.warning("idempotent answer not stored, the cache is down: %s", exc)

    async def release(self, team_id: int, scope: str, once: Once) -> None:
        """Free the key of a write that failed, so its retry acts."""
        try:
            await self.cache.delete(self._entry(team_id, scope, once))
        except CacheUnavailableError as exc:  # the reservation then expires by itself
            log.warning("idempotency key not released, the cache is down: %s", exc)

    async def run(
        self, team_id: int, scope: str, once: Once | None, act: Callable[[], Awaitable[bytes]]
    ) -> bytes:
        """`act()` once per key: the stored answer for a repeat, else act and store."""
        if once is None:
            return await act()
        stored = await self.reserve(team_id, scope, once)
        if stored is not None:
            return stored
        try:
            answer = await act()
        except BaseException:
            await self.release(team_id, scope, once)
            raise
        await self.complete(team_id, scope, once, answer)
        return answer
