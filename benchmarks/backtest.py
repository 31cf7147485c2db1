"""The backtest on the real Bank Marketing file: quality per policy on its own drift, and time.

Run: `OMP_NUM_THREADS=2 uv run python benchmarks/backtest.py [--window N]` — `leadscore
backtest` on all 41,188 rows of examples/data/bank-marketing (row order is time order, May 2008
to November 2010; `duration` dropped) with every policy, as a user runs it (one process, the
command line). Prints the command's own table, the last fifth's Brier per policy beside the
prior from the past, and the wall time (target ≤ 120 s on this machine).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples/data/bank-marketing/bank-additional-full.csv"
MAPPING = ROOT / "examples/bank-marketing.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--window", type=int, default=None, help="leads per window")
    parser.add_argument("--start", type=int, default=None, help="leads the first model learns")
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="bench-backtest-"))
    command = [sys.executable, "-m", "leadscore", "backtest", "--data", str(DATA),
               "--mapping", str(MAPPING), "--policy", "all", "--json",
               "--plot", str(out / "backtest.png")]  # fmt: skip
    if args.window:
        command += ["--window", str(args.window)]
    if args.start:
        command += ["--start", str(args.start)]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
           "LEADSCORE_HOME": str(out / "home")}  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - started
    report = json.loads(done.stdout)
    print(
        f"machine: {os.cpu_count()} cores; {report['rows']:,} rows, first model on "
        f"{report['start']:,}, {report['windows']} windows of {report['window']:,}; converted "
        f"{report['base_rate']['training']:.1%} then {report['base_rate']['scored']:.1%}"
    )
    print(f"{'':<13}{'overall AUC':>12}{'Brier':>8}{'ECE':>8}   {'last fifth AUC':>15}{'Brier':>8}"
          f"{'log-loss':>10}{'ECE':>8}  promoted  seconds")  # fmt: skip
    nan = float("nan")
    for name, series in report["policies"].items():
        o, last = series["overall"], series["last_fifth"]
        promoted = sum(u["promoted"] for u in series.get("updates", []))
        tried = len(series.get("updates", []))
        updates = f"{promoted}/{tried}" if tried else "—"
        print(f"{name:<13}{o.get('auc', nan):>12.4f}{o['brier']:>8.4f}{o['ece']:>8.4f}   "
              f"{last.get('auc', nan):>15.4f}{last['brier']:>8.4f}"
              f"{last['log_loss']:>10.4f}{last['ece']:>8.4f}  "
              f"{updates:>8}  {series.get('seconds', 0):>7}")  # fmt: skip
    print(
        f"wall time: {elapsed:.1f} s (first model {report['first_model_seconds']} s); "
        f"plot {out / 'backtest.png'}"
    )


if __name__ == "__main__":
    main()
