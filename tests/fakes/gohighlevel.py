"""A local GoHighLevel: signs webhooks with a test RSA key and records API v2 write-backs.

The contacts API answers as GoHighLevel does: Bearer token and `Version` header checked,
`X-RateLimit-*` headers on every answer, 429 past 100 requests in 10 s per location, and it
can be taken down (503) or made to refuse (any status) for a while.
"""

from __future__ import annotations

import base64
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

VERSION = "2021-07-28"


class Signer:
    """The webhook side: GoHighLevel signs each delivery's raw body with its private key."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    @property
    def public_pem(self) -> str:
        return (
            self.key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    def sign(self, body: bytes) -> str:
        signature = self.key.sign(body, padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(signature).decode()

    def delivery(
        self,
        event: dict[str, Any],
        *,
        now: datetime | None = None,
        webhook_id: str | None = None,
        wrapped: bool = True,
    ) -> tuple[bytes, dict[str, str]]:
        """A signed delivery: the event wrapped in `data` with timestamp and webhookId (as real
        deliveries), or flat (as the per-event docs)."""
        moment = now or datetime.now(UTC)
        if wrapped:
            payload = {
                "timestamp": moment.isoformat().replace("+00:00", "Z"),
                "webhookId": webhook_id or uuid.uuid4().hex,
                "data": event,
            }
        else:
            payload = event
        body = orjson.dumps(payload)
        return body, {"x-wh-signature": self.sign(body), "content-type": "application/json"}


@dataclass
class Call:
    """One request the API received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float


@dataclass
class FakeGoHighLevel:
    """The contacts API (write-back side)."""

    tokens: set[str] = field(default_factory=lambda: {"pit-test-token"})
    limit: int = 100
    window: float = 10.0
    calls: list[Call] = field(default_factory=list)
    down_until: float = 0.0
    refuse_status: int | None = None
    refused_429: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _recent: dict[str, deque[float]] = field(default_factory=dict)

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/contacts/{contact_id}", self._contact, methods=["PUT", "GET"]),
            Route("/contacts/{contact_id}/tags", self._tags, methods=["POST", "DELETE"]),
        ])  # fmt: skip

    def per_window(self, token: str) -> int:
        """The most requests of one token accepted within any one window."""
        with self._lock:
            times = sorted(c.at for c in self.calls
                           if c.headers.get("authorization") == f"Bearer {token}")  # fmt: skip
        most, first = 0, 0
        for last, moment in enumerate(times):
            while moment - times[first] >= self.window:
                first += 1
            most = max(most, last - first + 1)
        return most

    def writes(self, contact_id: str | None = None) -> list[Call]:
        """The accepted write requests, optionally for one contact."""
        with self._lock:
            return [
                c for c in self.calls
                if c.method != "GET" and (contact_id is None or f"/contacts/{contact_id}" in c.path)
            ]  # fmt: skip

    def _rate(self, location: str) -> tuple[bool, dict[str, str]]:
        now = time.monotonic()
        with self._lock:
            recent = self._recent.setdefault(location, deque())
            while recent and recent[0] <= now - self.window:
                recent.popleft()
            allowed = len(recent) < self.limit
            if allowed:
                recent.append(now)
            remaining = self.limit - len(recent)
        return allowed, {
            "X-RateLimit-Max": str(self.limit),
            "X-RateLimit-Remaining": str(max(0, remaining)),
            "X-RateLimit-Interval-Milliseconds": str(int(self.window * 1000)),
            "X-RateLimit-Daily-Remaining": "199000",
        }

    async def _answer(self, request: Request, result: dict[str, Any]) -> Response:
        if time.monotonic() < self.down_until:
            return JSONResponse({"message": "Service Unavailable"}, status_code=503)
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme != "Bearer" or token not in self.tokens:
            return JSONResponse({"statusCode": 401, "message": "Invalid JWT"}, status_code=401)
        if request.headers.get("version") != VERSION:
            return JSONResponse({"statusCode": 400, "message": "Version header"}, status_code=400)
        allowed, headers = self._rate(token)  # a token is one location's
        if not allowed:
            self.refused_429 += 1
            body = {"statusCode": 429, "message": "Too many requests"}
            return JSONResponse(body, status_code=429, headers=headers | {"Retry-After": "1"})
        if self.refuse_status is not None:
            return JSONResponse({"statusCode": self.refuse_status, "message": "refused"},
                                status_code=self.refuse_status, headers=headers)  # fmt: skip
        raw = await request.body()
        call = Call(request.method, request.url.path, dict(request.headers),
                    orjson.loads(raw) if raw else None, time.monotonic())  # fmt: skip
        with self._lock:
            self.calls.append(call)
        return JSONResponse(result, headers=headers)

    async def _contact(self, request: Request) -> Response:
        contact_id = request.path_params["contact_id"]
        return await self._answer(request, {"succeded": True, "contact": {"id": contact_id}})

    async def _tags(self, request: Request) -> Response:
        return await self._answer(request, {"tags": []})
