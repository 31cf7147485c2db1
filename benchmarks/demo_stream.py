"""CPU used by `leadscore demo` while it streams (server and stream share the process).

Run: `OMP_NUM_THREADS=2 uv run python benchmarks/demo_stream.py [--stream-rate 3] [--seconds 30]`.
Starts a demo in a temporary home on a free loopback port, waits for `ready`, lets the stream
warm up for 5 s, then reads the process's CPU ticks from /proc over `--seconds` and prints the
share of one core, with the scores served meanwhile (from `/model/status`). Prints figures;
BENCHMARKS.md records them.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stream-rate", type=float, default=3.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="leadscore-demo-bench-") as home:
        env = {**os.environ, "LEADSCORE_HOME": home, "OMP_NUM_THREADS": "2"}
        command = [sys.executable, "-m", "leadscore", "demo", "--port", str(port),
                   "--stream-rate", str(args.stream_rate)]  # fmt: skip
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
        try:
            assert process.stdout is not None
            key = ""
            for line in process.stdout:
                if line.startswith("admin API key"):
                    key = line.split(": ", 1)[1].strip()
                if line.startswith("ready"):
                    break
            time.sleep(5.0)
            status = f"http://127.0.0.1:{port}/api/v1/ml/model/status"
            headers = {"X-API-Key": key}
            before = httpx.get(status, headers=headers).json()["traffic"]["predictions"]
            started, cpu = time.monotonic(), cpu_seconds(process.pid)
            time.sleep(args.seconds)
            used = cpu_seconds(process.pid) - cpu
            wall = time.monotonic() - started
            after = httpx.get(status, headers=headers).json()["traffic"]["predictions"]
        finally:
            process.terminate()
            process.wait(timeout=30)
    load = os.getloadavg()[0]
    print(f"stream rate {args.stream_rate:g}/s over {wall:.1f} s: {after - before} scores "
          f"({(after - before) / wall:.2f}/s), CPU {used:.2f} s = {100 * used / wall:.1f} % "
          f"of one core (load average {load:.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
