"""Scoring latency with a champion/challenger trial on, against none.

Run: `uv run python benchmarks/trial_latency.py [--seconds 15] [--rounds 3]` (needs `wrk`).
Starts `leadscore serve` (one worker, embedded default) on loopback, registers a second model
as the global challenger, then alternates rounds with the trial off, in shadow mode (the
challenger scores every request in the background) and in split mode (half the leads answered
by the challenger, the other version in the shadow). Each round is `POST /score` with a new
lead per request, explanations on: 1 connection (latency) and 8 connections (throughput).
Prints medians over the rounds (each round starts with another mode), every round's p50, and
how many shadow scores were stored.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from api_load import Server, base_env, cli, wrk

MODES = ("off", "shadow", "split")


def set_trial(env: dict[str, str], server: Server, key: str, mode: str) -> None:
    """Change the trial with the CLI, then wait until the worker serves it."""

    def serving() -> str:
        status = httpx.get(f"{server.url}/api/v1/ml/model/status", headers={"X-API-Key": key})
        return str(status.json()["trial"]["mode"])

    if serving() != mode:
        cli(env, "models", "trial", mode, "--share", "0.5")
    deadline = time.monotonic() + 10
    while True:
        if serving() == mode:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the worker never switched to {mode}")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench-trial-"))
    env = base_env(home)
    key = cli(env, "keys", "create", "--team", "bench", "--role", "agent")
    env["LEADSCORE_BENCH_KEY"] = os.environ["LEADSCORE_BENCH_KEY"] = key  # wrk's script reads it
    data, challenger = home / "challenger.parquet", home / "challenger"
    cli(env, "generate", "-o", str(data), "--n", "20000", "--seed", "3")
    cli(env, "train", "--data", str(data), "-o", str(challenger), "--seed", "3")
    server = Server(env, workers=1)
    try:
        version = cli(env, "models", "register", str(challenger))
        print(f"challenger {version} registered; {args.rounds} rounds x {args.seconds} s per mode")
        wrk(server.url, 3, 1, 1, "score.lua")  # warm-up
        results: dict[tuple[str, int], list[dict[str, float]]] = {}
        for round_ in range(args.rounds):
            # Each round starts with another mode: a slow spell of the machine (or a WAL
            # checkpoint) must not always land on the same one.
            for mode in MODES[round_ % 3 :] + MODES[: round_ % 3]:
                set_trial(env, server, key, mode)
                for connections in (1, 8):
                    result = wrk(server.url, args.seconds, connections, 1, "score.lua")
                    if result["non_2xx"]:
                        raise RuntimeError(f"{int(result['non_2xx'])} requests failed ({mode})")
                    results.setdefault((mode, connections), []).append(result)
        set_trial(env, server, key, "off")
        status = httpx.get(f"{server.url}/api/v1/ml/model/status", headers={"X-API-Key": key})
        print(f"model status after the rounds: trial {status.json()['trial']}")
    finally:
        server.stop()
    stored = subprocess.run(
        ["sqlite3", str(home / "leadscore.db"), "select count(*) from shadow_scores"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    print(f"shadow scores stored: {stored or 'n/a (no sqlite3 command)'}")
    for (mode, connections), rounds in sorted(results.items(), key=lambda x: (x[0][1], x[0][0])):
        p50 = statistics.median(r["p50"] for r in rounds)
        each = " ".join(f"{r['p50']:.2f}" for r in rounds)
        p99 = statistics.median(r["p99"] for r in rounds)
        rps = statistics.median(r["rps"] for r in rounds)
        errors = sum(r["non_2xx"] for r in rounds)
        # Paired by round: the server slows as its SQLite file grows, alike for every mode.
        offs = results[("off", connections)]
        change = (
            statistics.median(r["p50"] / o["p50"] for r, o in zip(rounds, offs, strict=True)) - 1
        )
        print(
            f"trial {mode:<6} {connections} conn: p50 {p50:.3f} ms ({change:+.1%} vs off, "
            f"median of the rounds' ratios)  "
            f"p99 {p99:.3f} ms  {rps:,.0f} req/s  non-2xx {int(errors)}  (rounds' p50: {each})"
        )


if __name__ == "__main__":
    main()
