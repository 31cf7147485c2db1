"""Live events: publish → receipt latency to 1, 100 and 1,000 WebSocket clients, and scoring
throughput with 100 subscribed clients against none.

Run: `uv run python benchmarks/ws_fanout.py [--seconds 10] [--rounds 3]` (needs `wrk`). Starts
`leadscore serve` (one worker, embedded default) on loopback. Latency clients use the
`websockets` library in this process; latency = a client's receipt time − the event's own
timestamp (set when the score is published). Throughput clients are minimal readers (real
handshake and subscription, frames counted) so that they take little of the shared 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
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


class CountingClient(asyncio.Protocol):
    """A WebSocket client that only counts the text frames it receives.

    The throughput run measures the server: in a deployment the dashboards run elsewhere, so
    here the 100 clients must cost as little as possible on the 2 shared cores. The handshake
    and the subscription are real; incoming frames are parsed just enough to count them.
    """

    def __init__(self, key: str, host: str) -> None:
        self.key, self.host = key, host
        self.buffer = b""
        self.open = False
        self.frames = 0
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(
            f"GET /api/v1/ml/ws/live-scores HTTP/1.1\r\nHost: {self.host}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
            f"X-API-Key: {self.key}\r\n\r\n".encode()
        )

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        if not self.open:
            head, sep, buffer = buffer.partition(b"\r\n\r\n")
            if not sep:
                self.buffer = head
                return
            assert head.startswith(b"HTTP/1.1 101"), head
            self.open = True
            request = orjson.dumps({"type": "subscribe", "events": ["lead_scored"]})
            # Client frames are masked; a zero mask leaves the bytes as they are.
            self.transport.write(bytes([0x81, 0x80 | len(request)]) + bytes(4) + request)
        at, size = 0, len(buffer)
        while size - at >= 2:
            length, start = buffer[at + 1] & 0x7F, at + 2
            if length == 126:
                if size - at < 4:
                    break
                length, start = int.from_bytes(buffer[at + 2 : at + 4]), at + 4
            elif length == 127:
                if size - at < 10:
                    break
                length, start = int.from_bytes(buffer[at + 2 : at + 10]), at + 10
            if start + length > size:
                break
            if buffer[at] == 0x81:
                self.frames += 1
                if self.frames == 2:  # connection_established, subscription_updated
                    self.ready.set_result(None)
            at = start + length
        self.buffer = buffer[at:]


async def throughput(server: Server, key: str, seconds: int, clients_n: int) -> float:
    loop = asyncio.get_running_loop()
    clients = []
    for _ in range(clients_n):
        _, client = await loop.create_connection(
            lambda: CountingClient(key, f"127.0.0.1:{server.port}"), "127.0.0.1", server.port
        )
        await asyncio.wait_for(client.ready, 10)
        clients.append(client)
    pids = server.worker_pids()
    cpu_before, own_before = cpu_seconds(pids), time.process_time()
    counted_before = sum(c.frames for c in clients)
    result = await asyncio.to_thread(wrk, server.url, seconds, 8, 1, "score.lua")
    server_cpu = cpu_seconds(pids) - cpu_before
    client_cpu = time.process_time() - own_before
    scores = result["rps"] * seconds
    await asyncio.sleep(1)  # the last flush
    received = sum(c.frames for c in clients) - counted_before
    for client in clients:
        client.transport.close()
    print(
        f"scoring with {clients_n:>3} subscribed clients: {result['rps']:,.0f} scores/s "
        f"(p50 {result['p50']:.2f} ms, p99 {result['p99']:.2f} ms); "
        f"{received:,} events received by the clients ({received / max(1, clients_n):,.0f} "
        f"each, pings included); server CPU per score {server_cpu * 1e6 / scores:.0f} us, "
        f"client process CPU {client_cpu:.1f} s of {seconds} s"
    )
    return result["rps"]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
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
                if not args.skip_latency:
                    await latency(server.url, key, n, events, gap)
            # Alternate runs without and with clients: the machine's own noise (±10 %) hits both.
            ratios = []
            for _ in range(args.rounds):
                base = await throughput(server, key, args.seconds, 0)
                loaded = await throughput(server, key, args.seconds, 100)
                ratios.append(loaded / base)
                print(f"throughput with 100 clients / without: {loaded / base:.1%}")
            print(f"median of {args.rounds} rounds: {statistics.median(ratios):.1%}")
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
