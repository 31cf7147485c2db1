"""Webhooks in: verified, stored before the 2xx (the inbox), then processed by a worker.

A webhook answered 2xx is in the database; a worker takes it under a lease, applies it and
marks it done in one unit of work. A worker killed meanwhile leaves it pending: when the lease
expires another worker (or the restarted one) takes it. A repeat of a stored event id answers
200 and changes nothing. A receiver that cannot store (the database is down, or too much
waits) answers 429, the only status GoHighLevel retries, never 5xx.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Concatenate, Final, ParamSpec, TypeVar

import httpx
import orjson
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadscore.auth.service import Authenticator
from leadscore.core.cache import Cache, CacheUnavailableError
from leadscore.core.db import CONNECTION_ERRORS, is_connection_error, transaction
from leadscore.core.errors import LeadScoreError
from leadscore.core.lifecycle import Pump
from leadscore.core.logs import annotate, bound
from leadscore.core.tables import CrmInboxRow
from leadscore.crm import repository as repo
from leadscore.crm.connections import CACHE_SECONDS, Connection, ConnectionService
from leadscore.crm.providers import followupboss, gohighlevel, webhook
from leadscore.crm.providers.base import (
    Change,
    ContactGone,
    FetchFailedError,
    MalformedWebhookError,
    OutcomeSeen,
    Provider,
    UnknownAccountError,
    WebhookRefusedError,
    body_digest,
    lead_id_for,
)
from leadscore.crm.secrets import SecretUnreadableError
from leadscore.crm.store import WebhookStore
from leadscore.crm.sync import ContactInvalidError, CrmSync

log = logging.getLogger(__name__)
T = TypeVar("T")
P = ParamSpec("P")
LEASE_SECONDS: Final = 30.0
BATCH: Final = 10
#: A webhook we answered 429 may come back after the replay window: accepted for this long.
DEFERRED_SECONDS: Final = 2 * 3600.0
#: Attempts (fetches that failed, errors) before a webhook is marked failed.
MAX_ATTEMPTS: Final = 8
#: Providers whose webhooks carry what they say (nothing to fetch): applied in groups.
BATCHED: Final = frozenset({"gohighlevel", "webhook"})
#: Acknowledgements come first: the worker waits for a pause this long in webhooks arriving…
QUIET_SECONDS: Final = 0.01
#: …but under a steady flood it still applies a batch this often (the backlog never starves).
YIELD_MAX_SECONDS: Final = 1.0
#: …and then applies this many only, while webhooks keep arriving: one transaction holds
#: SQLite's single writer, so an acknowledgement waits for it (one webhook: ~25 ms here).
FLOOD_BATCH: Final = 1


class InboxOverloadedError(LeadScoreError):
    """The webhook cannot be stored now: the sender should retry it later."""

    status_code = 429
    code = "overloaded"

    def __init__(self, detail: str, retry_after: float = 30.0) -> None:
        super().__init__(detail)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        """When to come back."""
        return {"Retry-After": str(int(self.retry_after))}


class StaleWebhookError(WebhookRefusedError):
    """A signed webhook timestamped outside the window: a replay, refused."""

    code = "stale_webhook"


class Activity:
    """When this worker last received a webhook: its inbox worker waits for a pause, so a
    CRM's burst is acknowledged at full speed and applied just after."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.last = -math.inf

    @contextlib.contextmanager
    def receiving(self) -> Iterator[None]:
        """Around one webhook request."""
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            self.last = time.monotonic()

    def quiet(self, seconds: float) -> bool:
        """No webhook in flight, and none for `seconds`."""
        return self.in_flight == 0 and time.monotonic() - self.last >= seconds


def _receiving(
    method: Callable[Concatenate[WebhookReceiver, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[WebhookReceiver, P], Coroutine[Any, Any, T]]:
    """Counts the request as activity (see `Activity`)."""

    @functools.wraps(method)
    async def receive(receiver: WebhookReceiver, /, *args: P.args, **kwargs: P.kwargs) -> T:
        with receiver.activity.receiving():
            return await method(receiver, *args, **kwargs)

    return receive


class WebhookReceiver:
    """Verifies, identifies and stores webhooks; wakes this worker's inbox processor."""

    def __init__(
        self,
        store: WebhookStore,
        connections: ConnectionService,
        cache: Cache,
        ghl_key_pem: str,
        max_age_seconds: float,
        max_pending: int,
        wake: Callable[[], None],
    ) -> None:
        self.store = store
        self.connections = connections
        self.cache = cache
        self.ghl_key = gohighlevel.load_key(ghl_key_pem)
        self.max_age = timedelta(seconds=max_age_seconds)
        self.max_pending = max_pending
        self.wake = wake
        self.pending = 0  # refreshed by the worker on every pass
        self.received = 0
        self.duplicates = 0
        self.activity = Activity()
        self._fub: tuple[float, list[Connection]] | None = None  # (read at, connections)

    async def _deferred(self, event_id: str) -> bool:
        try:
            return await self.cache.get(f"crm:deferred:{event_id}") is not None
        except CacheUnavailableError:
            return False

    async def _defer(self, event_id: str) -> None:
        try:
            await self.cache.set(f"crm:deferred:{event_id}", b"1", DEFERRED_SECONDS)
        except CacheUnavailableError:
            log.warning("webhook %s deferred without a cache: a late retry may be refused",
                        event_id)  # fmt: skip

    @_receiving
    async def gohighlevel(self, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
        """A GoHighLevel webhook: RSA signature, replay window, account, then stored."""
        gohighlevel.verify(self.ghl_key, headers.get(gohighlevel.SIGNATURE_HEADER), body)
        envelope = gohighlevel.envelope(body)
        if envelope.timestamp is not None:
            age = abs(datetime.now(UTC) - envelope.timestamp)
            if age > self.max_age and not await self._deferred(envelope.event_id):
                raise StaleWebhookError(
                    f"the webhook's timestamp is {age.total_seconds():.0f} s off; "
                    f"refused as a replay (window {self.max_age.total_seconds():.0f} s)"
                )
        connection = await self._connection(gohighlevel.NAME, envelope.account_id,
                                            envelope.event_id)  # fmt: skip
        if envelope.event_type not in gohighlevel.HANDLED:
            return {"status": "ignored", "event_id": envelope.event_id}
        return await self._store_checked(
            connection, envelope.event_id, envelope.event_type, body,
            lambda: gohighlevel.check(envelope.event),
        )  # fmt: skip

    @_receiving
    async def followupboss(
        self, headers: Mapping[str, str], body: bytes, connection_id: int | None = None
    ) -> dict[str, Any]:
        """A Follow Up Boss webhook: the connection whose system key signed it (its body names
        no account), then stored; an event of a family we do not use is only acknowledged."""
        header = headers.get(followupboss.SIGNATURE_HEADER)
        if not header:
            raise WebhookRefusedError(f"the {followupboss.SIGNATURE_HEADER} header is missing")
        connection = await self._signed_followupboss(header, body, connection_id)
        try:
            envelope = followupboss.envelope(body)
        except MalformedWebhookError as exc:
            await self._store(connection, body_digest(body), "unreadable", body, rejected=str(exc))
            raise
        if envelope.event_type not in followupboss.HANDLED:
            return {"status": "ignored", "event_id": envelope.event_id}
        return await self._store_checked(
            connection, envelope.event_id, envelope.event_type, body,
            lambda: followupboss.check(envelope.event),
        )  # fmt: skip

    async def _signed_followupboss(
        self, header: str, body: bytes, connection_id: int | None
    ) -> Connection:
        """The one connection whose system key verifies the signature; the list of them is
        kept briefly and reread once when none verifies (a connection added since)."""
        if connection_id is not None:
            one = await self._read(self.connections.by_id(connection_id))
            if one is None or one.provider != followupboss.NAME:
                raise UnknownAccountError(f"no Follow Up Boss connection {connection_id}")
            candidates = [one]
        else:
            candidates = await self._followupboss_connections(fresh=False)
        matched = [c for c in candidates if followupboss.signed_by(c, header, body)]
        if not matched and connection_id is None:
            candidates = await self._followupboss_connections(fresh=True)
            matched = [c for c in candidates if followupboss.signed_by(c, header, body)]
        if not matched:
            raise WebhookRefusedError(
                f"the {followupboss.SIGNATURE_HEADER} signature matches no Follow Up Boss "
                "connection's system key"
            )
        if len(matched) > 1:
            raise UnknownAccountError(
                f"{len(matched)} Follow Up Boss connections share this system key: register "
                "the webhook URL with ?connection_id=<id> to say which"
            )
        return matched[0]

    async def _followupboss_connections(self, fresh: bool) -> list[Connection]:
        now = time.monotonic()
        if not fresh and self._fub is not None and now - self._fub[0] < CACHE_SECONDS:
            return self._fub[1]
        connections = await self._read(self.connections.of_provider(followupboss.NAME))
        self._fub = (now, connections)
        return connections

    @_receiving
    async def generic(
        self, connection_id: int, headers: Mapping[str, str], body: bytes
    ) -> dict[str, Any]:
        """A generic signed webhook (our lead schema): connection, HMAC, then stored; its event
        id is the caller's, kept apart per connection."""
        header = headers.get(webhook.SIGNATURE_HEADER)
        if not header:
            raise WebhookRefusedError(f"the {webhook.SIGNATURE_HEADER} header is missing")
        connection = await self._read(self.connections.by_id(connection_id))
        if connection is None or connection.provider != webhook.NAME:
            raise UnknownAccountError(f"no generic webhook connection {connection_id}")
        if not webhook.signed_by(connection, header, body):
            raise WebhookRefusedError(f"the {webhook.SIGNATURE_HEADER} signature does not match")
        given = webhook.event_id(body, headers.get(webhook.EVENT_ID_HEADER))
        stored_id = f"{connection.id}:{given}"
        try:
            webhook.parse(body)
        except MalformedWebhookError as exc:
            await self._store(connection, stored_id, "lead", body, rejected=str(exc))
            raise
        answer = await self._store(connection, stored_id, "lead", body)
        return {**answer, "event_id": given}

    async def _read(self, query: Awaitable[T]) -> T:
        """A connection lookup; the database unreachable is a 429 (retry later), never a 5xx."""
        try:
            return await query
        except CONNECTION_ERRORS as exc:
            if not is_connection_error(exc):
                raise
            raise InboxOverloadedError("the database is unreachable; retry later") from exc

    async def _connection(self, provider: str, account_id: str, event_id: str) -> Connection:
        """The account's connection; unreadable, the (verified) webhook is deferred as a 429
        from storing it would be: its retry may come after the replay window."""
        try:
            connection = await self.connections.by_account(provider, account_id)
        except CONNECTION_ERRORS as exc:
            if not is_connection_error(exc):
                raise
            await self._defer(event_id)
            raise InboxOverloadedError("the database is unreachable; retry later") from exc
        if connection is None:
            raise UnknownAccountError(f"no team connected {provider} account {account_id!r}")
        return connection

    async def _store_checked(
        self,
        connection: Connection,
        event_id: str,
        event_type: str,
        body: bytes,
        check: Callable[[], None],
    ) -> dict[str, Any]:
        """Store a handled event; one without what processing needs is recorded as rejected
        for the team's admins, then refused (422)."""
        try:
            check()
        except MalformedWebhookError as exc:
            await self._store(connection, event_id, event_type, body, rejected=str(exc))
            raise
        return await self._store(connection, event_id, event_type, body)

    async def _store(
        self,
        connection: Connection,
        event_id: str,
        event_type: str,
        body: bytes,
        rejected: str | None = None,
    ) -> dict[str, Any]:
        """Persist before answering; a repeat changes nothing."""
        if rejected is None and self.pending >= self.max_pending:
            await self._defer(event_id)
            raise InboxOverloadedError(f"{self.pending} webhooks wait to be processed", 60.0)
        now = datetime.now(UTC)
        # The delivery's id on the access line: the worker's lines that apply it carry it too.
        annotate(team=connection.team_id, webhook=event_id[:200])
        try:
            stored = await self.store.store({
                "provider": connection.provider, "event_id": event_id[:200],
                "connection_id": connection.id, "team_id": connection.team_id,
                "event_type": event_type[:60], "body": body,
                "status": "rejected" if rejected else "pending", "attempts": 0,
                "lease_until": None, "error": rejected[:1000] if rejected else None,
                "received_at": now, "processed_at": now if rejected else None,
            })  # fmt: skip
        except CONNECTION_ERRORS as exc:
            if not is_connection_error(exc):
                raise
            await self._defer(event_id)
            raise InboxOverloadedError("the database is unreachable; retry later") from exc
        if not stored:
            self.duplicates += 1
            return {"status": "duplicate", "event_id": event_id}
        self.received += 1
        if rejected is None:
            self.pending += 1
            self.wake()
        return {"status": "accepted", "event_id": event_id}


class InboxWorker:
    """Takes pending webhooks under a lease and applies each in its own unit of work."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        connections: ConnectionService,
        auth: Authenticator,
        sync: CrmSync,
        providers: Mapping[str, Provider],
        http: httpx.AsyncClient,
        receiver: WebhookReceiver | None = None,
        gate: asyncio.Lock | None = None,
    ) -> None:
        self.sessions = sessions
        self.connections = connections
        self.auth = auth
        self.sync = sync
        self.providers = providers
        self.http = http
        self.receiver = receiver
        #: Held around each write (SQLite): see `crm.store`.
        self.gate = gate
        self.processed = 0
        self.failed = 0
        self._counted_at = 0.0

    def _gated(self) -> contextlib.AbstractAsyncContextManager[object]:
        return self.gate if self.gate is not None else contextlib.nullcontext()

    async def step(self) -> bool:
        """Process one batch; True when more may be waiting."""
        limit = BATCH if await self._yield_to_receiver() else FLOOD_BATCH
        now = datetime.now(UTC)
        if self.receiver is not None and time.monotonic() - self._counted_at > 1.0:
            async with self.sessions() as session:
                self.receiver.pending = await repo.pending_count(session)
            self._counted_at = time.monotonic()
        async with self.sessions() as session:
            if not await repo.any_webhook_due(session, now):
                return False  # polled idle: no write transaction, no turn at SQLite's gate
        lease_until = now + timedelta(seconds=LEASE_SECONDS)
        async with self._gated(), transaction(self.sessions) as session:
            rows = await repo.claim_webhooks(session, now, lease_until, limit)
        try:
            await self._apply(rows)
        except Exception as exc:
            if is_connection_error(exc):
                await self._release(rows, lease_until)
            raise
        return len(rows) == limit

    async def _yield_to_receiver(self) -> bool:
        """Wait for a pause in webhooks arriving (at most `YIELD_MAX_SECONDS`); False when
        none came (a flood)."""
        if self.receiver is None:
            return True
        deadline = time.monotonic() + YIELD_MAX_SECONDS
        while not self.receiver.activity.quiet(QUIET_SECONDS):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(QUIET_SECONDS)
        return True

    async def _apply(self, rows: Sequence[CrmInboxRow]) -> None:
        together = await self._apply_together(rows)
        for row in rows:
            if row.id in together:
                continue
            # Its lines, and those of the scores it causes, name the webhook and the team.
            with bound(webhook=row.event_id, team=row.team_id):
                await self._apply_alone(row)

    async def _apply_alone(self, row: CrmInboxRow) -> None:
        try:
            await self._process(row.id, row.connection_id, row.provider, row.body, row.attempts)
        except SecretUnreadableError as exc:  # an operator's fix, not a bug: no traceback
            log.warning("webhook %d waits for its connection's secrets (attempt %d): %s",
                        row.id, row.attempts, exc)  # fmt: skip
            if row.attempts >= MAX_ATTEMPTS:
                await self._finish(row.id, "failed", f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # one webhook that cannot be applied must not stop the rest
            if is_connection_error(exc):
                raise  # the database is down: the step gives the rest back
            log.exception("webhook %d could not be applied (attempt %d)", row.id,
                          row.attempts)  # fmt: skip
            if row.attempts >= MAX_ATTEMPTS:
                await self._finish(row.id, "failed", f"{type(exc).__name__}: {exc}")

    async def _release(self, rows: Sequence[CrmInboxRow], lease_until: datetime) -> None:
        """A database blip mid-step: the claimed webhooks not applied are taken again at the
        next step, not once their lease expires; if the database is still down the lease
        does it."""
        with contextlib.suppress(*CONNECTION_ERRORS):
            async with self._gated(), transaction(self.sessions) as session:
                await repo.release_webhooks(session, [row.id for row in rows], lease_until)

    async def _changes(
        self, connection: Connection, provider: Provider, body: bytes
    ) -> list[Change]:
        event = orjson.loads(body)
        if provider.name == gohighlevel.NAME:
            event = gohighlevel.envelope(body).event
        return await provider.changes(connection, event, self.http)

    async def _apply_together(self, rows: Sequence[CrmInboxRow]) -> set[int]:
        """The common case in one unit of work per connection: webhooks read from their own
        body (no fetch) that upsert contacts and add interactions are applied together, each
        lead scored once with all of them (a score's statements once per batch, not per
        webhook). The ids applied; on any problem the group rolls back and each webhook is
        applied alone."""
        groups: dict[int, list[tuple[int, list[Change]]]] = {}
        event_ids = {row.id: row.event_id for row in rows}
        alone: set[int] = set()  # connections whose next webhooks must follow one applied alone
        for row in rows:
            if row.connection_id in alone:
                continue
            try:
                connection = await self.connections.by_id(row.connection_id)
            except SecretUnreadableError:  # applied alone, which records why
                alone.add(row.connection_id)
                continue
            provider = self.providers.get(row.provider)
            changes: list[Change] | None = None
            if connection is not None and provider is not None and provider.name in BATCHED:
                with contextlib.suppress(
                    MalformedWebhookError, ValidationError, ValueError, FetchFailedError
                ):  # applied alone, which records why
                    changes = await self._changes(connection, provider, row.body)
            if changes is None or any(isinstance(c, OutcomeSeen | ContactGone) for c in changes):
                alone.add(row.connection_id)  # in order: what follows it waits for it
                continue
            groups.setdefault(row.connection_id, []).append((row.id, changes))
        done: set[int] = set()
        for connection_id, items in groups.items():
            connection = await self.connections.by_id(connection_id)
            principal = await self.auth.team_principal(connection.team_id) if connection else None
            if len(items) < 2 or connection is None or principal is None:
                continue
            provider = self.providers[connection.provider]
            changes = [change for _, row_changes in items for change in row_changes]
            # Their lines, and those of the scores they cause, name the webhooks and the team.
            with bound(webhook=",".join(event_ids[row_id] for row_id, _ in items),
                       team=connection.team_id):  # fmt: skip
                try:
                    async with self._gated(), transaction(self.sessions) as session:
                        applied = await self.sync.apply(session, principal, connection, provider,
                                                        changes)  # fmt: skip
                        now = datetime.now(UTC)
                        for row_id, row_changes in items:
                            note = _notes_of(applied.notes, provider, row_changes)
                            if not await repo.finish_webhook(session, row_id, "done", note, now):
                                raise _AlreadyDoneError
                except (_AlreadyDoneError, ContactInvalidError, MalformedWebhookError,
                        ValidationError):  # fmt: skip
                    continue
                log.info("%d webhooks applied together", len(items),
                         extra={"provider": provider.name})  # fmt: skip
            done |= {row_id for row_id, _ in items}
            self.processed += len(items)
        return done

    async def _process(
        self, row_id: int, connection_id: int, provider_name: str, body: bytes, attempts: int
    ) -> None:
        connection = await self.connections.by_id(connection_id)
        provider = self.providers.get(provider_name)
        if connection is None or provider is None:
            await self._finish(row_id, "ignored", "the connection was removed")
            return
        principal = await self.auth.team_principal(connection.team_id)
        if principal is None:
            await self._finish(row_id, "ignored", "the team was removed")
            return
        try:
            changes = await self._changes(connection, provider, body)
            async with self._gated(), transaction(self.sessions) as session:
                applied = await self.sync.apply(session, principal, connection, provider, changes)
                note = "; ".join(applied.notes)[:1000] or None
                if not await repo.finish_webhook(session, row_id, "done", note,
                                                 datetime.now(UTC)):  # fmt: skip
                    raise _AlreadyDoneError
        except _AlreadyDoneError:
            return  # another worker finished it after our lease expired: its effects stand
        except (MalformedWebhookError, ContactInvalidError, ValidationError) as exc:
            await self._finish(row_id, "failed", f"{type(exc).__name__}: {exc}")
            return
        except FetchFailedError as exc:
            if attempts >= MAX_ATTEMPTS:
                await self._finish(row_id, "failed", f"gave up after {attempts} attempts: {exc}")
            return  # stays pending; taken again once its lease expires
        self.processed += 1
        log.info("webhook applied", extra={"provider": provider_name})

    async def _finish(self, row_id: int, status: str, error: str) -> None:
        if status == "failed":
            self.failed += 1
            log.warning("webhook %d %s: %s", row_id, status, error[:300])
        async with self._gated(), transaction(self.sessions) as session:
            await repo.finish_webhook(session, row_id, status, error[:1000], datetime.now(UTC))


def _notes_of(notes: Sequence[str], provider: Provider, changes: Sequence[Change]) -> str | None:
    """The notes of a group's apply that concern one webhook's leads (the others' are not
    its own)."""
    leads = {lead_id_for(provider.lead_prefix, change.contact_id) for change in changes}
    own = [note for note in notes if note.split(":", 1)[0] in leads]
    return "; ".join(own)[:1000] or None


class _AlreadyDoneError(Exception):
    """Rolls back a webhook's effects when another worker had marked it done."""


def inbox_pump(worker: InboxWorker, interval: float) -> Pump:
    """The worker's loop: woken by this worker's receiver, polling for the others'."""
    return Pump("crm-inbox", interval, worker.step)
