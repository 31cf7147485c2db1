"""File scoring throughput and peak memory on 1M generated leads, through the real CLI.

Run: `uv run python benchmarks/file_scoring.py [--n 1000000]`. Generates the leads once into
var/bench/, trains a model once, then runs `leadscore score` under `/usr/bin/time -v` and prints
leads/s and the peak resident set size.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path("var/bench")


def cli(*args: str, timed: bool = False) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "leadscore", *args]
    if timed:
        command = ["/usr/bin/time", "-v", *command]
    env = {**os.environ, "OMP_NUM_THREADS": "2", "LEADSCORE_HOME": str(BENCH / "home")}
    return subprocess.run(command, env=env, capture_output=True, text=True, check=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--chunk-size", type=int, default=50_000)
    parser.add_argument("--explain", action="store_true", help="also time --explain")
    args = parser.parse_args()
    BENCH.mkdir(parents=True, exist_ok=True)
    leads = BENCH / f"leads-{args.n}.parquet"
    if not leads.exists():
        started = time.perf_counter()
        cli("generate", "--n", str(args.n), "--seed", "21", "-o", str(leads))
        print(f"generated {args.n} leads in {time.perf_counter() - started:.1f} s")
    model = BENCH / "model"
    if not (model / "card.json").exists():
        cli("generate", "--n", "60000", "--seed", "22", "-o", str(BENCH / "train.parquet"))
        cli("train", "--data", str(BENCH / "train.parquet"), "-o", str(model))
    for explain in (False, True) if args.explain else (False,):
        out = BENCH / "scores.parquet"
        flags = ["--explain"] if explain else []
        run = cli(
            "score",
            str(leads),
            "-o",
            str(out),
            "--model",
            str(model),
            "--chunk-size",
            str(args.chunk_size),
            *flags,
            timed=True,
        )
        wall = re.search(r"Elapsed \(wall clock\) time.*: (\S+)", run.stderr)
        rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", run.stderr)
        assert wall is not None
        assert rss is not None
        parts = [float(p) for p in wall.group(1).split(":")]
        seconds = sum(p * 60**i for i, p in enumerate(reversed(parts)))
        print(
            f"score {args.n} leads{' with explanations' if explain else ''}: "
            f"{run.stdout.strip().splitlines()[-1]}; process wall {seconds:.1f} s "
            f"({args.n / seconds:,.0f} leads/s incl. start-up), "
            f"peak RSS {int(rss.group(1)) / 1024:.0f} MiB"
        )


if __name__ == "__main__":
    main()
