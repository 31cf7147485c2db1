"""Model quality: held-out generated leads vs the oracle, and the confidence guarantee.

Run: `uv run python benchmarks/quality.py`. Trains the default configuration on 60,000
generated leads (seed 11) and scores 40,000 fresh ones (seed 12), as the test suite does.
Prints AUC vs the oracle, ECE, the confidence-guarantee table and the extreme scores, for
the trained model and for the same trees with each head's calibration refitted on the same
calibration rows at other prior strengths (0 = plain PAV, the calibration before the Beta
shrinkage): before and after in one run.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np
import polars as pl

from leadscore.engine.attributes import AttributeSpec
from leadscore.engine.columnar import raw_from_frame
from leadscore.engine.features import transform
from leadscore.engine.metrics import PRIOR_STRENGTH, IsotonicCalibrator, auc, brier, ece
from leadscore.engine.model import LeadModel, ModelConfig, train
from leadscore.engine.raw import FloatArray
from leadscore.engine.scorer import Scorer
from leadscore.engine.synthetic import generate
from leadscore.engine.training import TrainingInput, split_rows


def report(title: str, model: LeadModel, test: pl.DataFrame) -> None:
    """One model's held-out figures, printed."""
    print(f"== {title}")
    scored = Scorer(model).score_frame(test)
    y = test["converted"].cast(pl.Float64).to_numpy()
    p = scored["p_conversion"].to_numpy()
    oracle = test["p_conversion"].to_numpy()
    print(f"conversion AUC: model {auc(y, p):.4f}, oracle {auc(y, oracle):.4f}")
    print(
        f"conversion ECE {ece(y, p):.4f}, Brier {brier(y, p):.4f} (oracle {brier(y, oracle):.4f})"
    )
    conf = scored["ml_confidence"].to_numpy()
    hot = (scored["classification"] == "hot").to_numpy()
    right = np.where(hot, y == 1, y == 0)
    for c in (0.7, 0.85, 0.95):
        mask = conf >= c
        truth = np.where(hot[mask], oracle[mask], 1 - oracle[mask]).mean()
        print(
            f"confidence ≥ {c:.2f}: {mask.sum():>6} leads, claim right {right[mask].mean():.3f} "
            f"(expected from oracle {truth:.3f})"
        )
    counts = scored["classification"].value_counts().sort("classification")
    print("classes:", dict(counts.iter_rows()))
    low = conf < model.card_.get("thresholds", {}).get("escalation_confidence", 0.85)
    thin = scored["evidence"].to_numpy() < 0.4
    print(
        f"sent to qualification {(low | thin).mean():.1%}: low_confidence only "
        f"{(low & ~thin).mean():.1%}, thin_data only {(thin & ~low).mean():.1%}, both "
        f"{(low & thin).mean():.1%}; evidence p10/p50/p90 "
        + "/".join(f"{q:.2f}" for q in np.quantile(scored["evidence"].to_numpy(), [0.1, 0.5, 0.9]))
    )
    score = scored["ml_score"].to_numpy()
    print(
        f"ml_score min {score.min():.2f}, max {score.max():.2f}; "
        f"{int((score == 0.0).sum())} leads at 0.0, {int((score == 100.0).sum())} at 100.0"
    )
    for head in ("conversion", "closing", "timeline"):
        probs = model.predict_head(head, _matrix(model, test)).prob
        print(f"  {head:<10} calibrated p in [{probs.min():.6f}, {probs.max():.6f}]")


def _matrix(model: LeadModel, frame: pl.DataFrame) -> FloatArray:
    """The model's input matrix for a generated frame."""
    return model.matrix(transform(raw_from_frame(frame), model.encoding_), None)


def recalibrated(model: LeadModel, data: TrainingInput, strength: float) -> LeadModel:
    """The same trees, each head's map refitted on the rows `fit` calibrated on, at `strength`."""
    split = split_rows(data.created_us, data.outcomes.converted, model.config)
    part = data.take(split.calibration)
    x = model.matrix(
        transform(part.raw, model.encoding_),
        model.attributes_.encode(part.attribute_values, len(part.raw)),
    )
    calibrators = {}
    for head, booster in model.boosters_.items():
        y = part.outcomes.labels(head)
        known = ~np.isnan(y)
        raw = np.asarray(booster.predict(x[known], raw_score=True), dtype=np.float64)
        calibrators[head] = IsotonicCalibrator.fit(raw, y[known], prior_strength=strength)
    return model.with_calibration(calibrators, model.card_)


def main() -> None:
    data = TrainingInput.from_frame(generate(60_000, seed=11), AttributeSpec())
    model = train(data, ModelConfig(seed=11))
    test = generate(40_000, seed=12)
    # The refit at the default strength must be the model's own maps: same rows, same fit.
    assert recalibrated(model, data, PRIOR_STRENGTH).calibrators_ == model.calibrators_
    report("plain PAV (prior strength 0: before)", recalibrated(model, data, 0.0), test)
    report(f"default model (prior strength {PRIOR_STRENGTH:g}: after)", model, test)
    report("prior strength 2", recalibrated(model, data, 2.0), test)


if __name__ == "__main__":
    main()
