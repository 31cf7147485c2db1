"""A fake Anthropic Messages API (`POST /v1/messages`) for the LLM qualifier's tests.

It speaks the real wire format (the shapes of https://docs.anthropic.com/en/api/messages and
its error bodies): it checks the API key (`x-api-key`, or `Authorization: Bearer`, which is
how the locked SDK version sends it) and the `anthropic-version` header, answers a forced
tool call with a `tool_use` content block, `stop_reason: "tool_use"` and `usage`, and errors
as `{"type": "error", "error": {"type": ..., "message": ...}}`. What it answers is scripted per
lead, by a marker in the lead's name inside the prompt, so the order the qualifier takes leads
in does not matter:

- `confident`: the answers with confidence 0.95;
- `unsure`: confidence 0.3 and nothing known;
- `overloaded`: 529 `overloaded_error`, every time;
- `flaky`: 500 `api_error` on the first call, then `confident`.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

API_KEY = "sk-ant-test-key"
CONFIDENT_ANSWERS = {
    "pre_approved": True,
    "timeline": "1-3 months",
    "budget": "500k-750k",
    "financing": "cash",
}
_SCRIPT = re.compile(r"\b(confident|unsure|overloaded|flaky)\b", re.IGNORECASE)


def _error(status: int, kind: str, message: str) -> JSONResponse:
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return JSONResponse(body, status_code=status, headers={"request-id": uuid.uuid4().hex})


def api_key(headers: Mapping[str, str]) -> str | None:
    """The key a request authenticates with, from either header the API accepts."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return headers.get("x-api-key") or (token if scheme.lower() == "bearer" else None)


@dataclass
class FakeAnthropic:
    """The fake's state: every request it received, and calls per scripted behaviour."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)

    def app(self) -> FastAPI:
        """The ASGI app to serve on 127.0.0.1."""
        app = FastAPI()

        @app.post("/v1/messages")
        async def messages(request: Request) -> JSONResponse:
            if api_key(request.headers) != API_KEY:
                return _error(401, "authentication_error", "invalid x-api-key")
            if not request.headers.get("anthropic-version"):
                return _error(400, "invalid_request_error", "anthropic-version header required")
            body: dict[str, Any] = await request.json()
            self.requests.append({"headers": dict(request.headers), "body": body})
            return self._answer(body)

        return app

    def _answer(self, body: dict[str, Any]) -> JSONResponse:
        tools = body.get("tools") or [{"name": None}]
        choice = body.get("tool_choice") or {}
        forced = choice.get("type") == "tool" and choice.get("name") == tools[0]["name"]
        if len(tools) != 1 or not forced:
            return _error(400, "invalid_request_error", "expected one tool, forced")
        text = " ".join(
            m["content"] if isinstance(m["content"], str) else str(m["content"])
            for m in body["messages"]
        )
        found = _SCRIPT.search(text)
        script = found.group(1).lower() if found else "unsure"
        self.calls[script] += 1
        if script == "overloaded":
            return _error(529, "overloaded_error", "Overloaded")
        if script == "flaky" and self.calls[script] == 1:
            return _error(500, "api_error", "Internal server error")
        if script in ("confident", "flaky"):
            answer: dict[str, Any] = CONFIDENT_ANSWERS | {
                "confidence": 0.95,
                "summary": "Pre-approved cash buyer, 500k-750k, wants to move within 3 months.",
            }
        else:
            unknown = dict.fromkeys(CONFIDENT_ANSWERS)
            answer = unknown | {"confidence": 0.3, "summary": "The conversation says too little."}
        return JSONResponse(
            {
                "id": f"msg_{uuid.uuid4().hex[:24]}",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": [
                    {
                        "type": "tool_use",
                        "id": f"toolu_{uuid.uuid4().hex[:24]}",
                        "name": tools[0]["name"],
                        "input": answer,
                    }
                ],
                "stop_reason": "tool_use",
                "stop_sequence": None,
                "usage": {"input_tokens": len(text) // 4, "output_tokens": 60},
            },
            headers={"request-id": uuid.uuid4().hex},
        )
