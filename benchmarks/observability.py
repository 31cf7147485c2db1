"""Unknown is not "no": the built-in model on the contract's example lead, an empty lead, pairs
of leads that differ in one fact, and held-out quality against the generator's oracle.

Run: `uv run python benchmarks/observability.py`. Builds the default model exactly as the
service does (`build_default_model`, ~30-60 s on 2 cores) and scores 40,000 fresh generated
leads (seed 12) plus the demo population (`leadscore demo`'s leads, scored now).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

from leadscore.engine.defaults import build_default_model
from leadscore.engine.io import leads_to_frame
from leadscore.engine.metrics import auc, ece
from leadscore.engine.schema import Lead
from leadscore.engine.scorer import Scorer
from leadscore.engine.synthetic import generate, oracle_inputs_from_frame, oracle_probabilities
from leadscore.scoring.schemas import EXAMPLE_LEAD


def example_lead(now: datetime, **changes: Any) -> Lead:
    """The PRODUCT.md example lead arriving now: its one e-mail reply came an hour ago."""
    body = copy.deepcopy(EXAMPLE_LEAD)
    data = body["lead_data"]
    data["created_at"] = (now - timedelta(hours=2)).isoformat()
    data["interaction_history"][0]["timestamp"] = (now - timedelta(hours=1)).isoformat()
    data.update(changes)
    return Lead(lead_id=body["lead_id"], lead_data=data)


def main() -> None:
    model = build_default_model()
    scorer = Scorer(model)
    holdout = generate(40_000, seed=12)
    scored = scorer.score_frame(holdout)
    y = holdout["converted"].cast(pl.Float64).to_numpy()
    p = scored["p_conversion"].to_numpy()
    oracle = holdout["p_conversion"].to_numpy()
    score = scored["ml_score"].to_numpy()
    print(f"held-out conversion AUC: model {auc(y, p):.4f}, oracle {auc(y, oracle):.4f}")
    print(f"held-out ECE {ece(y, score / 100):.4f} (oracle {ece(y, oracle):.4f})")
    base_rate = float(y.mean())
    median = float(np.median(score))
    print(f"base rate {100 * base_rate:.2f}, median held-out lead {median:.2f}")

    now = datetime.now(UTC)
    demo = generate(300, seed=7, start=now - timedelta(days=30), days=30).drop("as_of")
    demo_scores = scorer.score_frame(demo.with_columns(as_of=pl.lit(now)))["ml_score"].to_numpy()
    print(f"median demo lead (scored now) {float(np.median(demo_scores)):.2f}")

    print(f"{'lead':<40}  model oracle class conf   top reasons")

    def show(label: str, lead: Lead) -> float:
        result = scorer.score(lead, as_of=now)
        frame = leads_to_frame([lead]).with_columns(as_of=pl.lit(now).dt.cast_time_unit("us"))
        truth = 100 * oracle_probabilities(oracle_inputs_from_frame(frame)).conversion[0]
        top = "; ".join(f"{r.text} ({r.points:+.1f})" for r in result.reasons[:3])
        print(
            f"{label:<40} {result.ml_score:6.2f} {truth:6.2f} {result.classification:<5} "
            f"{result.ml_confidence:.3f}  {top}"
        )
        return result.ml_score

    example = show("PRODUCT.md example lead, now", example_lead(now))
    unapproved = show("  ... not pre-approved", example_lead(now, pre_approved=False))
    show("  ... pre-approval unknown", example_lead(now, pre_approved=None))
    show("  ... with web activity, all zero", example_lead(
        now,
        source="website",
        web_activity={"properties_viewed": 0, "repeat_listing_views": 0, "saved_searches": 0,
                      "favorites": 0},
    ))  # fmt: skip
    show("  ... website, web activity not tracked", example_lead(now, source="website"))
    empty = show("empty lead", Lead(lead_id="empty", lead_data={}))
    print(
        f"example {example:.2f} > median {median:.2f}: {example > median}; "
        f"> not pre-approved {unapproved:.2f}: {example > unapproved}; "
        f"empty {empty:.2f} vs base rate {100 * base_rate:.2f}"
    )


if __name__ == "__main__":
    main()
