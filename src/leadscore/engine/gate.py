"""The promotion gate: a challenger replaces the champion only if it is not worse, measured on
the newest leads with a paired bootstrap, so a lucky hold-out cannot promote a worse model;
and recalibration, the cheapest challenger when only base rates moved."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from leadscore.engine.features import transform
from leadscore.engine.metrics import IsotonicCalibrator, auc, brier
from leadscore.engine.model import LeadModel
from leadscore.engine.pipeline import evaluate_model
from leadscore.engine.raw import FloatArray
from leadscore.engine.training import TrainingInput


@dataclass(frozen=True)
class GateConfig:
    """How much worse a challenger may look before it is refused, and how sure we must be."""

    margin_auc: float = 0.01  # the challenger's AUC may be at most this much lower ...
    margin_brier: float = 0.005  # ... and its Brier score at most this much higher
    resamples: int = 400
    confidence: float = 0.95
    holdout_share: float = 0.2  # the newest leads, never seen by either model's training
    seed: int = 0


def time_holdout(data: TrainingInput, share: float) -> TrainingInput:
    """The newest `share` of the rows (by creation time): the future the models must predict."""
    order = np.argsort(data.created_us, kind="stable")
    keep = max(1, round(len(order) * share))
    return data.take(order[-keep:])


def paired_comparison(
    y: FloatArray, p_new: FloatArray, p_old: FloatArray, config: GateConfig = GateConfig()
) -> dict[str, Any]:
    """Two versions' probabilities on the same labelled leads: bootstrap confidence intervals
    of the differences (new − old), and whether the new one is not worse within the margins."""
    n = len(y)
    positives = int(y.sum())
    if n < 50 or positives < 5 or positives > n - 5:
        return {
            "passed": False,
            "reason": f"too few labelled leads to compare ({n}, {positives} converted)",
            "n": n,
            "config": asdict(config),
        }
    rng = np.random.default_rng(config.seed)
    auc_diff = np.empty(config.resamples)
    brier_diff = np.empty(config.resamples)
    sq_new, sq_old = (p_new - y) ** 2, (p_old - y) ** 2
    for b in range(config.resamples):
        rows = rng.integers(0, n, n)
        yb = y[rows]
        auc_diff[b] = auc(yb, p_new[rows]) - auc(yb, p_old[rows])
        brier_diff[b] = sq_new[rows].mean() - sq_old[rows].mean()
    tail = (1 - config.confidence) / 2 * 100
    auc_low, auc_high = np.nanpercentile(auc_diff, [tail, 100 - tail])
    brier_low, brier_high = np.nanpercentile(brier_diff, [tail, 100 - tail])
    auc_ok = auc_low >= -config.margin_auc
    brier_ok = brier_high <= config.margin_brier
    reasons = []
    if not auc_ok:
        reasons.append(f"AUC may be lower by {-auc_low:.4f} > margin {config.margin_auc}")
    if not brier_ok:
        reasons.append(f"Brier may be higher by {brier_high:.4f} > margin {config.margin_brier}")
    return {
        "passed": bool(auc_ok and brier_ok),
        "reason": "; ".join(reasons) or "not worse than the champion within the margins",
        "n": n,
        "converted": positives,
        "challenger": {"auc": auc(y, p_new), "brier": brier(y, p_new)},
        "champion": {"auc": auc(y, p_old), "brier": brier(y, p_old)},
        "auc_difference_ci": [float(auc_low), float(auc_high)],
        "brier_difference_ci": [float(brier_low), float(brier_high)],
        "config": asdict(config),
    }


def promotion_gate(
    challenger: LeadModel,
    champion: LeadModel,
    holdout: TrainingInput,
    config: GateConfig = GateConfig(),
) -> dict[str, Any]:
    """Compare both models' conversion probabilities on the same leads; the report says why."""
    new = evaluate_model(challenger, holdout)
    old = evaluate_model(champion, holdout)
    labels = new.labels["conversion"]
    known = ~np.isnan(labels)
    return paired_comparison(
        labels[known], new.probs["conversion"][known], old.probs["conversion"][known], config
    )


def recalibrate(model: LeadModel, data: TrainingInput) -> LeadModel:
    """The same trees with each head's calibration refitted on recent outcomes.

    When base rates shift (a slower market, a new lead source) the ranking can stay right while
    the probabilities drift; refitting only the isotonic maps fixes them in seconds. Heads
    without both outcomes among the rows keep their calibration.
    """
    features = transform(data.raw, model.encoding_)
    attrs = model.attributes_.encode(data.attribute_values, len(data.raw))
    x = model.matrix(features, attrs)
    calibrators = dict(model.calibrators_)
    refitted = []
    for head, booster in model.boosters_.items():
        y = data.outcomes.labels(head)
        known = ~np.isnan(y)
        if known.sum() < 2 or len(np.unique(y[known])) < 2:
            continue
        raw = np.asarray(booster.predict(x[known], raw_score=True), dtype=np.float64)
        calibrators[head] = IsotonicCalibrator.fit(raw, y[known])
        refitted.append(head)
    card = copy.deepcopy(model.card_)
    card["recalibrated"] = {
        "from_version": model.version_,
        "heads": refitted,
        "rows": len(data.raw),
        "at": datetime.now(UTC).isoformat(),
    }
    return model.with_calibration(calibrators, card)
