"""Every request's id, access line and latency: one pure ASGI layer, outermost of ours."""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from leadscore.core.logs import bind, unbind
from leadscore.core.metrics import Metrics

log = logging.getLogger("leadscore.access")
REQUEST_ID_HEADER: Final = b"x-request-id"
#: A caller's id is kept when it is a plain token (a proxy's or a client's correlation id);
#: anything else (spaces, quotes, very long) could forge or bloat log lines: a new one then.
SANE_REQUEST_ID: Final = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
UNMATCHED: Final = "unmatched"


def request_id_of(scope: Scope) -> str:
    """The caller's X-Request-ID when it is a sane token, else a new random id."""
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            if SANE_REQUEST_ID.fullmatch(value):
                return str(value.decode("ascii"))
            break
    return os.urandom(16).hex()  # as random as a uuid4, without building one


def route_of(scope: Scope) -> str:
    """The route template that served the request (`/api/v1/ml/score/{lead_id}`), never the
    raw path: ids in paths would make one series per lead."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED


class AccessLog:
    """Binds the request id for every line logged while a request runs, returns it as a
    header, and writes one access line (its team comes from the authenticated key, bound on
    the way) and one latency observation when it ends."""

    def __init__(self, app: ASGIApp, metrics: Callable[[], Metrics | None], enabled: bool) -> None:
        self.app = app
        self.metrics = metrics  # the worker's, once its lifespan has built them
        self.enabled = enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        if kind == "websocket":  # its lines (hub, auth) carry the handshake's id
            token = bind({"request_id": request_id})
            try:
                await self.app(scope, receive, send)
            finally:
                unbind(token)
            return
        started = time.perf_counter()
        status = 500  # what a request that raised past every handler amounts to
        header = (REQUEST_ID_HEADER, request_id.encode("ascii"))

        async def tagged(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        token = bind({"request_id": request_id})
        try:
            await self.app(scope, receive, tagged)
        finally:
            seconds = time.perf_counter() - started
            route = route_of(scope)
            method = scope["method"]
            metrics = self.metrics()
            if metrics is not None:
                metrics.request(route, method, status, seconds)
            if self.enabled and log.isEnabledFor(logging.INFO):
                # Made directly: `log.info` would walk the stack for a caller nobody reads.
                fields = {"route": route, "method": method, "status": status,
                          "ms": round(seconds * 1000, 3)}  # fmt: skip
                log.handle(log.makeRecord(
                    log.name, logging.INFO, __file__, 0, "%s %s %d", (method, route, status),
                    None, extra=fields,
                ))  # fmt: skip
            unbind(token)
