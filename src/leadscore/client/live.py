"""The live event stream over `WS /api/v1/ml/ws/live-scores`: an async iterator that survives
server restarts (it reconnects with back-off and subscribes again)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Final

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from leadscore.client._http import API, Credentials, RetryInfo, RetryPolicy, error_of, ws_url
from leadscore.client.errors import Forbidden, Unauthorized
from leadscore.client.models import LiveEvent

#: Close codes after which reconnecting with the same credentials cannot help.
CLOSE_UNAUTHORIZED: Final = 4401
CLOSE_KEY_REVOKED: Final = 4403
#: Events about the connection itself, yielded only with `control=True`.
CONTROL: Final = frozenset({"connection_established", "subscription_updated", "status", "error"})


class LiveStream:
    """`async for event in stream`: the team's events, resubscribed after every reconnect.

    Live events are notifications: what happens while the stream is reconnecting is missed
    (every score is in the database; read it with `latest`).
    """

    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        retry: RetryPolicy,
        events: Sequence[str] | None = None,
        filters: Mapping[str, Any] | None = None,
        control: bool = False,
    ) -> None:
        self.base_url = base_url
        # Its own copy: the stream renews tokens on its loop, the client on its thread.
        self.credentials = dataclasses.replace(credentials)
        self.retry = retry
        self.subscription: dict[str, Any] = {"type": "subscribe"}
        if events is not None:
            self.subscription["events"] = list(events)
        if filters is not None:
            self.subscription["filters"] = dict(filters)
        self.control = control
        #: Connections opened so far (1 + the reconnects).
        self.connections = 0
        self._socket: ClientConnection | None = None
        self._closed = False

    def __aiter__(self) -> AsyncIterator[LiveEvent]:
        return self._events()

    async def close(self) -> None:
        """Stop the stream: the iterator ends after the current connection closes."""
        self._closed = True
        if self._socket is not None:
            await self._socket.close()

    async def _renew(self) -> None:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=30) as http:
            response = await http.post(
                f"{API}/auth/token", headers=self.credentials.exchange_headers()
            )
        error = error_of(response)
        if error is not None:
            raise error
        self.credentials.accept(response.json())

    async def _events(self) -> AsyncIterator[LiveEvent]:
        attempt = 0
        renewed = False
        while not self._closed:
            try:
                if self.credentials.needs_token():
                    await self._renew()
                headers = self.credentials.headers()
                async with connect(
                    ws_url(self.base_url), additional_headers=headers, open_timeout=10
                ) as socket:
                    self._socket = socket
                    self.connections += 1
                    await socket.send(json.dumps(self.subscription))
                    async for raw in socket:
                        event = LiveEvent.model_validate_json(raw)
                        if event.event_type == "ping":
                            await socket.send(json.dumps({"type": "pong"}))
                            continue
                        if event.event_type == "subscription_updated":
                            attempt, renewed = 0, False  # a healthy connection again
                        if event.event_type in CONTROL and not self.control:
                            continue
                        yield event
                reason = "server closed the connection"
                code = socket.close_code
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else None
                reason = f"closed ({code})"
            except InvalidStatus as exc:
                code = None
                reason = f"handshake refused ({exc.response.status_code})"
            except (OSError, InvalidHandshake, TimeoutError, httpx.TransportError) as exc:
                code = None
                reason = type(exc).__name__
            finally:
                self._socket = None
            if self._closed:
                return
            if code == CLOSE_KEY_REVOKED:
                raise Forbidden("key revoked", status_code=403, code="key_revoked")
            if code == CLOSE_UNAUTHORIZED:
                if not self.credentials.renewable or renewed:
                    raise Unauthorized(
                        "the live stream refused the credentials", status_code=401, code="4401"
                    )
                renewed = True
                self.credentials.forget()
            wait = self.retry.delay(min(attempt, 10), None)
            attempt += 1
            self.retry.notify(RetryInfo("WS", "/ml/ws/live-scores", attempt, wait, reason))
            await asyncio.sleep(wait)
