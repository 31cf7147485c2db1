"""What a provider turns a webhook into, and what a write-back attempt ends as."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

import httpx
import orjson

from leadscore.core.errors import LeadScoreError
from leadscore.crm.connections import Connection


class WebhookRefusedError(LeadScoreError):
    """A webhook that is not genuine (bad signature) or too old to trust."""

    status_code = 401
    code = "invalid_signature"


class UnknownAccountError(LeadScoreError):
    """A webhook of an account no team connected."""

    status_code = 404
    code = "unknown_account"


class MalformedWebhookError(LeadScoreError):
    """A signed webhook whose content is not what the provider sends."""

    status_code = 422
    code = "malformed_webhook"


class FetchFailedError(Exception):
    """Reading what a webhook points to failed for now (the CRM is down): try again later."""


@dataclass(frozen=True)
class ContactData:
    """Fields of a contact as lead fields; `custom` holds the CRM's custom fields by id/name,
    mapped through the connection; `tags` are matched against `tag:<name>` mappings."""

    contact_id: str
    fields: dict[str, Any] = field(default_factory=dict)
    custom: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] | None = None


@dataclass(frozen=True)
class MessageSeen:
    """A message in a conversation: inbound ones are interactions; outbound ones start the
    clock of the lead's next reply."""

    contact_id: str
    direction: Literal["inbound", "outbound"]
    at: datetime
    conversation_id: str | None
    kind: str  # the interaction type (sms, email_response, call, chat)
    text: str | None = None


@dataclass(frozen=True)
class AppointmentSeen:
    """An appointment booked with the lead: an interaction."""

    contact_id: str
    at: datetime
    title: str | None = None


@dataclass(frozen=True)
class OutcomeSeen:
    """A deal's status: won (converted, and closed at its value) or lost."""

    contact_id: str
    outcome: Literal["won", "lost"]
    at: datetime
    value: float | None = None


@dataclass(frozen=True)
class ContactGone:
    """The contact was deleted in the CRM."""

    contact_id: str


Change = ContactData | MessageSeen | AppointmentSeen | OutcomeSeen | ContactGone


@dataclass(frozen=True)
class Delivery:
    """How one write-back attempt went: sent; retry (after at least `retry_after` s); failed."""

    result: Literal["sent", "retry", "failed"]
    detail: str | None = None
    retry_after: float | None = None
    #: The provider's own limit says stop until then (seconds from now), if it said so.
    pause_for: float | None = None


class Provider(Protocol):
    """One CRM: its webhook events as changes, and the write-back of a score."""

    name: str
    lead_prefix: str
    #: Requests per window per connection (the CRM's own limit) and what one write-back costs.
    rate_limit: tuple[int, float]
    requests_per_write_back: int

    async def changes(
        self, connection: Connection, event: dict[str, Any], http: httpx.AsyncClient
    ) -> list[Change]:
        """What a stored webhook says happened (may read the CRM's API: FetchFailedError)."""
        ...

    async def write_back(
        self,
        connection: Connection,
        contact_id: str,
        payload: dict[str, Any],
        http: httpx.AsyncClient,
    ) -> Delivery:
        """Write one score to one contact."""
        ...


def json_object(body: bytes) -> dict[str, Any]:
    """A webhook body as the JSON object every provider sends; anything else is malformed."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedWebhookError(f"the body is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise MalformedWebhookError("the body is not a JSON object")
    return value


def body_digest(body: bytes) -> str:
    """An event id for a webhook that carries none: the same body is the same event."""
    return "sha256:" + hashlib.sha256(body).hexdigest()


_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def lead_id_for(prefix: str, contact_id: str) -> str:
    """The lead id of a CRM contact: stable, within the lead id alphabet and length (no
    prefix: the contact id is the caller's own lead id, as the generic webhook's is)."""
    safe = _UNSAFE.sub("_", contact_id)
    return (f"{prefix}-{safe}" if prefix else safe)[:100]


def retry_after_seconds(response: httpx.Response) -> float | None:
    """A Retry-After header in seconds (HTTP dates are not used by these CRMs)."""
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def failure(response: httpx.Response, pause: float | None = None) -> Delivery | None:
    """None for a success; otherwise the failed delivery, pausing the connection for `pause`
    (the CRM's own count ran out) or the answer's Retry-After."""
    problem = classify(response)
    if problem is None:
        return None
    return Delivery(problem.result, problem.detail, problem.retry_after,
                    pause or problem.retry_after)  # fmt: skip


def classify(response: httpx.Response) -> Delivery | None:
    """None for a success; otherwise whether the status is worth retrying."""
    status = response.status_code
    if 200 <= status < 300:
        return None
    detail = f"HTTP {status}: {response.text[:300]}"
    if status == 429 or status == 408 or status >= 500:
        return Delivery("retry", detail, retry_after=retry_after_seconds(response))
    return Delivery("failed", detail)
