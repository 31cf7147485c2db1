"""One live client: its explicit state, queue of pending frames and what it has heard."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from starlette.websockets import WebSocket

from leadscore.auth.principal import Principal
from leadscore.core.timestamps import iso_z
from leadscore.live.protocol import Subscription
from leadscore.live.wsproto import frame_writer


class ConnectionState(StrEnum):
    """Where a connection is in its life; only OPEN connections receive events."""

    CONNECTING = "connecting"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


@dataclass
class HubSettings:
    """Heartbeat, idle timeout, queue bound and limits of one worker's hub."""

    heartbeat_seconds: float = 20.0
    idle_timeout_seconds: float = 60.0
    send_timeout_seconds: float = 30.0
    queue_size: int = 1000
    max_connections: int = 10_000
    flush_interval_seconds: float = 0.02
    recheck_seconds: float = 10.0  # how often open credentials are checked


#: Which of these key ids are still active (the authenticator's `active_keys`).
KeyCheck = Callable[[Collection[int]], Awaitable[set[int]]]


class Connection:
    """One client: its principal, subscription, bounded outgoing queue and sender task.

    A full queue drops its oldest event (counted) so a slow client never holds memory or
    other clients; a send that stalls past the send timeout closes the connection.
    """

    def __init__(self, websocket: WebSocket, principal: Principal, queue_size: int) -> None:
        self.id = uuid.uuid4().hex[:16]
        self.websocket = websocket
        self.principal = principal
        self.redacted = principal.role == "viewer"
        self.state = ConnectionState.CONNECTING
        self.subscription = Subscription()
        self.connected_at = datetime.now(UTC)
        self.last_heard = time.monotonic()
        self.last_heard_at = self.connected_at
        self.last_heartbeat_at: datetime | None = None
        self.sent = 0
        self.received = 0
        self.dropped = 0
        self.send_started: float | None = None
        self.close_reason = "client closed"
        self.queue: deque[tuple[str, float | None]] = deque()
        self.queue_size = queue_size
        self.wake = asyncio.Event()
        self.writer = frame_writer(websocket.scope)
        self.group: tuple[Any, ...] = ()
        self.regroup()

    def regroup(self) -> None:
        """Connections of one group receive the same bytes for the same events."""
        s = self.subscription
        self.group = (self.principal.team_id, self.redacted, frozenset(s.events), s.filters)

    def offer(self, text: str, published_at: float | None = None) -> bool:
        """Queue a message; when full, drop the oldest. False when something was dropped."""
        if self.state is not ConnectionState.OPEN:
            return True
        dropped = len(self.queue) >= self.queue_size
        if dropped:
            self.queue.popleft()
            self.dropped += 1
        self.queue.append((text, published_at))
        self.wake.set()
        return not dropped

    def heard(self) -> None:
        self.last_heard = time.monotonic()
        self.last_heard_at = datetime.now(UTC)

    def info(self) -> dict[str, Any]:
        """What `GET /ws/connections` shows about this connection."""
        return {
            "id": self.id,
            "team_id": self.principal.team_id,
            "team": self.principal.team_name,
            "role": self.principal.role,
            "key_id": self.principal.key_id,
            "credentials_expire_at": (
                None
                if self.principal.expires_at is None
                else iso_z(datetime.fromtimestamp(self.principal.expires_at, UTC))
            ),
            "state": self.state.value,
            "connected_at": iso_z(self.connected_at),
            "last_heartbeat": iso_z(self.last_heartbeat_at) if self.last_heartbeat_at else None,
            "last_client_message": iso_z(self.last_heard_at),
            "subscriptions": self.subscription.describe(),
            "queue_depth": len(self.queue),
            "messages_sent": self.sent,
            "messages_received": self.received,
            "dropped": self.dropped,
            "direct_writes": self.writer is not None,
        }
