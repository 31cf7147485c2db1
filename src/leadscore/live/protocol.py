"""The live-events protocol: close codes, client messages, filters and subscriptions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from leadscore.live.events import (
    Event,
    EventType,
)

# Close codes (documented in docs/websocket.md).
CLOSE_GOING_AWAY: Final = 1001  # the server is shutting down


CLOSE_TRY_AGAIN: Final = 1013  # at the connection limit, or the database is down: retry


CLOSE_UNAUTHORIZED: Final = 4401  # no, invalid or expired credentials (also: token expired)


CLOSE_KEY_REVOKED: Final = 4403  # the connection's key was revoked while it was open


CLOSE_IDLE: Final = 4408  # nothing heard from the client within the idle timeout


CLOSE_TOO_SLOW: Final = 4409  # one send stalled longer than the send timeout


MAX_CLIENT_MESSAGE: Final = 65_536


Classification = Literal["hot", "warm", "cold"]


class Filters(BaseModel):
    """Which scored leads a client wants: at least this score, of these classes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_score: float | None = Field(default=None, ge=0, le=100)
    classification: tuple[Classification, ...] | None = Field(default=None, min_length=1)


class ClientMessage(BaseModel):
    """A message from the client; `events` and `filters` belong to (un)subscribe."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["subscribe", "unsubscribe", "ping", "pong", "get_status"]
    events: list[EventType] | None = None
    filters: Filters | None = None
    id: str | int | None = Field(default=None, description="Echoed in the reply.")


@dataclass
class Subscription:
    """The event types a connection receives and the filters on scored leads."""

    events: set[str] = field(default_factory=set)
    filters: Filters = field(default_factory=Filters)

    def wants(self, event: Event) -> bool:
        """Whether this event passes the connection's subscription and filters."""
        if event.event_type not in self.events:
            return False
        filters = self.filters
        if event.score is not None:
            if filters.min_score is not None and event.score < filters.min_score:
                return False
            if filters.classification is not None and (
                event.classification not in filters.classification
            ):
                return False
        return True

    def describe(self) -> dict[str, Any]:
        """The subscription as clients and admins see it."""
        return {"events": sorted(self.events), "filters": self.filters.model_dump()}
