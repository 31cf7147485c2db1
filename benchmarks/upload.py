"""Uploading a ~200 MiB CRM export for training while the worker keeps answering.

Run: `uv run python benchmarks/upload.py [--mib 200]`. `leadscore serve` (one worker, SQLite,
in a temporary home) gets an admin key; a CSV export with outcome columns (generated leads,
repeated under new ids up to the size) is streamed to `POST /api/v1/ml/models/train/export`
with httpx while another process sends `GET /api/v1/ml/health` again and again: the probes'
latency is how long a request waits for the worker's event loop. Prints the probes' p50, p99
and max during the upload (until the 202) and during the training job, the peak RSS (VmHWM)
of the worker and of its training process, and whether the upload's temporary file is gone.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from multiprocessing import Queue
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from api_load import Server, cli
from leadscore.engine.io import write_frame
from leadscore.engine.synthetic import generate

URL = "/api/v1/ml/models/train/export"
CHUNK = 1 << 20


def make_export(path: Path, mib: int) -> int:
    """A canonical CSV export of about `mib` MiB: 20,000 generated leads repeated under new ids."""
    seed = path.with_name("seed.csv")
    frame = generate(20_000, seed=7).drop("as_of", "p_conversion", "p_closing", "p_timeline")
    write_frame(frame, seed)
    header, body = seed.read_bytes().split(b"\n", 1)
    rows = 0
    with path.open("wb") as out:
        out.write(header + b"\n")
        copy = 0
        while (room := (mib << 20) - out.tell()) > 0:
            rows_of = body.replace(b"syn_", f"r{copy}_".encode())
            if len(rows_of) > room:  # the last copy in part, up to a whole row
                rows_of = rows_of[: rows_of.rfind(b"\n", 0, room) + 1]
                if not rows_of:
                    break
            out.write(rows_of)
            rows += rows_of.count(b"\n")
            copy += 1
    seed.unlink()
    return rows


def multipart(path: Path, boundary: str) -> tuple[Iterator[bytes], int]:
    """The body of a one-file multipart form, streamed from disk, and its length."""
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="export"; filename="crm.csv"\r\n'
        f"Content-Type: text/csv\r\n\r\n"
    ).encode()
    tail = (
        f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="promote"\r\n\r\nfalse'
        f"\r\n--{boundary}--\r\n"
    ).encode()

    def body() -> Iterator[bytes]:
        yield head
        with path.open("rb") as source:
            while chunk := source.read(CHUNK):
                yield chunk
        yield tail

    return body(), len(head) + path.stat().st_size + len(tail)


def probe(
    url: str, ready: EventType, stop: EventType, out: Queue[list[tuple[float, float]]]
) -> None:
    """GET /health in a tight loop, in a process of its own (in the uploading process it would
    wait for that process's GIL too): (monotonic start, latency ms) of every probe."""
    samples = []
    with httpx.Client(base_url=url, timeout=30) as http:
        while not stop.is_set():
            started = time.monotonic()
            try:
                http.get("/api/v1/ml/health").raise_for_status()
            except httpx.TransportError:
                break  # the server stopped (the benchmark failed)
            samples.append((started, (time.monotonic() - started) * 1000))
            ready.set()
            time.sleep(0.002)
    out.put(samples)


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise LookupError(field)


def training_process(worker: int) -> int | None:
    """The worker's spawned training process (not multiprocessing's resource tracker)."""
    out = subprocess.run(["pgrep", "-P", str(worker)], capture_output=True, text=True).stdout
    for pid in map(int, out.split()):
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        if b"spawn_main" in command and b"resource_tracker" not in command:
            return pid
    return None


def show(name: str, samples: list[tuple[float, float]], start: float, end: float) -> None:
    inside = [(lag, at) for at, lag in samples if start <= at < end]
    if not inside:
        print(f"{name}: no probes")
        return
    slowest, when = max(inside)
    lags = sorted(lag for lag, _ in inside)
    print(
        f"{name}: probes {len(lags):,}  p50 {lags[len(lags) // 2]:.1f} ms  "
        f"p99 {lags[int(len(lags) * 0.99)]:.1f} ms  max {slowest:.1f} ms "
        f"(sent {when - start:.2f} s into it)"
    )


def run(home: Path, mib: int, loop_debug: bool) -> None:
    env = {
        **os.environ,
        "LEADSCORE_HOME": str(home),
        "LEADSCORE_JWT_SECRET": secrets.token_urlsafe(48),
        "LEADSCORE_RATE_LIMIT_PER_MINUTE": "1000000000",
        "LEADSCORE_MAX_UPLOAD_BYTES": str((mib + 1) << 20),
        "OMP_NUM_THREADS": "2",
    }
    if loop_debug:
        # asyncio's debug mode logs every callback that holds a loop for 100 ms or more.
        env["PYTHONASYNCIODEBUG"] = "1"
    key = cli(env, "keys", "create", "--team", "bench", "--role", "admin")
    export = home / "export.csv"
    started = time.perf_counter()
    rows = make_export(export, mib)
    size = export.stat().st_size
    print(f"export: {rows:,} rows, {size / (1 << 20):.0f} MiB CSV "
          f"(made in {time.perf_counter() - started:.1f} s)")  # fmt: skip
    log = home / "server.log"
    server = Server(env, workers=1, log=log)
    worker = server.worker_pids()[0]
    headers = {"X-API-Key": key}
    try:
        print(f"worker RSS before the upload: {status_kib(worker, 'VmRSS') / 1024:.0f} MiB")
        spawn = multiprocessing.get_context("spawn")
        ready, stop, out = spawn.Event(), spawn.Event(), spawn.Queue()
        prober = spawn.Process(target=probe, args=(server.url, ready, stop, out), daemon=True)
        prober.start()
        assert ready.wait(120), "the probing process did not start"
        t_idle = time.monotonic()
        time.sleep(3)
        boundary = secrets.token_hex(16)
        body, length = multipart(export, boundary)
        t_upload = time.monotonic()
        with httpx.Client(base_url=server.url, timeout=600) as http:
            answer = http.post(URL, content=body, headers=headers | {
                "Content-Type": f"multipart/form-data; boundary={boundary}",
                "Content-Length": str(length),
            })  # fmt: skip
            t_accepted = time.monotonic()
            assert answer.status_code == 202, answer.text
            while True:
                mine = [m for m in http.get("/api/v1/ml/models", headers=headers).json()
                        if m["team_id"] is not None]  # fmt: skip
                if mine:
                    break
                assert time.monotonic() - t_upload < 1800, "the job never finished"
                time.sleep(1)
        t_trained = time.monotonic()
        load = os.getloadavg()[0]
        stop.set()
        samples = out.get(timeout=60)
        prober.join()
        accepted = t_accepted - t_upload
        print(f"upload + checks until the 202: {accepted:.1f} s "
              f"({size / (1 << 20) / accepted:.0f} MiB/s)")  # fmt: skip
        print(f"202 until the challenger is registered: {t_trained - t_accepted:.1f} s")
        show("health probes, idle", samples, t_idle, t_upload)
        show("health probes during the upload", samples, t_upload, t_accepted)
        show("health probes during the training job", samples, t_accepted, t_trained)
        print(f"load average (1 min) at the end: {load:.1f}")
        print(f"worker peak RSS (VmHWM): {status_kib(worker, 'VmHWM') / 1024:.0f} MiB")
        child = training_process(worker)
        if child is not None:
            print(f"training process peak RSS (VmHWM): {status_kib(child, 'VmHWM') / 1024:.0f} MiB")
        uploads = home / "uploads"
        left = list(uploads.iterdir()) if uploads.is_dir() else []
        print(f"files left in home/uploads after the job: {len(left)}")
        if loop_debug:
            slow = [line for line in log.read_text().splitlines() if " took " in line]
            # The training process logs through the same stderr: its own loop reads the rows.
            worker_slow = [line for line in slow if "_rows.<locals>.read" not in line]
            print(f"callbacks holding the worker's loop >= 100 ms: {len(worker_slow)}")
            for line in worker_slow[:10]:
                print("  ", line[:300])
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=200)
    parser.add_argument(
        "--loop-debug", action="store_true",
        help="run the worker in asyncio debug mode and list callbacks that held its loop >= 100 ms",
    )  # fmt: skip
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="bench-upload-", dir="/tmp") as home:
        run(Path(home), args.mib, args.loop_debug)


if __name__ == "__main__":
    main()
