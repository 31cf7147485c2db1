"""What the LLM qualifier's tests share: the fake Messages API and a server that calls it."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from ..api.conftest import Deployment, ServerThread
from ..fakes.anthropic import API_KEY, FakeAnthropic

QUEUE = "/api/v1/ml/escalations"
MODEL = "claude-test-model"


@contextmanager
def llm_server(
    deployment: Deployment, calls_per_hour: int
) -> Iterator[tuple[ServerThread, FakeAnthropic]]:
    """A fake Anthropic API on 127.0.0.1, and a server whose qualifier calls it through the
    SDK (ANTHROPIC_BASE_URL, as the SDK reads it), retrying quickly."""
    fake = FakeAnthropic()
    api = ServerThread(fake.app()).start()  # type: ignore[arg-type]
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("ANTHROPIC_BASE_URL", api.url)
            server = deployment.start(
                anthropic_api_key=SecretStr(API_KEY), anthropic_model=MODEL, llm_max_attempts=3,
                llm_calls_per_hour=calls_per_hour, llm_min_confidence=0.7,
            )  # fmt: skip
        try:
            qualifier = server.services.qualifier
            assert qualifier is not None, "the qualifier runs when the API key is set"
            qualifier.settings = dataclasses.replace(
                qualifier.settings, backoff_seconds=0.2, poll_seconds=0.2
            )
            yield server, fake
        finally:
            server.stop()
    finally:
        api.stop()


def wait_for_entry(
    client: httpx.Client,
    headers: dict[str, str],
    lead_id: str,
    done: Callable[[dict[str, Any]], bool],
    timeout: float = 30.0,
) -> dict[str, Any]:
    """The lead's queue entry once `done` holds for it (any status)."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        for status in ("open", "claimed", "resolved"):
            page = client.get(QUEUE, params={"status": status, "limit": 200}, headers=headers)
            assert page.status_code == 200, page.text
            for entry in page.json()["escalations"]:
                if entry["lead_id"] == lead_id:
                    last = entry
                    if done(entry):
                        return dict(entry)
        time.sleep(0.1)
    raise AssertionError(f"the entry of {lead_id} never got there; last seen: {last}")
