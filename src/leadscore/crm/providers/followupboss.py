"""Follow Up Boss: thin HMAC-signed webhooks in (the people read from its API), people out."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx

from leadscore.crm.connections import Connection
from leadscore.crm.providers.base import (
    Change,
    ContactData,
    ContactGone,
    Delivery,
    FetchFailedError,
    MalformedWebhookError,
    MessageSeen,
    body_digest,
    failure,
    json_object,
)

NAME: Final = "followupboss"
SIGNATURE_HEADER: Final = "fub-signature"
PEOPLE_EVENTS: Final = frozenset(
    {"peopleCreated", "peopleUpdated", "peopleTagsCreated", "peopleStageUpdated"}
)
MESSAGE_EVENTS: Final = frozenset({"textMessagesCreated"})
#: The events the loop uses; the other families (notes, calls, deals …) are acknowledged only.
HANDLED: Final = PEOPLE_EVENTS | MESSAGE_EVENTS | {"peopleDeleted"}
#: Its documented limit is 250 requests per sliding 10 s for a registered system (125 without
#: a system key), shared with the webhooks' reads: write-backs take at most half of it.
RATE_LIMIT: Final = (125, 10.0)
#: Standard person fields a connection's field mapping may use beside the custom ones.
MAPPABLE_PERSON_FIELDS: Final = ("stage", "price", "background", "contacted", "assignedTo")


def signature(system_key: str, body: bytes, variant: str) -> str:
    """The hex HMAC-SHA256 Follow Up Boss sends: over base64(body), or over the raw body."""
    message = base64.b64encode(body) if variant == "base64_body" else body
    return hmac.new(system_key.encode(), message, hashlib.sha256).hexdigest()


def signed_by(connection: Connection, header: str, body: bytes) -> bool:
    """Whether this connection's system key signed the body (compared in constant time)."""
    key = connection.credentials.get("system_key")
    if not key:
        return False
    expected = signature(key, body, connection.options.signature)
    return hmac.compare_digest(expected, header.strip().lower())


@dataclass(frozen=True)
class Envelope:
    """What the receiver reads of a webhook before storing it."""

    event_id: str
    event_type: str
    event: dict[str, Any]


def envelope(body: bytes) -> Envelope:
    """The event's id (its `eventId`, else the body's digest) and name."""
    event = json_object(body)
    name = event.get("event")
    if not isinstance(name, str) or not name:
        raise MalformedWebhookError("the webhook has no `event`")
    event_id = event.get("eventId")
    return Envelope(
        event_id=event_id if isinstance(event_id, str) and event_id else body_digest(body),
        event_type=name,
        event=event,
    )


def check(event: dict[str, Any]) -> None:
    """Refuse, before storing, a handled event without what processing it needs."""
    if event["event"] == "peopleDeleted":
        ids = event.get("resourceIds")
        if not isinstance(ids, list) or not ids:
            raise MalformedWebhookError("a peopleDeleted webhook needs its `resourceIds`")
    elif not isinstance(event.get("uri"), str) or not event["uri"]:
        raise MalformedWebhookError(f"a {event['event']} webhook needs its `uri`")
    elif not _api_path(event["uri"]):
        raise MalformedWebhookError(f"the uri is not a Follow Up Boss API path: {event['uri']!r}")


def _api_path(uri: str) -> bool:
    return urlsplit(uri).path.startswith("/v1/")


def resource_url(api_base: str, uri: str) -> str:
    """The `uri` of a webhook on the connection's API base with `fields=allFields`: the
    credentials go only to the API the team configured, whatever host the body names."""
    parts = urlsplit(uri)
    if not _api_path(uri):
        raise MalformedWebhookError(f"the uri is not a Follow Up Boss API path: {uri!r}")
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "fields"]
    query.append(("fields", "allFields"))
    return f"{api_base.rstrip('/')}{parts.path}?{urlencode(query, safe=',')}"


def _headers(connection: Connection) -> dict[str, str]:
    return {
        "X-System": connection.credentials.get("system", ""),
        "X-System-Key": connection.credentials.get("system_key", ""),
        "Accept": "application/json",
    }


def _auth(connection: Connection) -> httpx.BasicAuth:
    """HTTP Basic with the API key as the user name and no password."""
    return httpx.BasicAuth(connection.credentials.get("api_key", ""), "")


async def fetch(connection: Connection, uri: str, http: httpx.AsyncClient) -> list[dict[str, Any]]:
    """The resources a webhook points to; none when they are gone (404)."""
    url = resource_url(connection.api_base or "", uri)
    try:
        response = await http.get(url, headers=_headers(connection), auth=_auth(connection))
    except httpx.HTTPError as exc:
        raise FetchFailedError(f"GET {urlsplit(url).path}: {type(exc).__name__}: {exc}") from exc
    if response.status_code == 404:
        return []
    # Bad credentials may be fixed by an admin meanwhile: retried until the last attempt.
    if response.status_code in (401, 403, 408, 429) or response.status_code >= 500:
        raise FetchFailedError(f"GET {urlsplit(url).path}: HTTP {response.status_code}")
    if response.status_code >= 300:
        raise MalformedWebhookError(
            f"GET {urlsplit(url).path}: HTTP {response.status_code}: {response.text[:300]}"
        )
    try:
        data = response.json()
    except ValueError as exc:
        raise FetchFailedError(f"GET {urlsplit(url).path}: the answer is not JSON") from exc
    return _items(data)


def _items(data: object) -> list[dict[str, Any]]:
    """One resource (`GET /v1/people/{id}`) or a page of them (`{"_metadata", "people": []}`)."""
    if not isinstance(data, dict):
        return []
    if "id" in data:
        return [data]
    for key, value in data.items():
        if key != "_metadata" and isinstance(value, list):
            return [item for item in value if isinstance(item, dict) and "id" in item]
    return []


def _first_value(items: object) -> str | None:
    """The primary (else the first) of a person's emails or phones."""
    if not isinstance(items, list):
        return None
    entries = [item for item in items if isinstance(item, dict) and item.get("value")]
    primary = [item for item in entries if item.get("isPrimary") in (1, True)]
    chosen = (primary or entries)[:1]
    return str(chosen[0]["value"]) if chosen else None


def person(connection: Connection, data: dict[str, Any]) -> ContactData:
    """A person as lead fields; custom fields by their `name`, except the ones we write."""
    name = data.get("name") or " ".join(
        part for part in (data.get("firstName"), data.get("lastName")) if isinstance(part, str)
    )
    fields: dict[str, Any] = {
        "name": name or None,
        "email": _first_value(data.get("emails")),
        "phone": _first_value(data.get("phones")),
        "source": data.get("source"),
        "created_at": data.get("created"),
    }
    ours = {connection.write_back.score_field, connection.write_back.commission_field}
    custom = {
        key: value
        for key, value in data.items()
        if (key.startswith("custom") or key in MAPPABLE_PERSON_FIELDS) and key not in ours
    }
    tags = data.get("tags")
    return ContactData(
        contact_id=str(data["id"]),
        fields={k: v for k, v in fields.items() if v not in (None, "")},
        custom=custom,
        tags=tuple(str(t) for t in tags) if isinstance(tags, list) else None,
    )


def _time(value: object) -> datetime:
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return datetime.now(UTC)


def text_message(data: dict[str, Any]) -> MessageSeen | None:
    """A text message of a person: one conversation per person, so a reply is timed from our
    previous outgoing text."""
    person_id = data.get("personId")
    if person_id is None:
        return None
    return MessageSeen(
        contact_id=str(person_id),
        direction="inbound" if data.get("isIncoming") in (True, 1, "true") else "outbound",
        at=_time(data.get("created")),
        conversation_id=f"sms:{person_id}",
        kind="sms",
        text=data["message"] if isinstance(data.get("message"), str) else None,
    )


class FollowUpBoss:
    """The Follow Up Boss provider: people read from its API, scores written to them."""

    name = NAME
    lead_prefix = "fub"
    rate_limit = RATE_LIMIT
    requests_per_write_back = 1  # one PUT carries the tag and the fields

    async def changes(
        self, connection: Connection, event: dict[str, Any], http: httpx.AsyncClient
    ) -> list[Change]:
        """The people (or texts) the webhook points to, read now; a deletion needs no read."""
        kind = event.get("event")
        if kind == "peopleDeleted":
            return [ContactGone(str(item)) for item in event.get("resourceIds") or []]
        if kind in PEOPLE_EVENTS:
            people = await fetch(connection, event["uri"], http)
            return [person(connection, item) for item in people]
        if kind in MESSAGE_EVENTS:
            texts = [text_message(item) for item in await fetch(connection, event["uri"], http)]
            return [message for message in texts if message is not None]
        return []

    async def write_back(
        self,
        connection: Connection,
        contact_id: str,
        payload: dict[str, Any],
        http: httpx.AsyncClient,
    ) -> Delivery:
        """`PUT /v1/people/{id}?mergeTags=true`: the class tag added, the score (and the
        expected commission) in their custom fields."""
        settings = connection.write_back
        body: dict[str, Any] = {}
        tag = settings.class_tags.get(payload["classification"])
        if tag:
            body["tags"] = [tag]
        if settings.score_field:
            body[settings.score_field] = payload["ml_score"]
        commission = payload.get("expected_commission")
        if settings.commission_field and commission is not None:
            body[settings.commission_field] = commission
        if not body:
            return Delivery("sent", "nothing to write: no score field and no class tag")
        url = f"{(connection.api_base or '').rstrip('/')}/v1/people/{contact_id}"
        response = await http.put(
            url, params={"mergeTags": "true"}, json=body, headers=_headers(connection),
            auth=_auth(connection),
        )  # fmt: skip
        pause = _pause(response)
        failed = failure(response, pause)
        return failed if failed is not None else Delivery("sent", pause_for=pause)


def _pause(response: httpx.Response) -> float | None:
    """Its own count (X-RateLimit-Remaining 0): wait its window out before the next one."""
    remaining = response.headers.get("x-ratelimit-remaining")
    if remaining is None or remaining.strip() != "0":
        return None
    try:
        return float(response.headers.get("x-ratelimit-window") or RATE_LIMIT[1])
    except ValueError:
        return RATE_LIMIT[1]
