"""What the sync and async clients share: credentials, the retry policy, request building and
answer decoding. Only the sending differs between the twins."""

from __future__ import annotations

import csv
import json
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
from pydantic import BaseModel

from leadscore.client.errors import (
    APIStatusError,
    Conflict,
    RateLimited,
    ServiceUnavailable,
    error_for,
)

API: Final = "/api/v1"
#: The server's batch limit: `score_file` sends files in chunks of this many leads.
BATCH_SIZE: Final = 100
#: Renew a token this long before it expires, so no request is sent with a dying one.
RENEW_MARGIN_SECONDS: Final = 60.0
_WEB_PREFIX: Final = "web_activity."
_ATTRIBUTE_PREFIX: Final = "attributes."

Lead = Mapping[str, Any] | BaseModel


@dataclass(frozen=True, slots=True)
class RetryInfo:
    """One retry about to happen: what failed, the attempt about to be made, and the wait."""

    method: str
    path: str
    attempt: int
    delay: float
    reason: str


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential back-off with jitter; a server's `Retry-After` is a floor, never ignored."""

    max_retries: int = 4
    base_seconds: float = 0.5
    max_seconds: float = 30.0
    on_retry: Callable[[RetryInfo], None] | None = None

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """The wait before retry number `attempt` (0-based): jitter spreads clients that
        failed together so they do not return together."""
        if retry_after is not None:
            return retry_after + random.uniform(0.0, min(1.0, 0.1 * retry_after + 0.05))
        backoff: float = min(self.max_seconds, self.base_seconds * 2.0**attempt)
        return backoff * random.uniform(0.5, 1.0)

    def notify(self, info: RetryInfo) -> None:
        """Tell the caller's hook (logging, metrics) that a retry is about to happen."""
        if self.on_retry is not None:
            self.on_retry(info)


def retryable(error: APIStatusError) -> bool:
    """Whether an error answer is worth retrying: 429, 503, and a keyed write still running
    on the server (its answer arrives once it finishes)."""
    if isinstance(error, RateLimited | ServiceUnavailable):
        return True
    return isinstance(error, Conflict) and error.code == "idempotency_in_progress"


def retry_after(error: APIStatusError) -> float | None:
    """The server's requested wait, for the errors that carry one."""
    if isinstance(error, RateLimited | ServiceUnavailable):
        return error.retry_after
    if isinstance(error, Conflict):
        return 1.0
    return None


@dataclass
class Credentials:
    """An API key (exchanged for short-lived JWTs when `use_tokens`) or a fixed token."""

    api_key: str | None
    token: str | None
    use_tokens: bool
    _renew_at: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        if not self.api_key and not self.token:
            raise ValueError("give api_key or token")

    @property
    def renewable(self) -> bool:
        """Whether a fresh token can be had: only with an API key to exchange."""
        return bool(self.api_key) and self.use_tokens

    def needs_token(self) -> bool:
        """A renewable token that is missing or near its expiry (monotonic clock)."""
        return self.renewable and (self.token is None or time.monotonic() >= self._renew_at)

    def accept(self, body: Mapping[str, Any]) -> None:
        """Keep a token from `POST /auth/token`, to be renewed before it expires."""
        self.token = str(body["access_token"])
        lifetime = float(body["expires_in"])
        self._renew_at = time.monotonic() + max(lifetime / 2, lifetime - RENEW_MARGIN_SECONDS)

    def forget(self) -> None:
        """Drop a token the server refused, so the next request renews it."""
        if self.renewable:
            self.token = None

    def headers(self) -> dict[str, str]:
        """The header that authenticates a request now."""
        if self.token and (self.use_tokens or not self.api_key):
            return {"Authorization": f"Bearer {self.token}"}
        assert self.api_key is not None
        return {"X-API-Key": self.api_key}

    def exchange_headers(self) -> dict[str, str]:
        """The key, sent only to the token route."""
        assert self.api_key is not None
        return {"X-API-Key": self.api_key}


def new_idempotency_key() -> str:
    """A fresh key per logical write; every retry of that write sends the same one."""
    return f"ls-{uuid.uuid4().hex}"


def error_of(response: httpx.Response) -> APIStatusError | None:
    """The mapped exception of an error answer (None for a success)."""
    if response.is_success:
        return None
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    return error_for(response.status_code, body, response.headers)


def lead_json(lead: Lead) -> dict[str, Any]:
    """A lead as the API's JSON body: a mapping as given, a pydantic model dumped."""
    if isinstance(lead, BaseModel):
        return lead.model_dump(mode="json", exclude_none=True)
    return dict(lead)


def score_body(lead: Lead, options: Mapping[str, bool] | None) -> dict[str, Any]:
    """The POST /score body; `options` only when given, so the server's defaults apply."""
    body = lead_json(lead)
    if options is not None:
        body["options"] = dict(options)
    return body


def batch_body(leads: Sequence[Lead], options: Mapping[str, bool] | None) -> dict[str, Any]:
    """The POST /batch-score body."""
    body: dict[str, Any] = {"leads": [lead_json(lead) for lead in leads]}
    if options is not None:
        body["options"] = dict(options)
    return body


def list_params(filters: Mapping[str, Any], page_size: int) -> dict[str, Any]:
    """Query parameters of a list route: None filters left out, datetimes as ISO 8601."""
    params: dict[str, Any] = {"limit": page_size}
    for name, value in filters.items():
        if value is None:
            continue
        params[name] = value.isoformat() if hasattr(value, "isoformat") else value
    return params


def read_leads(path: Path) -> list[dict[str, Any]]:
    """A lead file as API leads: JSON Lines (one `{"lead_id", "lead_data"}` per line) or CSV
    (header `lead_id` and lead fields by their canonical names, as `/leads/upload` reads it)."""
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        with path.open(encoding="utf-8") as file:
            return [json.loads(line) for line in file if line.strip()]
    with path.open(newline="", encoding="utf-8-sig") as file:
        return [_row_lead(row) for row in csv.DictReader(file)]


def _row_lead(row: Mapping[str, str | None]) -> dict[str, Any]:
    """A CSV row as a lead: empty cells are unknown, dotted columns nest, the interaction
    history is JSON text; the server parses the text values as it parses an upload's."""
    data: dict[str, Any] = {}
    for column, value in row.items():
        if value is None or value == "" or column == "lead_id":
            continue
        if column.startswith(_WEB_PREFIX):
            data.setdefault("web_activity", {})[column[len(_WEB_PREFIX) :]] = value
        elif column.startswith(_ATTRIBUTE_PREFIX):
            data.setdefault("attributes", {})[column[len(_ATTRIBUTE_PREFIX) :]] = value
        elif column == "interaction_history":
            data[column] = json.loads(value)
        else:
            data[column] = value
    return {"lead_id": row.get("lead_id"), "lead_data": data}


def chunks(items: Sequence[Any], size: int) -> Iterator[tuple[int, Sequence[Any]]]:
    """(offset, chunk) over `items` in chunks of `size`."""
    for start in range(0, len(items), size):
        yield start, items[start : start + size]


class FileScores:
    """Batch answers gathered into one result in file order (row indices from 0)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.results: list[Any] = []
        self.errors: list[dict[str, Any]] = []

    def add(self, offset: int, batch: Mapping[str, Any]) -> None:
        """Append one batch's results; its errors' indices become the file's row indices."""
        self.results.extend(batch["results"])
        for error in batch["errors"]:
            self.errors.append({**error, "index": offset + int(error["index"])})

    def as_json(self) -> dict[str, Any]:
        """The gathered result as `FileResult` reads it."""
        failed = len(self.errors)
        return {
            "total": self.total,
            "succeeded": self.total - failed,
            "failed": failed,
            "results": self.results,
            "errors": self.errors,
        }


def ws_url(base_url: str) -> str:
    """The live-scores WebSocket address of an http(s) base URL."""
    scheme, rest = base_url.rstrip("/").split("://", 1)
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}{API}/ml/ws/live-scores"
