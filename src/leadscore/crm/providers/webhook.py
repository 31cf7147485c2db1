"""The generic signed webhook: our lead schema in (Zapier, Make, a custom CRM), scores out to
the connection's URL when it has one, signed the same way."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any, Final, Literal

import httpx
import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from leadscore.core.schemas import validation_detail
from leadscore.crm.connections import Connection
from leadscore.crm.providers.base import (
    Change,
    ContactData,
    Delivery,
    MalformedWebhookError,
    OutcomeSeen,
    body_digest,
    failure,
)
from leadscore.engine.schema import LeadData, LeadId

NAME: Final = "webhook"
SIGNATURE_HEADER: Final = "x-leadscore-signature"
EVENT_ID_HEADER: Final = "x-leadscore-event-id"
#: No outside limit applies: this keeps one receiver from being flooded by our write-backs.
RATE_LIMIT: Final = (50, 10.0)


class OutcomeGiven(BaseModel):
    """What happened to the lead: won (converted, and closed at `value`) or lost."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["won", "lost"]
    value: float | None = Field(default=None, gt=0, le=1e10)
    occurred_at: AwareDatetime | None = None


class LeadEvent(BaseModel):
    """A generic webhook's body: a lead as `POST /score` takes it, an optional event id and
    an optional outcome."""

    model_config = ConfigDict(extra="forbid")

    lead_id: LeadId
    lead_data: LeadData = Field(default_factory=LeadData)
    event_id: str | None = Field(default=None, min_length=1, max_length=150)
    outcome: OutcomeGiven | None = None


def signature(secret: str, body: bytes) -> str:
    """The hex HMAC-SHA256 of the raw body under the connection's signing secret."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signed_by(connection: Connection, header: str, body: bytes) -> bool:
    """Whether the connection's secret signed the body (compared in constant time)."""
    if not connection.signing_secret:
        return False
    return hmac.compare_digest(signature(connection.signing_secret, body), header.strip().lower())


def event_id(body: bytes, header: str | None) -> str:
    """The body's `event_id`, else the header's, else the body's digest (read before the
    body is validated, so a rejected body is recorded once too)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    given = data.get("event_id") if isinstance(data, dict) else None
    if isinstance(given, str) and given.strip():
        return given.strip()[:150]
    if header and header.strip():
        return header.strip()[:150]
    return body_digest(body)


def parse(body: bytes) -> LeadEvent:
    """The body as a lead event; anything else is malformed (422, recorded)."""
    try:
        return LeadEvent.model_validate_json(body)
    except ValidationError as exc:
        raise MalformedWebhookError(str(validation_detail(exc.errors()))[:900]) from exc


class GenericWebhook:
    """The generic provider: the lead id is the caller's own (no prefix) and is the contact."""

    name = NAME
    lead_prefix = ""
    rate_limit = RATE_LIMIT
    requests_per_write_back = 1

    async def changes(
        self, connection: Connection, event: dict[str, Any], http: httpx.AsyncClient
    ) -> list[Change]:
        """The lead's given fields merged over what is known of it; its outcome, if given."""
        lead = LeadEvent.model_validate(event)
        fields = lead.lead_data.model_dump(mode="json", exclude_unset=True)
        changes: list[Change] = [ContactData(contact_id=lead.lead_id, fields=fields)]
        if lead.outcome is not None:
            changes.append(
                OutcomeSeen(
                    contact_id=lead.lead_id, outcome=lead.outcome.status,
                    at=lead.outcome.occurred_at or datetime.now(UTC), value=lead.outcome.value,
                )
            )  # fmt: skip
        return changes

    async def write_back(
        self,
        connection: Connection,
        contact_id: str,
        payload: dict[str, Any],
        http: httpx.AsyncClient,
    ) -> Delivery:
        """POST the score to the connection's URL, signed like the webhooks it sends us."""
        if not connection.api_base or not connection.signing_secret:
            return Delivery("failed", "the connection has no write-back URL")
        body = orjson.dumps({"lead_id": contact_id, **payload})
        response = await http.post(
            connection.api_base, content=body,
            headers={"Content-Type": "application/json",
                     "X-LeadScore-Signature": signature(connection.signing_secret, body)},
        )  # fmt: skip
        failed = failure(response)
        return failed if failed is not None else Delivery("sent")
