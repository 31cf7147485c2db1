"""A local Follow Up Boss API on 127.0.0.1 (people, text messages, the people PUT of a
write-back) that checks its credentials, a signer of its webhooks, and a receiver of the
generic webhook's signed write-backs.

Wire facts from docs.followupboss.com (people API, webhooks guide, rate limiting), as noted in
the project's CRM reference: HTTP Basic with the API key as the user name and an empty
password, `X-System`/`X-System-Key` headers, `GET /v1/people/{id}` (one person) and
`GET /v1/people?id=…` (`{"_metadata", "people": [...]}`), custom fields as top-level
`custom…` keys only with `fields=allFields`, `PUT /v1/people/{id}` whose `tags` replace the
person's unless `mergeTags=true`, webhooks `{"eventId", "eventCreated", "event",
"resourceIds", "uri"}` signed `FUB-Signature` = hex HMAC-SHA256 keyed with the system key over
base64(body) (or the raw body, the other variant).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

#: Where the real webhooks point: the receiver must rebuild this on its own API base.
REAL_API = "https://api.followupboss.com"


def sign(body: bytes, system_key: str, variant: str = "base64_body") -> str:
    """FUB-Signature of a body, either variant."""
    message = base64.b64encode(body) if variant == "base64_body" else body
    return hmac.new(system_key.encode(), message, hashlib.sha256).hexdigest()


def webhook(event: str, ids: list[int], resource: str = "people", **extra: Any) -> bytes:
    """A webhook body as Follow Up Boss posts it (the `uri` on its real host)."""
    query = f"/{ids[0]}" if len(ids) == 1 else f"?id={','.join(str(i) for i in ids)}"
    body = {
        "eventId": str(uuid.uuid4()),
        "eventCreated": datetime.now(UTC).isoformat(timespec="seconds"),
        "event": event,
        "resourceIds": ids,
        "uri": f"{REAL_API}/v1/{resource}{query}",
    } | extra
    return orjson.dumps(body)


class LoopbackServer:
    """An ASGI app under uvicorn in a thread on a fixed loopback port: it can be stopped (the
    service is down: connections refused) and started again on the same port."""

    def __init__(self, app: Any, port: int) -> None:
        self.app = app
        self.port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LoopbackServer:
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="off")  # fmt: skip
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the fake on port {self.port} did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=20)
        self._server = self._thread = None


@dataclass
class Credentials:
    api_key: str
    system: str
    system_key: str


@dataclass
class FakeFollowUpBoss:
    """The people API of one account; what it was asked is recorded."""

    credentials: Credentials
    people: dict[int, dict[str, Any]] = field(default_factory=dict)
    texts: dict[int, dict[str, Any]] = field(default_factory=dict)
    gets: list[dict[str, Any]] = field(default_factory=list)
    puts: list[dict[str, Any]] = field(default_factory=list)
    refused: int = 0

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/v1/people", self._people, methods=["GET"]),
            Route("/v1/people/{person_id:int}", self._person, methods=["GET", "PUT"]),
            Route("/v1/textMessages/{text_id:int}", self._text, methods=["GET"]),
        ])  # fmt: skip

    def add_person(self, person_id: int, **fields: Any) -> dict[str, Any]:
        """A person as the API returns it; `custom…` keys are its custom fields."""
        person = {
            "id": person_id,
            "created": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "name": f"Person {person_id}",
            "firstName": "Person",
            "lastName": str(person_id),
            "stage": "Lead",
            "source": "Zillow",
            "tags": [],
            "emails": [{"value": f"p{person_id}@example.com", "type": "home", "isPrimary": 1}],
            "phones": [{"value": "555-0100", "type": "mobile", "isPrimary": 1}],
        } | fields
        self.people[person_id] = person
        return person

    def _authorized(self, request: Request) -> bool:
        expected = base64.b64encode(f"{self.credentials.api_key}:".encode()).decode()
        ok = (
            request.headers.get("authorization") == f"Basic {expected}"
            and request.headers.get("x-system") == self.credentials.system
            and request.headers.get("x-system-key") == self.credentials.system_key
        )
        if not ok:
            self.refused += 1
        return ok

    def _shown(self, person: dict[str, Any], request: Request) -> dict[str, Any]:
        if request.query_params.get("fields") == "allFields":
            return person
        return {k: v for k, v in person.items() if not k.startswith("custom")}

    def _record(self, request: Request) -> None:
        self.gets.append({"path": request.url.path, "query": dict(request.query_params)})

    async def _people(self, request: Request) -> Response:
        if not self._authorized(request):
            return JSONResponse({"errorMessage": "Unauthorized"}, 401)
        self._record(request)
        ids = [int(i) for i in request.query_params.get("id", "").split(",") if i]
        found = [self._shown(self.people[i], request) for i in ids if i in self.people]
        return JSONResponse({"_metadata": {"collection": "people", "total": len(found)},
                             "people": found})  # fmt: skip

    async def _person(self, request: Request) -> Response:
        if not self._authorized(request):
            return JSONResponse({"errorMessage": "Unauthorized"}, 401)
        person_id = int(request.path_params["person_id"])
        person = self.people.get(person_id)
        if request.method == "GET":
            self._record(request)
            if person is None:
                return JSONResponse({"errorMessage": "Not found"}, 404)
            return JSONResponse(self._shown(person, request))
        body = orjson.loads(await request.body())
        self.puts.append({"person_id": person_id, "query": dict(request.query_params),
                          "body": body})  # fmt: skip
        if person is None:
            return JSONResponse({"errorMessage": "Not found"}, 404)
        changes = dict(body)
        tags = changes.pop("tags", None)
        if tags is not None:
            merge = request.query_params.get("mergeTags") == "true"
            person["tags"] = [*person["tags"], *(t for t in tags if t not in person["tags"])] \
                if merge else list(tags)  # fmt: skip
        person.update(changes)
        return JSONResponse(person)

    async def _text(self, request: Request) -> Response:
        if not self._authorized(request):
            return JSONResponse({"errorMessage": "Unauthorized"}, 401)
        self._record(request)
        text = self.texts.get(int(request.path_params["text_id"]))
        if text is None:
            return JSONResponse({"errorMessage": "Not found"}, 404)
        return JSONResponse(text)


@dataclass
class ScoreReceiver:
    """Where a generic connection's write-backs go: each POST recorded with its headers."""

    posts: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/scores", self._receive, methods=["POST"])])

    async def _receive(self, request: Request) -> Response:
        self.posts.append({"headers": dict(request.headers), "body": await request.body()})
        return JSONResponse({"ok": True})
