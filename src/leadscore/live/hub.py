"""The WebSocket hub: serves authenticated connections and fans events out to them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections import deque
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from pydantic import ValidationError
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from leadscore.auth.principal import Principal
from leadscore.auth.service import CredentialsUnavailableError
from leadscore.core.bus import BusUnavailableError, EventBus
from leadscore.core.lifecycle import Background
from leadscore.core.logs import DependencyLog
from leadscore.core.metrics import Metrics
from leadscore.core.schemas import validation_detail
from leadscore.live.connection import Connection, ConnectionState, HubSettings, KeyCheck
from leadscore.live.events import (
    AUDIENCE,
    SUBSCRIBABLE,
    Event,
    EventPublisher,
    EventType,
    Listening,
    audience_event,
    decode,
    encode,
    envelope,
    parse_audience,
)
from leadscore.live.protocol import (
    CLOSE_GOING_AWAY,
    CLOSE_IDLE,
    CLOSE_KEY_REVOKED,
    CLOSE_TOO_SLOW,
    CLOSE_TRY_AGAIN,
    CLOSE_UNAUTHORIZED,
    MAX_CLIENT_MESSAGE,
    ClientMessage,
    Filters,
    Subscription,
)
from leadscore.live.stats import LATENCY_SAMPLES, percentiles
from leadscore.live.wsproto import text_frame

log = logging.getLogger(__name__)


SHARE_TTL_SECONDS: Final = 5.0  # each worker re-shares its state every second


#: A new worker hears every other worker's audience within one heartbeat (1 s).
AUDIENCE_WARMUP_SECONDS: Final = 2.0


def _report_crash(task: asyncio.Task[None]) -> None:
    """A background task that dies would silently stop heartbeats: say so loudly."""
    if not task.cancelled() and task.exception() is not None:
        log.error("%s stopped", task.get_name(), exc_info=task.exception())


class LiveHub(Background):
    """This worker's WebSocket connections and the fan-out of bus events to them."""

    def __init__(
        self,
        bus: EventBus,
        publisher: EventPublisher,
        settings: HubSettings | None = None,
        active_keys: KeyCheck | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.bus = bus
        self.metrics = metrics
        self.publisher = publisher
        self.settings = settings or HubSettings()
        self.active_keys = active_keys
        self.worker = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._connections: dict[str, Connection] = {}
        # Shared every second: an outage is one line and a count every 30 s.
        self._sharing = DependencyLog(log, "redis (hub state)")
        self._latency_ms: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self._counts = {
            "opened": 0, "closed": 0, "refused": 0, "messages_in": 0, "messages_out": 0,
            "dropped": 0, "events_received": 0, "deliveries": 0,
        }  # fmt: skip
        self._closed_by: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._checker: asyncio.Task[None] | None = None
        self._pending: list[Event] = []
        self._flush_handle: asyncio.Handle | None = None
        self._last_flush = 0.0
        self._listening: Listening = {}
        self._announcing = asyncio.Lock()

    async def start(self) -> None:
        """Receive every worker's events; start the heartbeat."""
        await self.bus.subscribe(self._deliver)
        if self.bus.name != "memory":
            self.publisher.audience.expect_others(AUDIENCE_WARMUP_SECONDS)
        self._ticker = asyncio.create_task(self._heartbeat(), name="ws-heartbeat")
        self._ticker.add_done_callback(_report_crash)
        self._checker = asyncio.create_task(self._recheck_loop(), name="ws-recheck")
        self._checker.add_done_callback(_report_crash)

    # -- fan-out ---------------------------------------------------------------------------

    def _deliver(self, message: bytes) -> None:
        """A bus message: its events join the next flush; announcements update the audience.

        Flushes are at most `flush_interval_seconds` apart: a quiet hub sends each event at
        once, a busy one sends the events of the last few milliseconds together.
        """
        for event in decode(message):
            if event.event_type == AUDIENCE:
                worker, listening, ttl = parse_audience(event)
                if worker != self.worker:
                    self.publisher.audience.heard(worker, listening, ttl)
                continue
            self._pending.append(event)
        if self._pending and self._flush_handle is None:
            loop = asyncio.get_running_loop()
            delay = self._last_flush + self.settings.flush_interval_seconds - time.monotonic()
            self._flush_handle = (
                loop.call_soon(self._flush) if delay <= 0 else loop.call_later(delay, self._flush)
            )

    def _flush(self) -> None:
        self._flush_handle = None
        self._last_flush = time.monotonic()
        pending, self._pending = self._pending, []
        self.fan_out(pending)

    def fan_out(self, events: Sequence[Event]) -> int:
        """Send events to every local connection that wants them; returns the deliveries.

        Connections alike in team, role and subscription form a group: the group's events are
        chosen, framed and joined once, then each member gets them in one write.
        """
        self._counts["events_received"] += len(events)
        groups: dict[tuple[Any, ...], list[Connection]] = {}
        for connection in self._connections.values():
            if connection.state is ConnectionState.OPEN and connection.subscription.events:
                groups.setdefault(connection.group, []).append(connection)
        delivered = 0
        for (team_id, redacted, *_), members in groups.items():
            subscription = members[0].subscription
            wanted = [
                e for e in events
                if (e.team_id is None or e.team_id == team_id) and subscription.wants(e)
            ]  # fmt: skip
            if not wanted:
                continue
            copies = [e.redacted if redacted and e.redacted else e.body for e in wanted]
            frames = b"".join(text_frame(copy) for copy in copies)
            texts: list[str] | None = None
            written = 0
            for connection in members:
                if self._write(connection, frames):
                    connection.sent += len(wanted)
                    written += 1
                    continue
                texts = texts or [copy.decode() for copy in copies]
                for event, text in zip(wanted, texts, strict=True):
                    if not connection.offer(text, event.published_at):
                        self._counts["dropped"] += 1
                        if self.metrics is not None:
                            self.metrics.ws_dropped.inc()
            delivered += len(wanted) * len(members)
            if written:
                # One sample per event and group: when the group's last socket was written.
                self._counts["messages_out"] += len(wanted) * written
                now = time.time()
                self._latency_ms.extend((now - e.published_at) * 1000.0 for e in wanted)
        self._counts["deliveries"] += delivered
        return delivered

    @staticmethod
    def _write(connection: Connection, frames: bytes) -> bool:
        """Write now when nothing of this connection is queued or in flight and it can take it."""
        return (
            connection.writer is not None
            and not connection.queue
            and connection.send_started is None
            and connection.writer(frames)
        )

    async def broadcast_message(self, event: Event) -> None:
        """Send an event to the matching clients of every worker (through the bus)."""
        self.publisher.emit(event)
        await self.publisher.flush()

    async def _send_loop(self, connection: Connection) -> None:
        """Write the connection's queue in order; only this task sends on its socket."""
        websocket = connection.websocket
        queue = connection.queue
        wake = connection.wake
        latencies = self._latency_ms
        counts = self._counts
        while connection.state is ConnectionState.OPEN:
            await wake.wait()
            wake.clear()
            while queue and connection.state is ConnectionState.OPEN:
                text, published_at = queue.popleft()
                connection.send_started = time.monotonic()
                try:
                    await websocket.send_text(text)
                except (WebSocketDisconnect, RuntimeError, OSError):
                    connection.state = ConnectionState.CLOSING
                    return
                connection.send_started = None
                connection.sent += 1
                counts["messages_out"] += 1
                if published_at is not None:
                    latencies.append((time.time() - published_at) * 1000.0)

    # -- connections -----------------------------------------------------------------------

    async def refuse(
        self,
        websocket: WebSocket,
        reason: str,
        subprotocol: str | None,
        *,
        code: int = CLOSE_UNAUTHORIZED,
    ) -> None:
        """Complete the handshake only to say why, with a documented close code."""
        self._counts["refused"] += 1
        await websocket.accept(subprotocol=subprotocol)
        await websocket.close(code, reason[:120])

    async def serve(
        self, websocket: WebSocket, principal: Principal, subprotocol: str | None
    ) -> None:
        """Run one authenticated connection until the client leaves or is closed."""
        if len(self._connections) >= self.settings.max_connections:
            await websocket.accept(subprotocol=subprotocol)
            await websocket.close(CLOSE_TRY_AGAIN, "this worker is at its connection limit")
            return
        connection = Connection(websocket, principal, self.settings.queue_size)
        await websocket.accept(subprotocol=subprotocol)
        connection.state = ConnectionState.OPEN
        self._connections[connection.id] = connection
        self._counts["opened"] += 1
        if self.metrics is not None:
            self.metrics.ws_connections.inc()
        sender = asyncio.create_task(self._send_loop(connection), name=f"ws-send-{connection.id}")
        connection.offer(
            self._reply(
                EventType.CONNECTION_ESTABLISHED,
                {
                    "connection_id": connection.id,
                    "worker": self.worker,
                    "team": principal.team_name,
                    "role": principal.role,
                    "available_events": sorted(SUBSCRIBABLE),
                    "heartbeat_seconds": self.settings.heartbeat_seconds,
                    "idle_timeout_seconds": self.settings.idle_timeout_seconds,
                    "queue_size": self.settings.queue_size,
                },
            )
        )
        try:
            while connection.state is ConnectionState.OPEN:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                connection.heard()
                connection.received += 1
                self._counts["messages_in"] += 1
                text = message.get("text")
                if text is None:
                    self._error(connection, "invalid_message", "send JSON text messages")
                    continue
                await self.handle_client_message(connection, text)
        except WebSocketDisconnect:
            pass
        finally:
            await self._drop(connection, sender, connection.close_reason)

    async def _drop(self, connection: Connection, sender: asyncio.Task[None], why: str) -> None:
        connection.state = ConnectionState.CLOSED
        await self._announce_if_changed()
        connection.wake.set()
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        if self._connections.pop(connection.id, None) is not None and self.metrics is not None:
            self.metrics.ws_connections.dec()
        self._counts["closed"] += 1
        self._closed_by[why] = self._closed_by.get(why, 0) + 1

    async def close_connection(self, connection: Connection, code: int, reason: str) -> None:
        """Close from the server side; the connection's receive loop then ends."""
        if connection.state is not ConnectionState.OPEN:
            return
        connection.state = ConnectionState.CLOSING
        connection.close_reason = reason
        connection.wake.set()
        if connection.websocket.application_state is WebSocketState.CONNECTED:
            with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
                await asyncio.wait_for(connection.websocket.close(code, reason), 5.0)

    async def _heartbeat(self) -> None:
        """Each second: share this worker's state; ping, and close the idle and the stalled."""
        interval = self.settings.heartbeat_seconds
        last_ping = time.monotonic()
        while True:
            await asyncio.sleep(min(interval, 1.0))
            now = time.monotonic()
            ping_due = now - last_ping >= interval
            if ping_due:
                last_ping = now
            try:
                await self.share(SHARE_TTL_SECONDS)
            except BusUnavailableError as exc:
                self._sharing.down(f"hub state not shared: {exc}")
            else:
                self._sharing.up()
            async with self._announcing:  # others forget an announcement after 5 s
                if self._listening:
                    await self._announce()
            for connection in list(self._connections.values()):
                if connection.state is not ConnectionState.OPEN:
                    continue
                if now - connection.last_heard > self.settings.idle_timeout_seconds:
                    self._spawn(self.close_connection(connection, CLOSE_IDLE, "idle timeout"))
                elif (
                    connection.send_started is not None
                    and now - connection.send_started > self.settings.send_timeout_seconds
                ):
                    self._spawn(self.close_connection(connection, CLOSE_TOO_SLOW, "send stalled"))
                elif ping_due:
                    connection.last_heartbeat_at = datetime.now(UTC)
                    connection.offer(self._reply(EventType.PING, {}))

    async def _recheck_loop(self) -> None:
        """Every `recheck_seconds`: close connections whose credentials no longer hold."""
        while True:
            await asyncio.sleep(self.settings.recheck_seconds)
            try:
                await self.recheck()
            except CredentialsUnavailableError as exc:  # the next round tries again
                log.warning("open connections not rechecked: %s", exc)

    async def recheck(self) -> int:
        """Close (4401) connections whose token expired and (4403) those whose key was
        revoked; the keys are read from the database in one query. Returns how many closed."""
        now = time.time()
        open_ = [c for c in self._connections.values() if c.state is ConnectionState.OPEN]
        closing: list[tuple[Connection, int, str]] = []
        for connection in open_:
            expires_at = connection.principal.expires_at
            if expires_at is not None and expires_at <= now:
                closing.append((connection, CLOSE_UNAUTHORIZED, "token expired"))
        expired = {c.id for c, _, _ in closing}
        rest = [c for c in open_ if c.id not in expired]
        if self.active_keys is not None and rest:
            active = await self.active_keys({c.principal.key_id for c in rest})
            closing += [
                (c, CLOSE_KEY_REVOKED, "key revoked")
                for c in rest if c.principal.key_id not in active
            ]  # fmt: skip
        for connection, code, reason in closing:
            self._spawn(self.close_connection(connection, code, reason))
        return len(closing)

    async def _announce_if_changed(
        self, prospective: tuple[Connection, set[str]] | None = None
    ) -> None:
        """Tell every worker what this worker's clients listen to, before replying to them.

        A client whose subscription is confirmed therefore receives events scored on any
        worker from then on; without listeners, workers build no events at all.
        """
        async with self._announcing:  # announcements leave in the order the states arose
            listening: dict[int, set[str]] = {}
            for c in self._connections.values():
                if c.state is ConnectionState.OPEN and c.subscription.events:
                    listening.setdefault(c.principal.team_id, set()).update(c.subscription.events)
            if prospective is not None:  # a subscription about to apply
                connection, wanted = prospective
                listening.setdefault(connection.principal.team_id, set()).update(wanted)
            frozen = {team: frozenset(types) for team, types in listening.items()}
            if frozen != self._listening:
                self._listening = frozen
                self.publisher.audience.set_local(frozen)
                await self._announce()

    async def _announce(self) -> None:
        try:
            await self.bus.publish(encode([audience_event(self.worker, self._listening,
                                                          SHARE_TTL_SECONDS)]))  # fmt: skip
        except BusUnavailableError as exc:
            log.warning("audience not announced: %s", exc)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- client messages -------------------------------------------------------------------

    async def handle_client_message(self, connection: Connection, text: str) -> None:
        """Answer one client message; a bad one gets an `error` reply, never a closed socket."""
        if len(text) > MAX_CLIENT_MESSAGE:
            self._error(connection, "message_too_large", f"limit is {MAX_CLIENT_MESSAGE} bytes")
            return
        try:
            raw = orjson.loads(text)
        except orjson.JSONDecodeError:
            self._error(connection, "invalid_json", "the message is not JSON")
            return
        try:
            message = ClientMessage.model_validate(raw)
        except ValidationError as exc:
            detail = validation_detail(exc.errors(), root="message")
            self._error(connection, "invalid_message", detail)
            return
        reply: dict[str, Any] = {} if message.id is None else {"id": message.id}
        if message.type == "ping":
            connection.offer(self._reply(EventType.PONG, reply))
        elif message.type == "pong":
            return
        elif message.type == "get_status":
            connection.offer(self._reply(EventType.STATUS, reply | connection.info()))
        elif message.type == "subscribe":
            wanted = {str(e) for e in (SUBSCRIBABLE if message.events is None else message.events)}
            not_allowed = wanted - SUBSCRIBABLE
            if not_allowed:
                self._error(
                    connection, "invalid_message",
                    [{"field": "events", "message": f"not subscribable: {sorted(not_allowed)}; "
                      f"choose from {sorted(SUBSCRIBABLE)}"}],
                )  # fmt: skip
                return
            # Every worker hears of the subscription first; then it applies and the reply is
            # queued with no await between, so no event can precede `subscription_updated`.
            await self._announce_if_changed(prospective=(connection, wanted))
            self.subscribe_to_events(connection, wanted, message.filters)
            connection.offer(self._reply(EventType.SUBSCRIPTION_UPDATED,
                                         reply | connection.subscription.describe()))  # fmt: skip
        else:
            removed = {str(e) for e in (SUBSCRIBABLE if message.events is None else message.events)}
            connection.subscription.events -= removed
            connection.regroup()
            await self._announce_if_changed()
            connection.offer(self._reply(EventType.SUBSCRIPTION_UPDATED,
                                         reply | connection.subscription.describe()))  # fmt: skip

    def subscribe_to_events(
        self, connection: Connection, events: Iterable[str], filters: Filters | None = None
    ) -> Subscription:
        """Add event types to a connection's subscription; new filters replace the old."""
        connection.subscription.events |= set(events)
        if filters is not None:
            connection.subscription.filters = filters
        connection.regroup()
        return connection.subscription

    def _reply(self, event_type: EventType, data: dict[str, Any]) -> str:
        return envelope(event_type, data).decode()

    def _error(self, connection: Connection, code: str, detail: Any) -> None:
        connection.offer(self._reply(EventType.ERROR, {"code": code, "detail": detail}))

    # -- introspection ---------------------------------------------------------------------

    def get_metrics(self) -> dict[str, Any]:
        """This worker's figures: connections, messages, drops, fan-out latency, subscriptions."""
        samples = sorted(self._latency_ms)
        per_type: dict[str, int] = dict.fromkeys(sorted(str(e) for e in SUBSCRIBABLE), 0)
        for connection in self._connections.values():
            for event_type in connection.subscription.events:
                per_type[event_type] += 1
        return {
            "worker": self.worker,
            "connections": len(self._connections),
            "connections_opened": self._counts["opened"],
            "connections_closed": self._counts["closed"],
            "connections_refused": self._counts["refused"],
            "closed_by_reason": dict(self._closed_by),
            "messages_in": self._counts["messages_in"],
            "messages_out": self._counts["messages_out"],
            "dropped": self._counts["dropped"],
            "events_received": self._counts["events_received"],
            "events_published": self.publisher.published,
            "events_lost": self.publisher.lost,
            "deliveries": self._counts["deliveries"],
            "queued": sum(len(c.queue) for c in self._connections.values()),
            "fanout_latency_ms": percentiles(samples),
            "latency_samples": [round(s, 3) for s in samples[-1000:]],
            "subscriptions": per_type,
        }

    def get_connection_info(self) -> list[dict[str, Any]]:
        """Every connection of this worker."""
        return [c.info() | {"worker": self.worker} for c in self._connections.values()]

    async def share(self, ttl_seconds: float) -> None:
        """Publish this worker's metrics and connections for the admin endpoints of others."""
        state = {"metrics": self.get_metrics(), "connections": self.get_connection_info()}
        await self.bus.share(self.worker, orjson.dumps(state), ttl_seconds)

    async def cluster(self) -> list[dict[str, Any]]:
        """Every worker's shared state, this worker's current one first."""
        mine = {"metrics": self.get_metrics(), "connections": self.get_connection_info()}
        try:
            others = await self.bus.shared()
        except BusUnavailableError as exc:
            log.warning("other workers' hub state unavailable: %s", exc)
            others = {}
        return [mine] + [orjson.loads(v) for k, v in sorted(others.items()) if k != self.worker]

    async def close(self) -> None:
        """Close every connection (1001: going away) and stop the heartbeat and rechecks."""
        for task in (self._ticker, self._checker):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await asyncio.gather(
            *(
                self.close_connection(c, CLOSE_GOING_AWAY, "server shutting down")
                for c in list(self._connections.values())
            )
        )
        for task in list(self._tasks):
            task.cancel()
