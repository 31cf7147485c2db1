"""GoHighLevel (LeadConnector): RSA-signed webhooks in, API v2 contact updates out."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any, Final, Literal

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from leadscore.crm.connections import Connection
from leadscore.crm.providers.base import (
    AppointmentSeen,
    Change,
    ContactData,
    ContactGone,
    Delivery,
    MalformedWebhookError,
    MessageSeen,
    OutcomeSeen,
    WebhookRefusedError,
    body_digest,
    failure,
    json_object,
)

NAME: Final = "gohighlevel"
API_VERSION: Final = "2021-07-28"
SIGNATURE_HEADER: Final = "x-wh-signature"
CONTACT_EVENTS: Final = frozenset({"ContactCreate", "ContactUpdate", "ContactTagUpdate"})
#: The events the loop uses; others (notes, tasks, invoices …) are acknowledged and dropped.
HANDLED: Final = CONTACT_EVENTS | {
    "ContactDelete", "InboundMessage", "OutboundMessage", "AppointmentCreate",
    "OpportunityStatusUpdate",
}  # fmt: skip
MESSAGE_KINDS: Final = {"SMS": "sms", "Email": "email_response", "CALL": "call"}
#: GoHighLevel allows 100 requests per 10 s per location. Our limiter is a GCRA, which lets a
#: full burst through and then the steady rate: 9 per second never passes 99 in any 10 s.
RATE_LIMIT: Final = (9, 1.0)
WINDOW_SECONDS: Final = 10.0


def published_key() -> str:
    """GoHighLevel's published webhook key, shipped with the package."""
    return (
        resources.files("leadscore.crm.providers")
        .joinpath("gohighlevel-webhook-public-key.pem")
        .read_text()
    )


def load_key(pem: str) -> rsa.RSAPublicKey:
    """The RSA public key in PEM text; anything else is a configuration error."""
    key = serialization.load_pem_public_key(pem.encode())
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("LEADSCORE_GHL_WEBHOOK_PUBLIC_KEY is not an RSA public key")
    return key


def verify(key: rsa.RSAPublicKey, signature: str | None, body: bytes) -> None:
    """RSASSA-PKCS1-v1_5 with SHA-256 over the raw body, base64 in `x-wh-signature`."""
    if not signature:
        raise WebhookRefusedError(f"the {SIGNATURE_HEADER} header is missing")
    try:
        key.verify(base64.b64decode(signature, validate=True), body, padding.PKCS1v15(),
                   hashes.SHA256())  # fmt: skip
    except (InvalidSignature, ValueError) as exc:
        raise WebhookRefusedError(f"the {SIGNATURE_HEADER} signature does not match") from exc


@dataclass(frozen=True)
class Envelope:
    """What the receiver reads of a webhook before storing it."""

    event_id: str
    event_type: str
    account_id: str
    timestamp: datetime | None
    event: dict[str, Any]


def _parse_time(value: object, name: str) -> datetime:
    if not isinstance(value, str):
        raise MalformedWebhookError(f"{name} must be an ISO 8601 time, got {value!r}")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise MalformedWebhookError(f"{name} is not an ISO 8601 time: {value[:40]!r}") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def envelope(body: bytes) -> Envelope:
    """Flat (the per-event docs) or `data`-wrapped (the marketplace guide) payloads alike."""
    outer = json_object(body)
    inner = outer.get("data")
    event = inner if isinstance(inner, dict) and "type" not in outer else outer
    event_type, account = event.get("type"), event.get("locationId")
    if not isinstance(event_type, str) or not event_type:
        raise MalformedWebhookError("the webhook has no `type`")
    if not isinstance(account, str) or not account:
        raise MalformedWebhookError("the webhook has no `locationId`")
    stamp = outer.get("timestamp", event.get("timestamp"))
    webhook_id = outer.get("webhookId", event.get("webhookId"))
    return Envelope(
        event_id=webhook_id if isinstance(webhook_id, str) and webhook_id else body_digest(body),
        event_type=event_type,
        account_id=account,
        timestamp=None if stamp is None else _parse_time(stamp, "timestamp"),
        event=event,
    )


def _contact_id(event: dict[str, Any]) -> str:
    key = "id" if event["type"] in CONTACT_EVENTS | {"ContactDelete"} else "contactId"
    holder = event.get("appointment") if event["type"] == "AppointmentCreate" else event
    value = holder.get(key) if isinstance(holder, dict) else None  # a signed body may be any JSON
    if not isinstance(value, str) or not value:
        raise MalformedWebhookError(f"a {event['type']} webhook needs the contact's `{key}`")
    return value


def check(event: dict[str, Any]) -> None:
    """Refuse, before storing, a handled event without what processing it needs."""
    if event["type"] in HANDLED:
        _contact_id(event)
    if event["type"] == "OpportunityStatusUpdate" and not isinstance(event.get("status"), str):
        raise MalformedWebhookError("an OpportunityStatusUpdate needs its `status`")
    if event["type"] in ("InboundMessage", "OutboundMessage"):
        _parse_time(event.get("dateAdded"), "dateAdded")  # when the message was sent


_TAGS = re.compile(r"<[^>]+>")


def _text(value: object) -> str | None:
    """A field that should be text, or None when the event carries anything else."""
    return value if isinstance(value, str) and value else None


def plain_text(body: object) -> str | None:
    """A message body without its HTML (email bodies arrive as HTML)."""
    if not isinstance(body, str):
        return None
    return " ".join(html.unescape(_TAGS.sub(" ", body)).split())


def _contact(event: dict[str, Any]) -> ContactData:
    name = event.get("name") or " ".join(
        part for part in (event.get("firstName"), event.get("lastName")) if isinstance(part, str)
    )
    fields: dict[str, Any] = {
        "name": name or None,
        "email": event.get("email"),
        "phone": event.get("phone"),
        "source": event.get("source"),
        "created_at": event.get("dateAdded"),
    }
    items = event.get("customFields")
    custom = {
        str(item.get("id")): item.get("value")
        for item in (items if isinstance(items, list) else [])
        if isinstance(item, dict) and item.get("id") is not None
    }
    tags = event.get("tags")
    return ContactData(
        contact_id=_contact_id(event),
        fields={k: v for k, v in fields.items() if v not in (None, "")},
        custom=custom,
        tags=tuple(str(t) for t in tags) if isinstance(tags, list) else None,
    )


def parse(event: dict[str, Any]) -> list[Change]:
    """The changes one GoHighLevel event says happened."""
    kind = event["type"]
    if kind in CONTACT_EVENTS:
        return [_contact(event)]
    if kind == "ContactDelete":
        return [ContactGone(_contact_id(event))]
    if kind in ("InboundMessage", "OutboundMessage"):
        # The published OutboundMessage example says direction "inbound": the type decides.
        direction: Literal["inbound", "outbound"] = (
            "inbound" if kind == "InboundMessage" else "outbound"
        )
        message_type = str(event.get("messageType") or "")
        return [
            MessageSeen(
                contact_id=_contact_id(event),
                direction=direction,
                at=_parse_time(event.get("dateAdded"), "dateAdded"),
                conversation_id=_text(event.get("conversationId")),
                kind=MESSAGE_KINDS.get(message_type, "chat" if message_type else "other"),
                text=plain_text(event.get("body")),
            )
        ]
    if kind == "AppointmentCreate":
        appointment = event.get("appointment") or {}
        at = appointment.get("dateAdded") or appointment.get("startTime")
        return [
            AppointmentSeen(
                _contact_id(event), _parse_time(at, "appointment.dateAdded"),
                _text(appointment.get("title")),
            )
        ]  # fmt: skip
    if kind == "OpportunityStatusUpdate":
        status = event["status"]
        if status not in ("won", "lost", "abandoned"):
            return []  # open: nothing happened yet
        at = event.get("lastStatusChangeAt") or event.get("dateUpdated") or event.get("dateAdded")
        value = event.get("monetaryValue")
        return [
            OutcomeSeen(
                contact_id=_contact_id(event),
                outcome="won" if status == "won" else "lost",
                at=_parse_time(at, "dateAdded") if at else datetime.now(UTC),
                value=float(value) if isinstance(value, int | float) and value > 0 else None,
            )
        ]
    return []


class GoHighLevel:
    """The GoHighLevel provider: events from its webhooks, scores to its contacts API."""

    name = NAME
    lead_prefix = "ghl"
    rate_limit = RATE_LIMIT
    requests_per_write_back = 3  # the score field, the class tag added, the others removed

    async def changes(
        self, connection: Connection, event: dict[str, Any], http: httpx.AsyncClient
    ) -> list[Change]:
        """Everything a GoHighLevel webhook needs is in its body."""
        return parse(event)

    async def write_back(
        self,
        connection: Connection,
        contact_id: str,
        payload: dict[str, Any],
        http: httpx.AsyncClient,
    ) -> Delivery:
        """`PUT /contacts/{id}` with the score field, then the class tag added and the other
        class tags removed."""
        base = (connection.api_base or "").rstrip("/")
        headers = {
            "Authorization": f"Bearer {connection.credentials.get('token', '')}",
            "Version": API_VERSION,
            "Accept": "application/json",
        }
        settings = connection.write_back
        url = f"{base}/contacts/{contact_id}"
        custom = []
        if settings.score_field:
            custom.append({"id": settings.score_field, "field_value": payload["ml_score"]})
        commission = payload.get("expected_commission")
        if settings.commission_field and commission is not None:
            custom.append({"id": settings.commission_field, "field_value": commission})
        calls: list[tuple[str, str, dict[str, Any]]] = []
        if custom:
            calls.append(("PUT", url, {"customFields": custom}))
        tag = settings.class_tags.get(payload["classification"])
        others = [t for c, t in settings.class_tags.items() if c != payload["classification"]]
        if tag:
            calls.append(("POST", f"{url}/tags", {"tags": [tag]}))
        if others:
            calls.append(("DELETE", f"{url}/tags", {"tags": others}))
        pause: float | None = None
        for method, target, body in calls:
            response = await http.request(method, target, json=body, headers=headers)
            pause = _pause(response) or pause
            failed = failure(response, pause)
            if failed is not None:
                return failed
        return Delivery("sent", pause_for=pause)


def _pause(response: httpx.Response) -> float | None:
    """GoHighLevel's own count: no request left in its window → wait the window out."""
    remaining = response.headers.get("x-ratelimit-remaining")
    if remaining is not None and remaining.strip() == "0":
        interval = response.headers.get("x-ratelimit-interval-milliseconds")
        try:
            return float(interval) / 1000.0 if interval else WINDOW_SECONDS
        except ValueError:
            return WINDOW_SECONDS
    daily = response.headers.get("x-ratelimit-daily-remaining")
    if daily is not None and daily.strip() == "0":
        return 3600.0
    return None
