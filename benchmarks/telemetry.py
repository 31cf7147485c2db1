"""What logs and metrics cost one request: the access layer (request id, access line, latency
histogram) and a score's counters, timed around a do-nothing ASGI app so nothing else counts.

Run: `uv run python benchmarks/telemetry.py`. Each mode runs in a fresh process, because
prometheus-client picks its value store (in memory, or the mmap files of several workers) when
it is imported: `single` is one worker, `multiprocess` what `leadscore serve --workers N` runs.
The access line goes to a real file (JSON, or the console format), as a server's standard error
redirected to a file or a pipe.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

REQUESTS = 20_000
ROUNDS = 5


def _measure(mode: str) -> dict[str, float]:
    """µs per request of each layer configuration, in this process (median of the rounds)."""
    from leadscore.core.access import AccessLog
    from leadscore.core.logs import configure_logging
    from leadscore.core.metrics import Metrics

    metrics = Metrics.create()
    route = type("Route", (), {"path": "/api/v1/ml/score"})()

    async def endpoint(scope: Any, receive: Any, send: Any) -> None:
        scope["route"] = route
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def send(_message: Any) -> None:
        return None

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    def scope() -> dict[str, Any]:
        headers = [(b"x-api-key", b"lsk_x"), (b"content-type", b"application/json")]
        return {"type": "http", "method": "POST", "path": "/api/v1/ml/score", "headers": headers}

    async def run(app: Any, n: int) -> float:
        started = time.process_time()  # CPU time: other processes on the machine do not count
        for _ in range(n):
            await app(scope(), receive, send)
        return (time.process_time() - started) / n * 1e6

    def median(app: Any) -> float:
        asyncio.run(run(app, 2_000))  # warm: series created, caches filled
        return statistics.median(asyncio.run(run(app, REQUESTS)) for _ in range(ROUNDS))

    figures: dict[str, float] = {}
    with open(os.devnull, "w") as sink, tempfile.TemporaryFile("w") as log:
        sys.stderr = log  # the handler writes to whatever standard error is
        try:
            figures["bare app"] = median(endpoint)
            figures["+ id, metrics (access log off)"] = median(
                AccessLog(endpoint, lambda: metrics, enabled=False)
            )
            for fmt in ("json", "console"):
                configure_logging(fmt)  # type: ignore[arg-type]
                figures[f"+ access line ({fmt})"] = median(
                    AccessLog(endpoint, lambda: metrics, enabled=True)
                )
        finally:
            sys.stderr = sys.__stderr__
            del sink

    started = time.process_time()
    for i in range(REQUESTS):
        metrics.observe(1 + i % 3, ("hot", "warm", "cold")[i % 3], i % 2 == 0, i % 5 == 0, 0.0008)
    figures["Metrics.observe (one score)"] = (time.process_time() - started) / REQUESTS * 1e6
    return figures


def main() -> None:
    if len(sys.argv) > 1:  # a child: one mode
        for name, micros in _measure(sys.argv[1]).items():
            print(f"{name}\t{micros:.2f}")
        return
    print(f"CPU µs per request, median of {ROUNDS} rounds of {REQUESTS:,}")
    for mode in ("single", "multiprocess"):
        env = dict(os.environ)
        with tempfile.TemporaryDirectory(prefix="leadscore-bench-metrics-") as directory:
            if mode == "multiprocess":
                env["PROMETHEUS_MULTIPROC_DIR"] = directory
            else:
                env.pop("PROMETHEUS_MULTIPROC_DIR", None)
            out = subprocess.run(
                [sys.executable, __file__, mode], env=env, capture_output=True, text=True,
                check=True,
            ).stdout  # fmt: skip
        rows = dict(line.split("\t") for line in out.strip().splitlines())
        bare = float(rows["bare app"])
        print(f"\n{mode} (metrics {'in mmap files' if mode == 'multiprocess' else 'in memory'})")
        for name, micros in rows.items():
            extra = (
                ""
                if name in ("bare app", "Metrics.observe (one score)")
                else (f"  (+{float(micros) - bare:.1f})")
            )
            print(f"  {name:<34} {float(micros):7.2f}{extra}")


if __name__ == "__main__":
    main()
