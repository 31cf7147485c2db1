"""Models sized to the data (issue 15): how long the time-ordered search takes for a team of
10,000 leads, and whether the product's pipeline beats plain LightGBM on a CRM-style export.

    uv run python benchmarks/search.py [--rows 10000] [--cv 5]

Data: UCI Bank Marketing (examples/data/bank-marketing, CC BY 4.0) through
examples/bank-marketing.yaml: every column a custom attribute, `duration` dropped, rows in
time order. The baseline is LightGBM with its default parameters (100 rounds, 31 leaves,
native categorical splits) on the same attribute columns, scored by the same stratified folds
as `leadscore evaluate --cv` (the rows undated, as the CLI reads them), and on a forward split
in time (the oldest 80 % train, the newest 20 % test) as `leadscore evaluate --split time`.
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
from leadscore.engine.attributes import AttributeSpec
from leadscore.engine.mapping import load_mapping, load_training_frame
from leadscore.engine.metrics import auc, brier
from leadscore.engine.model import LeadModel, ModelConfig, train
from leadscore.engine.pipeline import cross_validate, evaluate_model, stratified_folds
from leadscore.engine.policy import older_and_newest
from leadscore.engine.raw import FloatArray
from leadscore.engine.scorer import Scorer
from leadscore.engine.search import search
from leadscore.engine.training import TrainingInput

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples/data/bank-marketing/bank-additional-full.csv"
MAPPING = ROOT / "examples/bank-marketing.yaml"
THREADS = 2
#: The engine's plain defaults, and what `leadscore train`/`evaluate` and team models run.
PIPELINES = (("product, defaults", False), ("product, sized", True))


def plain_lightgbm(
    train_rows: TrainingInput, test_rows: TrainingInput, attributes: AttributeSpec, seed: int
) -> FloatArray:
    """Default LightGBM on the attribute columns alone: the baseline to beat."""
    spec = attributes.learn(train_rows.attribute_values)
    categorical = list(range(len(spec.numeric), len(spec.names)))
    params = {"objective": "binary", "num_threads": THREADS, "seed": seed, "verbosity": -1}
    booster = lgb.train(
        params,
        lgb.Dataset(
            spec.encode(train_rows.attribute_values, len(train_rows.raw)),
            train_rows.outcomes.converted,
            categorical_feature=categorical,
        ),
        num_boost_round=100,
    )
    x = spec.encode(test_rows.attribute_values, len(test_rows.raw))
    return np.asarray(booster.predict(x), dtype=np.float64)


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
        team,
        ModelConfig(num_threads=THREADS, seed=args.seed, search=True, cross_fit=True),
        attributes,
    )
    print(f"  training with the search and cross-fitting: {time.perf_counter() - started:.1f} s")
    default_model = train(team, config, attributes)
    for label, model in (("defaults", default_model), ("searched", searched_model)):
        p50, p99 = one_lead_latency(model, team)
        print(f"  one lead, explained, {label:<9} ({model.card_['algorithm']}): "
              f"p50 {p50:.3f} ms  p99 {p99:.3f} ms")  # fmt: skip

    undated = TrainingInput.from_frame(
        load_training_frame(DATA, load_mapping(MAPPING).model_copy(update={"row_order": None})),
        attributes,
    )
    print(f"\n{args.cv}-fold stratified CV on all {n} rows, undated "
          f"(`leadscore evaluate --cv {args.cv}`)")  # fmt: skip
    for label, sized in PIPELINES:
        started = time.perf_counter()
        result = cross_validate(
            undated,
            ModelConfig(num_threads=THREADS, seed=args.seed, search=sized, cross_fit=sized),
            attributes,
            args.cv,
        )
        report(label, result.metrics["conversion"], started)
    started = time.perf_counter()
    y = undated.outcomes.converted
    folds = stratified_folds(y, args.cv, args.seed)
    probs = np.full(len(y), np.nan)
    for fold in range(args.cv):
        held = np.flatnonzero(folds == fold)
        rest = np.flatnonzero(folds != fold)
        probs[held] = plain_lightgbm(undated.take(rest), undated.take(held), attributes, args.seed)
    report("plain LightGBM", {"auc": auc(y, probs), "brier": brier(y, probs)}, started)

    print("\nforward split in time: oldest 80 % -> newest 20 % (`leadscore evaluate --split time`)")
    older, newest = older_and_newest(data, 0.2)
    for label, sized in PIPELINES:
        started = time.perf_counter()
        model = train(
            older,
            ModelConfig(num_threads=THREADS, seed=args.seed, search=sized, cross_fit=sized),
            attributes,
        )
        report(label, evaluate_model(model, newest).metrics["conversion"], started)
    started = time.perf_counter()
    probs = plain_lightgbm(older, newest, attributes, args.seed)
    y = newest.outcomes.converted
    report("plain LightGBM", {"auc": auc(y, probs), "brier": brier(y, probs)}, started)


def report(label: str, m: dict[str, float], started: float) -> None:
    print(f"  {label:<20} AUC {m['auc']:.4f}  Brier {m['brier']:.4f}  "
          f"({time.perf_counter() - started:.0f} s)")  # fmt: skip


if __name__ == "__main__":
    main()
