"""In-process engine latency: one lead and 100 leads, features + predict + exact explanations.

Run: `make bench` or `uv run python benchmarks/engine_latency.py [--tradeoff]`.
Prints percentiles; figures are copied into BENCHMARKS.md by hand.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from functools import partial

os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np
import polars as pl

from leadscore.engine.attributes import AttributeSpec
from leadscore.engine.features import transform
from leadscore.engine.io import frame_to_leads
from leadscore.engine.metrics import auc
from leadscore.engine.model import LeadModel, ModelConfig, train
from leadscore.engine.raw import raw_from_leads
from leadscore.engine.schema import Lead
from leadscore.engine.scorer import Scorer
from leadscore.engine.synthetic import generate
from leadscore.engine.training import TrainingInput


def percentiles(samples_ms: list[float]) -> str:
    q = np.percentile(samples_ms, [50, 95, 99])
    return f"p50 {q[0]:.3f} ms  p95 {q[1]:.3f} ms  p99 {q[2]:.3f} ms  (n={len(samples_ms)})"


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def latency(model: LeadModel, leads: list[Lead], repeats: int) -> None:
    scorer = Scorer(model)
    for lead in leads[:200]:
        scorer.score(lead)
    one = leads[:repeats]
    results = {
        "one lead, features only": [],
        "one lead, features + predict (3 heads)": [],
        "one lead, features + predict + explanations": [],
        "one lead, + explanations + ask_next (the API's)": [],
    }
    for lead in one:
        start = time.perf_counter()
        transform(raw_from_leads([lead.lead_data]), model.encoding_)
        results["one lead, features only"].append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        scorer.score(lead, explain=False, ask=False)
        results["one lead, features + predict (3 heads)"].append(
            (time.perf_counter() - start) * 1000
        )
        start = time.perf_counter()
        scorer.score(lead, ask=False)
        results["one lead, features + predict + explanations"].append(
            (time.perf_counter() - start) * 1000
        )
        start = time.perf_counter()
        scorer.score(lead)
        results["one lead, + explanations + ask_next (the API's)"].append(
            (time.perf_counter() - start) * 1000
        )
    for name, samples in results.items():
        print(f"{name:<48} {percentiles(samples)}")
    batches = [leads[i : i + 100] for i in range(0, len(leads) - 100, 100)][:200]
    samples = [0.0] * 0
    for batch in batches:
        start = time.perf_counter()
        scorer.score_many(batch)
        samples.append((time.perf_counter() - start) * 1000)
    print(f"{'100 leads, explanations + ask_next':<48} {percentiles(samples)}")


def tradeoff(train_frame: pl.DataFrame, test_frame: pl.DataFrame, leads: list[Lead]) -> None:
    """Model size vs held-out AUC vs explanation cost (TreeSHAP ~ trees × leaves × depth²)."""
    data = TrainingInput.from_frame(train_frame, AttributeSpec())
    y = test_frame["converted"].cast(pl.Float64).to_numpy()
    oracle = auc(y, test_frame["p_conversion"].to_numpy())
    print(f"\noracle AUC on the test leads: {oracle:.4f}")
    print("leaves depth lr    trees  test AUC  explain p50 (1 lead)  100 leads p50")
    for leaves, depth, lr in [
        (4, 2, 0.1),
        (8, 3, 0.06),
        (8, 3, 0.12),
        (15, 4, 0.06),
        (31, -1, 0.05),
    ]:
        model = train(data, ModelConfig(num_leaves=leaves, max_depth=depth, learning_rate=lr))
        scorer = Scorer(model)
        scored = scorer.score_frame(test_frame)
        model_auc = auc(y, scored["p_conversion"].to_numpy())
        for lead in leads[:100]:
            scorer.score(lead)
        one = statistics.median(timed(partial(scorer.score, leads[7]), 300))
        hundred = statistics.median(timed(partial(scorer.score_many, leads[:100]), 50))
        trees = model.card_["training_data"]["rows_per_head"]["conversion"]["trees"]
        print(
            f"{leaves:>6} {depth:>5} {lr:<5} {trees:>5}  {model_auc:.4f}    "
            f"{one:.3f} ms              {hundred:.2f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tradeoff", action="store_true", help="also sweep model sizes")
    parser.add_argument("--repeats", type=int, default=2000)
    args = parser.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}"
    )
    train_frame = generate(60_000, seed=11)
    test_frame = generate(20_000, seed=12)
    started = time.perf_counter()
    model = train(TrainingInput.from_frame(train_frame, AttributeSpec()), ModelConfig(seed=11))
    print(
        f"default model: trained in {time.perf_counter() - started:.1f} s, "
        f"{model.card_['training_data']['rows_per_head']['conversion']['trees']} trees "
        f"(conversion), {model.card_['params']['num_leaves']} leaves, "
        f"depth {model.card_['params']['max_depth']}"
    )
    leads = frame_to_leads(test_frame.head(max(args.repeats, 2_100)))
    latency(model, leads, args.repeats)
    if args.tradeoff:
        tradeoff(train_frame, test_frame, leads)


if __name__ == "__main__":
    main()
