"""The page renews its token before it expires and its live queue keeps working past the
first token's expiry (the server closes sockets whose token expired)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from playwright.sync_api import expect

from ..api.conftest import Deployment, ServerThread
from .conftest import Watched, score, sign_in

TTL_SECONDS = 60  # the shortest token lifetime the server allows


@pytest.fixture(scope="module")
def server(deployment: Deployment) -> Iterator[ServerThread]:
    """Tokens of one minute; open sockets rechecked every second."""
    running = deployment.start(jwt_ttl_seconds=TTL_SECONDS, ws_recheck_seconds=1)
    yield running
    running.stop()


def test_the_token_is_renewed_and_the_queue_stays_live_after_the_first_expires(
    open_page: Callable[..., Watched], deployment: Deployment, client: httpx.Client
) -> None:
    key = deployment.keys["acme-agent"]
    watched = open_page()
    page = watched.page
    sign_in(watched, key)
    signed_in = time.monotonic()
    first = page.evaluate("JSON.parse(sessionStorage['leadscore.session']).token")
    deadline = signed_in + TTL_SECONDS - 5
    while page.evaluate("JSON.parse(sessionStorage['leadscore.session']).token") == first:
        assert time.monotonic() < deadline, "the token was not renewed before it expired"
        page.wait_for_timeout(500)
    # Past the first token's expiry (and the server's recheck): still signed in and live.
    page.wait_for_timeout(max(0.0, signed_in + TTL_SECONDS + 3 - time.monotonic()) * 1000)
    expect(page.locator("#view-queue")).to_be_visible()
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    scored = score(client, key, "After Renewal")
    expect(page.locator(f'#queue-rows tr[data-id="{scored["lead_id"]}"]')).to_be_visible(
        timeout=2_000
    )
