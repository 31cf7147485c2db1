"""Live events: publish → receipt latency to 1, 100 and 1,000 WebSocket clients, and scoring
throughput with 100 subscribed clients against none.

Run: `uv run python benchmarks/ws_fanout.py` (needs `wrk` for the throughput part). Starts
`leadscore serve` (one worker, embedded default) on loopback; clients run in this process with
the `websockets` library. Latency = a client's receipt time − the event's own timestamp (set
when the score is published), so it includes the client process reading its share of frames.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from api_load import Server, base_env, cli, cpu_seconds, wrk

LEAD = orjson.loads((Path(__file__).parent / "wrk" / "score.lua").read_text().split("'")[1]
                    .replace("%d_%d_%d", "{}"))  # fmt: skip


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


async def open_clients(url: str, key: str, n: int) -> list[ClientConnection]:
    clients = []
    for _ in range(n):
        ws = await connect(url, additional_headers={"X-API-Key": key}, max_queue=None)
        await ws.recv()  # connection_established
        await ws.send(orjson.dumps({"type": "subscribe", "events": ["lead_scored"]}).decode())
        await ws.recv()  # subscription_updated
        clients.append(ws)
    return clients


async def latency(server_url: str, key: str, n: int, events: int, gap: float) -> None:
    ws_url = server_url.replace("http://", "ws://") + "/api/v1/ml/ws/live-scores"
    clients = await open_clients(ws_url, key, n)
    receipts: dict[str, list[float]] = {}

    async def listen(ws: ClientConnection) -> None:
        async for raw in ws:
            now = time.time()
            message = orjson.loads(raw)
            if message["event_type"] == "lead_scored":
                sent = datetime.fromisoformat(message["timestamp"]).timestamp()
                receipts.setdefault(message["data"]["lead_id"], []).append((now - sent) * 1000)

    listeners = [asyncio.create_task(listen(ws)) for ws in clients]
    async with httpx.AsyncClient(base_url=server_url, headers={"X-API-Key": key}) as http:
        for i in range(events):
            body = dict(LEAD) | {"lead_id": f"fan_{n}_{i}_{time.time_ns()}"}
            response = await http.post("/api/v1/ml/score", json=body)
            response.raise_for_status()
            await asyncio.sleep(gap)
        deadline = time.monotonic() + 10
        while any(len(r) < n for r in receipts.values()) or len(receipts) < events:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
    for task in listeners:
        task.cancel()
    for ws in clients:
        await ws.close()
    complete = [r for r in receipts.values() if len(r) == n]
    first = [min(r) for r in complete]
    last = [max(r) for r in complete]
    print(
        f"{n:>5} clients, {len(complete)}/{events} events reached all: first client "
        f"p50 {pct(first, 50):.2f} ms p99 {pct(first, 99):.2f} ms; last client "
        f"p50 {pct(last, 50):.2f} ms p99 {pct(last, 99):.2f} ms"
    )


async def throughput(server: Server, key: str, seconds: int, clients_n: int) -> float:
    server_url = server.url
    ws_url = server_url.replace("http://", "ws://") + "/api/v1/ml/ws/live-scores"
    clients = await open_clients(ws_url, key, clients_n)
    received = 0

    async def listen(ws: ClientConnection) -> None:
        nonlocal received
        async for _ in ws:
            received += 1

    listeners = [asyncio.create_task(listen(ws)) for ws in clients]
    pids = server.worker_pids()
    cpu_before, own_before = cpu_seconds(pids), time.process_time()
    result = await asyncio.to_thread(wrk, server_url, seconds, 8, 1, "score.lua")
    server_cpu = cpu_seconds(pids) - cpu_before
    client_cpu = time.process_time() - own_before
    scores = result["rps"] * seconds
    for task in listeners:
        task.cancel()
    for ws in clients:
        await ws.close()
    print(
        f"scoring with {clients_n:>3} subscribed clients: {result['rps']:,.0f} scores/s "
        f"(p50 {result['p50']:.2f} ms, p99 {result['p99']:.2f} ms); "
        f"{received:,} events received by the clients; server CPU per score "
        f"{server_cpu * 1e6 / scores:.0f} us, client process CPU {client_cpu:.1f} s of {seconds} s"
    )
    return result["rps"]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=15)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; clients, wrk and the server share them")
    with tempfile.TemporaryDirectory(prefix="bench-ws-", dir="/tmp") as home:
        env = base_env(Path(home))
        key = cli(env, "keys", "create", "--team", "bench", "--role", "agent")
        env["LEADSCORE_BENCH_KEY"] = key
        os.environ["LEADSCORE_BENCH_KEY"] = key
        env["LEADSCORE_WS_QUEUE_SIZE"] = "10000"
        server = Server(env, workers=1)
        try:
            for n, events, gap in ((1, 200, 0.02), (100, 100, 0.05), (1000, 40, 0.25)):
                await latency(server.url, key, n, events, gap)
            base = await throughput(server, key, args.seconds, 0)
            loaded = await throughput(server, key, args.seconds, 100)
            print(f"throughput with 100 clients / without: {loaded / base:.1%}")
            metrics = httpx.get(
                f"{server.url}/api/v1/ml/ws/metrics",
                headers={"X-API-Key": cli(env, "keys", "create", "--team", "bench",
                                          "--role", "admin")},
            ).json()  # fmt: skip
            print(f"hub: fan-out latency {metrics['fanout_latency_ms']}, dropped "
                  f"{metrics['dropped']}, messages out {metrics['messages_out']:,}")  # fmt: skip
        finally:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
