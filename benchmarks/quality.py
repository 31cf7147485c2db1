"""Model quality: held-out generated leads vs the oracle, and the confidence guarantee.

Run: `uv run python benchmarks/quality.py`. Trains the default configuration on 60,000
generated leads (seed 11) and scores 40,000 fresh ones (seed 12), as the test suite does.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np
import polars as pl

from leadscore.engine.attributes import AttributeSpec
from leadscore.engine.metrics import auc, brier, ece
from leadscore.engine.model import ModelConfig, train
from leadscore.engine.scorer import Scorer
from leadscore.engine.synthetic import generate
from leadscore.engine.training import TrainingInput


def main() -> None:
    model = train(
        TrainingInput.from_frame(generate(60_000, seed=11), AttributeSpec()), ModelConfig(seed=11)
    )
    test = generate(40_000, seed=12)
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
    print("classes:", dict(counts.iter_rows()), f"escalated {(conf < 0.85).mean():.1%}")


if __name__ == "__main__":
    main()
