"""`live()` on real servers: filtered events, and a stream that outlives a server restart
(reconnects and subscribes again with its filters), on SQLite + memory and PostgreSQL + Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

from leadscore.client import AsyncLeadScore, LeadScore, LiveEvent, RetryInfo

from ..api.conftest import COLD, Deployment, free_port, hot_data
from .conftest import start_on

# A guard against a hung test, never a measured figure: every step takes well under a second.
STEP_TIMEOUT = 60


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


async def next_event(events: AsyncIterator[LiveEvent], event_type: str) -> LiveEvent:
    """The next event of a type (a connection's `connection_established` is skipped)."""
    while True:
        event = await asyncio.wait_for(anext(events), STEP_TIMEOUT)
        if event.event_type == event_type:
            return event


async def hot_after_cold(client: AsyncLeadScore, events: AsyncIterator[LiveEvent]) -> str:
    """Score a cold lead, then a hot one; the lead of the first `lead_scored` that arrives."""
    cold, hot = new_id("cold"), new_id("hot")
    assert (await client.score({"lead_id": cold, "lead_data": COLD})).classification == "cold"
    assert (await client.score({"lead_id": hot, "lead_data": hot_data()})).classification == "hot"
    event = await next_event(events, "lead_scored")
    assert event.data["lead_id"] == hot, "the cold lead passed the classification filter"
    return hot


async def test_live_stream_reconnects_and_resubscribes_after_a_restart(
    deployment: Deployment,
) -> None:
    port = free_port()
    server = await asyncio.to_thread(start_on, deployment, port)
    retries: list[RetryInfo] = []
    client = AsyncLeadScore(
        server.url, api_key=deployment.keys["acme-agent"], backoff_max=2.0, on_retry=retries.append
    )
    stream = client.live(["lead_scored"], filters={"classification": ["hot"]}, control=True)
    events = aiter(stream)
    try:
        updated = await next_event(events, "subscription_updated")
        assert updated.data["events"] == ["lead_scored"]
        await hot_after_cold(client, events)

        await asyncio.to_thread(server.stop)
        server = await asyncio.to_thread(start_on, deployment, port)

        again = await next_event(events, "subscription_updated")
        assert again.data["filters"]["classification"] == ["hot"]
        assert stream.connections == 2
        assert retries  # it noticed the restart and backed off before reconnecting
        await hot_after_cold(client, events)
    finally:
        await stream.close()
        await client.aclose()
        await asyncio.to_thread(server.stop)


async def test_the_sync_client_streams_live_events_too(deployment: Deployment) -> None:
    server = await asyncio.to_thread(deployment.start)
    try:
        with LeadScore(server.url, api_key=deployment.keys["globex-agent"]) as client:
            stream = client.live(["lead_scored"], control=True)
            events = aiter(stream)
            await next_event(events, "subscription_updated")
            lead_id = new_id("sync")
            await asyncio.to_thread(client.score, {"lead_id": lead_id, "lead_data": COLD})
            event = await next_event(events, "lead_scored")
            await stream.close()
    finally:
        await asyncio.to_thread(server.stop)
    assert event.data["lead_id"] == lead_id
    assert event.data["classification"] == "cold"
