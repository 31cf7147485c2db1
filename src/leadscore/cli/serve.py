"""`leadscore serve` and `leadscore demo`: run the API server."""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import tempfile
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from leadscore.cli.demo import DEFAULT_RATE
from leadscore.cli.keys import create_key
from leadscore.core.config import ServiceSettings, is_loopback
from leadscore.core.errors import ConfigurationError

if TYPE_CHECKING:
    from fastapi import FastAPI


def tune_process() -> None:
    """Process-wide tuning for a serving worker, once everything it serves has been built."""
    # Everything built so far lives as long as the worker: keep it out of the cyclic GC's
    # scans, whose full passes over the model and libraries otherwise cost tens of ms.
    gc.collect()
    gc.freeze()
    # A young generation of 50k objects: a batch of 100 scores no longer triggers several
    # collections, which cut the batch endpoint's p99 from ~100 ms to ~35 ms.
    gc.set_threshold(50_000, 20, 20)
    # The database thread and the event loop share the GIL: hand it back within 1 ms
    # (default 5 ms) so a commit in progress never holds a request that long.
    sys.setswitchinterval(0.001)


def served_app() -> FastAPI:
    """The app uvicorn's workers build (`leadscore serve`): settings from the environment."""
    from leadscore.app import create_app

    return create_app(on_started=tune_process)


def uvicorn_options() -> dict[str, Any]:
    """How `serve` and `demo` run uvicorn.

    No X-Forwarded-* rewriting: nothing here uses the client address, and that middleware
    costs every request. Live events are small JSON sent to many clients: compressing each
    copy costs more CPU than it saves on a LAN; the sans-I/O WebSocket implementation frames
    without extra tasks, and our subclass lets the hub write many frames per system call.
    """
    from leadscore.live.wsproto import LiveWebSocketProtocol

    return {
        "loop": "uvloop",
        "http": "httptools",
        "log_level": "warning",
        "access_log": False,
        "proxy_headers": False,
        "ws": LiveWebSocketProtocol,
        "ws_per_message_deflate": False,
        # A client that never lets go must not hold a shutdown forever: after this, open
        # connections are cut and the lifespan still drains the score writer.
        "timeout_graceful_shutdown": 20,
    }


def _refuse_public_demo(settings: ServiceSettings, host: str) -> None:
    """The demo's secret and admin key are printed and public: never serve them to a network."""
    if settings.demo and not is_loopback(host):
        raise ConfigurationError(
            f"demo mode serves a public JWT secret and prints an admin key: it binds only "
            f"127.0.0.1, ::1 or localhost, not {host!r} (unset LEADSCORE_DEMO and set "
            "LEADSCORE_JWT_SECRET to serve a network)"
        )


def _prepare(settings: ServiceSettings, workers: int) -> None:
    """What must happen once, before any worker starts: migrations, the model, metrics dir."""
    from leadscore.core.metrics import MULTIPROC_ENV
    from leadscore.core.migrate import upgrade
    from leadscore.engine.defaults import load_or_build_default

    if workers > 1 and not settings.redis_url:
        raise ConfigurationError(
            "--workers > 1 needs Redis (LEADSCORE_REDIS_URL): workers share the cache, "
            "the latest scores and the rate limits through it"
        )
    upgrade(settings.resolved_database_url)
    if settings.model_dir is None:
        load_or_build_default(settings.home, settings.num_threads)
    if workers > 1:
        os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="leadscore-metrics-")
        # Each worker is single-threaded: two workers on two cores must not fight.
        os.environ["OMP_NUM_THREADS"] = "1"


def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64)] = 1,
) -> None:
    """Run the API (uvicorn with uvloop and httptools)."""
    import uvicorn

    settings = ServiceSettings()
    _refuse_public_demo(settings, host)
    _prepare(settings, workers)
    uvicorn.run(
        "leadscore.cli.serve:served_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        **uvicorn_options(),
    )


async def _demo(
    settings: ServiceSettings, host: str, port: int, leads: int, stream_rate: float
) -> None:
    import httpx
    import uvicorn

    from leadscore.app import create_app
    from leadscore.cli.demo import DemoStream, demo_leads

    key = await create_key(settings, "demo", "admin", "demo")
    config = uvicorn.Config(
        create_app(settings, on_started=tune_process), host=host, port=port, **uvicorn_options()
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()
            return
        await asyncio.sleep(0.05)
    url = f"http://{host}:{port}"
    seeded = demo_leads(leads, seed=7, now=datetime.now(UTC))
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": key}) as client:
        token = (await client.post("/api/v1/auth/token")).json()["access_token"]
        scored: list[dict[str, Any]] = []
        for start in range(0, len(seeded), 100):
            response = await client.post(
                "/api/v1/ml/batch-score",
                json={"leads": [d.body for d in seeded[start : start + 100]]},
            )
            response.raise_for_status()
            scored += [r for r in response.json()["results"] if r]
        scored.sort(key=lambda r: -r["ml_score"])
        typer.echo(f"LeadScore demo running at {url}  (API docs: {url}/docs)")
        # The key travels in the fragment: the page reads it, the browser never sends it.
        typer.echo(f"dashboard     : {url}/dashboard#key={key}")
        typer.echo(f"admin API key : {key}")
        typer.echo(f"bearer token  : {token}")
        classes = {
            c: sum(1 for r in scored if r["classification"] == c) for c in ("hot", "warm", "cold")
        }
        typer.echo(f"scored {len(scored)} demo leads: {classes}")
        for result in scored[:3]:
            typer.echo(
                f"  {result['lead_id']}  {result['ml_score']:.1f} {result['classification']}"
            )
            for reason in result["reasons"][:3]:
                typer.echo(f"      {reason['text']}")
        if stream_rate > 0:
            typer.echo(f"streaming {stream_rate:g} scores/s: new leads, interactions and outcomes")
        typer.echo("ready — Ctrl-C to stop")
        stream = DemoStream(client, seeded, rate=stream_rate, stopping=lambda: server.should_exit)
        streaming = asyncio.create_task(stream.run())
        try:
            await asyncio.wait({serving, streaming}, return_when=asyncio.FIRST_COMPLETED)
            failed = streaming.done() and not streaming.cancelled() and streaming.exception()
            if failed and not server.should_exit:  # the server keeps serving without it
                typer.echo(f"demo stream stopped: {streaming.exception()!r}", err=True)
            await serving
        finally:
            streaming.cancel()
            await asyncio.gather(streaming, return_exceptions=True)


def demo(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    leads: Annotated[int, typer.Option(min=1, max=10_000)] = 300,
    stream_rate: Annotated[
        float,
        typer.Option(
            min=0, max=50, help="Scores per second of the live stream after seeding (0: none)."
        ),
    ] = DEFAULT_RATE,
) -> None:
    """The embedded demo: SQLite, in-process cache, built-in model, a demo team and key, and a
    live stream of new leads, interactions and outcomes."""
    settings = ServiceSettings(demo=True)
    _refuse_public_demo(settings, host)
    _prepare(settings, 1)
    asyncio.run(_demo(settings, host, port, leads, stream_rate))
