"""Generator speed (100k leads to Parquet) and first-use build time of the default model.

Run: `uv run python benchmarks/build_times.py`. Targets: 100k leads ≤ 10 s; default model ≤ 30 s.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")

from leadscore.engine.defaults import load_or_build_default
from leadscore.engine.io import write_frame
from leadscore.engine.synthetic import generate


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for n in (100_000, 1_000_000):
            started = time.perf_counter()
            frame = generate(n, seed=1)
            generated = time.perf_counter() - started
            write_frame(frame, Path(tmp) / "leads.parquet")
            total = time.perf_counter() - started
            print(f"generate {n:>9,} leads: {generated:.2f} s, with Parquet write {total:.2f} s")
            del frame
        started = time.perf_counter()
        model = load_or_build_default(Path(tmp) / "home", num_threads=2)
        built = time.perf_counter() - started
        started = time.perf_counter()
        load_or_build_default(Path(tmp) / "home", num_threads=2)
        loaded = time.perf_counter() - started
        print(
            f"default model {model.version_}: built at first use in {built:.1f} s, "
            f"loaded from cache in {loaded * 1000:.0f} ms"
        )


if __name__ == "__main__":
    main()
