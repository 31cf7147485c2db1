"""The CRM loop's speed on one worker: acknowledged GoHighLevel webhooks (wrk), and the time
from a webhook to its write-back arriving at a local GoHighLevel.

Run: `OMP_NUM_THREADS=2 uv run python benchmarks/crm_webhooks.py [--webhooks 12000]
[--seconds 10] [--latency-samples 150] [--postgres]` (needs `wrk`; `--postgres`: PostgreSQL and
Redis from scripts/test-services.sh). A `leadscore serve --workers 1` on the embedded SQLite
(or PostgreSQL + Redis) gets a GoHighLevel connection whose API base is a fake contacts API in this
process; webhooks are signed beforehand with an RSA-4096 key (GoHighLevel's size) the server
is configured to trust. Part 1: wrk sends distinct ContactCreate deliveries (1 and 16
connections); each is verified, stored and acknowledged while the worker also processes the
backlog. Part 2: one webhook at a time, 2.5 per second (under GoHighLevel's rate, so nothing is
throttled): from sending it to the fake receiving the score's PUT. Prints p50/p99 and rates.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))
from tests.api.conftest import ServerThread  # noqa: E402
from tests.fakes.gohighlevel import FakeGoHighLevel  # noqa: E402

from api_load import Server, base_env, cli, show, wrk  # noqa: E402
from leadscore.crm.secrets import new_key  # noqa: E402

LOCATION = "benchLocation0000001"
LATENCY_LOCATION = "benchLocation0000002"
_KEY: rsa.RSAPrivateKey | None = None


def _init(pem: bytes) -> None:
    global _KEY
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    _KEY = key


def _sign(body: bytes) -> str:
    assert _KEY is not None
    return base64.b64encode(_KEY.sign(body, padding.PKCS1v15(), hashes.SHA256())).decode()


def delivery(contact: str, stamp: str, location: str = LOCATION) -> bytes:
    event = {"type": "ContactCreate", "locationId": location, "id": contact,
             "firstName": "Bench", "lastName": contact[-6:], "email": f"{contact}@bench.test",
             "phone": "+15550100", "source": "website", "dateAdded": stamp,
             "tags": ["buyer"], "customFields": [{"id": "TimelineField0000001",
                                                  "value": "1-3 months"}]}  # fmt: skip
    return orjson.dumps({"timestamp": stamp, "webhookId": f"wh-{contact}", "data": event})


def signed_file(path: Path, n: int, pem: bytes) -> None:
    """N distinct deliveries signed on both cores (RSA-4096 signing is the slow part)."""
    stamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    bodies = [delivery(f"c{uuid.uuid4().hex[:19]}", stamp) for _ in range(n)]
    with ProcessPoolExecutor(2, initializer=_init, initargs=(pem,)) as pool:
        signatures = list(pool.map(_sign, bodies, chunksize=200))
    lines = (s.encode() + b"\t" + b + b"\n" for s, b in zip(signatures, bodies, strict=True))
    path.write_bytes(b"".join(lines))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@contextlib.contextmanager
def database(postgres: bool) -> Iterator[dict[str, str]]:
    """The server's database settings: none (the embedded SQLite), or a private PostgreSQL and
    Redis for the run."""
    if not postgres:
        yield {}
        return
    services = Path(tempfile.mkdtemp(prefix="bench-services-", dir="/tmp"))
    script = str(ROOT / "scripts/test-services.sh")
    subprocess.run([script, "start", str(services)], check=True, capture_output=True)
    try:
        urls = dict(re.findall(r"export (\w+)=(\S+)", (services / "env").read_text()))
        yield {
            "LEADSCORE_DATABASE_URL": urls["LEADSCORE_TEST_POSTGRES_URL"],
            "LEADSCORE_REDIS_URL": urls["LEADSCORE_TEST_REDIS_URL"],
        }
    finally:
        subprocess.run([script, "stop", str(services)], check=False, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--webhooks", type=int, default=12_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--latency-samples", type=int, default=150)
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL + Redis, not SQLite")
    args = parser.parse_args()
    with database(args.postgres) as settings:
        run(args, settings)


def run(args: argparse.Namespace, settings: dict[str, str]) -> None:
    """Both parts against one server."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())  # fmt: skip
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    fake = FakeGoHighLevel(limit=1_000_000)
    fake_server = ServerThread(fake.app()).start()
    home = Path(tempfile.mkdtemp(prefix="bench-crm-"))
    env = (
        base_env(home)
        | settings
        | {
            "LEADSCORE_SECRET_KEY": new_key(),
            "LEADSCORE_GHL_WEBHOOK_PUBLIC_KEY": public,
            "LEADSCORE_CRM_INBOX_MAX_PENDING": "1000000",
        }
    )
    admin = cli(env, "keys", "create", "--team", "bench", "--role", "admin")
    server = Server(env, workers=1)
    try:
        create = f"{server.url}/api/v1/crm/connections"
        for location, enabled in ((LOCATION, False), (LATENCY_LOCATION, True)):
            # Part 1 writes nothing back (its backlog would hold part 2 behind the rate limit).
            connection = httpx.post(create, headers={"X-API-Key": admin}, json={
                "provider": "gohighlevel", "account_id": location,
                "credentials": {"token": "pit-test-token"}, "api_base": fake_server.url,
                "write_back": {"enabled": enabled, "score_field": "ScoreField0000000001",
                               "class_tags": {"hot": "hot", "warm": "warm", "cold": "cold"}},
                "field_mapping": {"TimelineField0000001": "timeline"},
            })  # fmt: skip
            assert connection.status_code == 201, connection.text
        kind = "PostgreSQL + Redis" if settings else "SQLite"
        print(f"machine: {os.cpu_count()} cores; one worker, {kind}; RSA-4096 signatures")
        for connections in (1, 16):
            signed = home / f"webhooks-{connections}.tsv"
            signed_file(signed, args.webhooks, pem)
            os.environ["LEADSCORE_BENCH_WEBHOOKS"] = str(signed)
            threads = 1 if connections == 1 else 2
            os.environ["LEADSCORE_BENCH_THREADS"] = str(threads)
            result = wrk(server.url, args.seconds, connections, threads, "webhooks.lua")
            show(f"webhook acknowledged, {connections} connection(s)", result)
            sent = result["rps"] * args.seconds
            if sent > args.webhooks:
                print(
                    f"  note: {sent - args.webhooks:.0f} requests repeated a delivery (duplicates)"
                )
            drain_started = time.monotonic()
            while True:
                waiting = httpx.get(f"{server.url}/api/v1/crm/inbox", headers={"X-API-Key": admin},
                                    params={"status": "pending", "limit": 1}).json()  # fmt: skip
                if not waiting:
                    break
                time.sleep(0.5)
            print(f"  backlog processed {time.monotonic() - drain_started:.1f} s after wrk ended")
        latencies: list[float] = []
        with httpx.Client(base_url=server.url, timeout=10) as client:
            _init(pem)
            for _ in range(args.latency_samples):
                contact = f"c{uuid.uuid4().hex[:19]}"
                now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
                body = delivery(contact, now, LATENCY_LOCATION)
                headers = {"x-wh-signature": _sign(body), "content-type": "application/json"}
                started = time.monotonic()
                answer = client.post("/api/v1/crm/gohighlevel/webhook", content=body,
                                     headers=headers)  # fmt: skip
                assert answer.status_code == 200, answer.text
                while not (writes := fake.writes(contact)):
                    if time.monotonic() - started > 10:
                        raise RuntimeError(f"no write-back for {contact} within 10 s")
                    time.sleep(0.001)
                latencies.append((writes[0].at - started) * 1000)
                time.sleep(max(0.0, 0.4 - (time.monotonic() - started)))
        print(f"webhook → write-back PUT at the fake ({len(latencies)} at 2.5/s): "
              f"p50 {statistics.median(latencies):.1f} ms  p99 {pct(latencies, 0.99):.1f} ms  "
              f"max {max(latencies):.1f} ms")  # fmt: skip
    finally:
        server.stop()
        fake_server.stop()


if __name__ == "__main__":
    main()
