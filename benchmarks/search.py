"""Models sized to the data (issue 15): how long the time-ordered search takes for a team of
10,000 leads, and whether the product's pipeline beats plain LightGBM on a CRM-style export.

    uv run python benchmarks/search.py [--rows 10000] [--cv 5]

Data: UCI Bank Marketing (examples/data/bank-marketing, CC BY 4.0) through
examples/bank-marketing.yaml: every column a custom attribute, `duration` dropped, rows in
time order. The baseline is LightGBM with its default parameters (100 rounds, 31 leaves,
native categorical splits) on the same attribute columns, scored by the same stratified folds
as `leadscore evaluate --cv`.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")

import lightgbm as lgb
import numpy as np

from leadscore.cli.engine import _time_ordered_input
from leadscore.engine.metrics import auc, brier
from leadscore.engine.model import LeadModel, ModelConfig, train
from leadscore.engine.pipeline import cross_validate, stratified_folds
from leadscore.engine.scorer import Scorer
from leadscore.engine.search import search
from leadscore.engine.training import TrainingInput

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples/data/bank-marketing/bank-additional-full.csv"
MAPPING = ROOT / "examples/bank-marketing.yaml"
THREADS = 2


def plain_lightgbm(data: TrainingInput, names: tuple[str, ...], cats: tuple[str, ...], k: int,
                   seed: int) -> tuple[float, float]:  # fmt: skip
    """Out-of-fold AUC and Brier of default LightGBM on the attribute columns alone."""
    from leadscore.engine.attributes import AttributeSpec

    spec = AttributeSpec(tuple(n for n in names if n not in cats), cats).learn(
        data.attribute_values
    )
    x = spec.encode(data.attribute_values, len(data.raw))
    y = data.outcomes.converted
    categorical = list(range(len(spec.numeric), len(spec.names)))
    folds = stratified_folds(y, k, seed)
    probs = np.full(len(y), np.nan)
    params = {"objective": "binary", "num_threads": THREADS, "seed": seed, "verbosity": -1}
    for fold in range(k):
        train_rows, held = folds != fold, folds == fold
        booster = lgb.train(
            params,
            lgb.Dataset(x[train_rows], y[train_rows], categorical_feature=categorical),
            num_boost_round=100,
        )
        probs[held] = booster.predict(x[held])
    return auc(y, probs), brier(y, probs)


def one_lead_latency(model: LeadModel, data: TrainingInput) -> tuple[float, float]:
    """Milliseconds to score and explain one lead with its team fields, as the API does."""
    from leadscore.engine.schema import Lead

    scorer = Scorer(model)
    leads = [
        Lead.model_validate({
            "lead_id": str(i),
            "lead_data": {"attributes": {k: v[i] for k, v in data.attribute_values.items()}},
        })
        for i in range(200)
    ]  # fmt: skip
    times = []
    for round_ in range(10):
        for lead in leads:
            started = time.perf_counter()
            scorer.score(lead)
            if round_:  # the first round warms the one-row paths
                times.append((time.perf_counter() - started) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000, help="the team's labelled leads")
    parser.add_argument("--cv", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data, attributes = _time_ordered_input(DATA, MAPPING, None)
    n = len(data.raw)
    print(f"Bank Marketing: {n} rows, {len(attributes.names)} attributes, {THREADS} threads")

    team = data.take(np.arange(n - args.rows, n))  # the newest rows, in time order
    config = ModelConfig(num_threads=THREADS, seed=args.seed)
    started = time.perf_counter()
    found = search(team, config, attributes, "time-ordered")
    searched = time.perf_counter() - started
    print(f"\nsearch for {args.rows} leads: {searched:.1f} s (target <= 60 s), "
          f"{len(found.record['tried'])} candidates x {found.record['folds']} folds")  # fmt: skip
    for trial in found.record["tried"]:
        print(f"  {trial['candidate']:<58} AUC {trial['auc']:.4f}  Brier {trial['brier']:.4f}")
    print(f"  winner: {found.record['winner']}\n  why: {found.record['why']}")
    started = time.perf_counter()
    again = search(team, config, attributes, "time-ordered")
    print(f"  same seed again: same winner {again.record == found.record} "
          f"({time.perf_counter() - started:.1f} s)")  # fmt: skip
    started = time.perf_counter()
    searched_model = train(
        team, ModelConfig(num_threads=THREADS, seed=args.seed, search=True), attributes
    )
    print(f"  training with the search: {time.perf_counter() - started:.1f} s")
    default_model = train(team, config, attributes)
    for label, model in (("defaults", default_model), ("searched", searched_model)):
        p50, p99 = one_lead_latency(model, team)
        print(f"  one lead, explained, {label:<9} ({model.card_['algorithm']}): "
              f"p50 {p50:.3f} ms  p99 {p99:.3f} ms")  # fmt: skip

    print(f"\n{args.cv}-fold CV on all {n} rows (`leadscore evaluate --cv {args.cv}`)")
    for label, with_search in (("product, defaults", False), ("product, search", True)):
        started = time.perf_counter()
        result = cross_validate(
            data, ModelConfig(num_threads=THREADS, seed=args.seed, search=with_search),
            attributes, args.cv,
        )  # fmt: skip
        m = result.metrics["conversion"]
        print(f"  {label:<20} AUC {m['auc']:.4f}  Brier {m['brier']:.4f}  "
              f"({time.perf_counter() - started:.0f} s)")  # fmt: skip
    started = time.perf_counter()
    base_auc, base_brier = plain_lightgbm(
        data, attributes.names, attributes.categorical, args.cv, args.seed
    )
    print(f"  {'plain LightGBM':<20} AUC {base_auc:.4f}  Brier {base_brier:.4f}  "
          f"({time.perf_counter() - started:.0f} s)")  # fmt: skip


if __name__ == "__main__":
    main()
