"""Settings sized to a team's data: a small time-ordered cross-validated search.

Between 500 and a few thousand labelled leads, one set of defaults does not fit every team:
a few hundred conversions want shallower trees and larger leaves, a team's many-valued CRM
fields may split better as a learned order than as LightGBM categories, and sometimes a
regularised logistic model beats trees outright. The search fits the conversion head of a
fixed list of candidates on expanding windows of the rows in time order (each window is
judged on the leads that came after it), picks the best mean AUC, and says why in the card.
The budget is fixed: at most `len(TREES) + 1 + len(LOGISTIC_L2)` candidates, `FOLDS` fits
each, on the newest `SEARCH_MAX_ROWS` rows. The same data and seed give the same choice.

Examples
--------
>>> from leadscore.engine.synthetic import generate
>>> from leadscore.engine.model import ModelConfig
>>> data = TrainingInput.from_frame(generate(2_000, seed=3), AttributeSpec())
>>> found = search(data, ModelConfig(num_threads=1), AttributeSpec(), "time-ordered")
>>> found.record["winner"] in [t["candidate"] for t in found.record["tried"]]
True
>>> found.config.search
False
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from leadscore.engine.attributes import AttributeSpec
from leadscore.engine.features import CONVERSION_DIRECTIONS
from leadscore.engine.metrics import auc, brier
from leadscore.engine.training import TrainingInput, expanding_windows, fit_head

if TYPE_CHECKING:
    from leadscore.engine.model import ModelConfig

FOLDS: Final = 3
#: Below this many rows a fold's validation holds too few conversions to rank settings by.
SEARCH_MIN_ROWS: Final = 500
SEARCH_MAX_ROWS: Final = 20_000
MIN_FOLD_POSITIVES: Final = 10
#: (leaves, minimum leaf size, learning rate); the service's defaults first, so a tie keeps them.
TREES: Final = (
    (8, 40, 0.12),
    (4, 20, 0.12),
    (4, 80, 0.06),
    (8, 20, 0.06),
    (8, 80, 0.12),
    (16, 40, 0.06),
    (16, 80, 0.12),
)
LOGISTIC_L2: Final = (1.0, 30.0)


@dataclass(frozen=True)
class SearchResult:
    """The winning settings (search off: they are final) and the card's record of the search."""

    config: ModelConfig
    record: dict[str, Any]


def _trees(base: ModelConfig, leaves: int, min_leaf: int, rate: float) -> ModelConfig:
    depth = max(2, math.ceil(math.log2(leaves)))
    return replace(
        base,
        algorithm="lightgbm",
        num_leaves=leaves,
        max_depth=depth,
        min_data_in_leaf=min_leaf,
        learning_rate=rate,
        search=False,
    )


def _name(config: ModelConfig) -> str:
    if config.algorithm == "logistic":
        return f"logistic l2={config.l2:g}"
    return (
        f"trees leaves={config.num_leaves} min_leaf={config.min_data_in_leaf} "
        f"lr={config.learning_rate:g} categorical={config.categorical}"
    )


def _score(
    config: ModelConfig, attributes: AttributeSpec, data: TrainingInput
) -> tuple[list[float], list[float]]:
    """AUC and Brier (of the uncalibrated probability) of the conversion head, per fold."""
    from leadscore.engine.model import LeadModel

    aucs: list[float] = []
    briers: list[float] = []
    for train_rows, valid_rows in expanding_windows(len(data.raw), FOLDS):
        train, valid = data.take(train_rows), data.take(valid_rows)
        y_valid = valid.outcomes.converted
        if min(np.sum(y_valid == 1), np.sum(y_valid == 0)) < MIN_FOLD_POSITIVES:
            continue
        model = LeadModel(config, attributes)
        categorical = model.learn_columns(train, config)
        directions = [CONVERSION_DIRECTIONS.get(n, 0) for n in model.model_features_]
        head = fit_head(
            model.design(train), train.outcomes.converted, categorical, config, directions
        )
        raw = np.asarray(head.predict(model.design(valid), raw_score=True), dtype=np.float64)
        aucs.append(auc(y_valid, raw))
        briers.append(brier(y_valid, 1.0 / (1.0 + np.exp(-np.clip(raw, -30.0, 30.0)))))
    return aucs, briers


def search(
    data: TrainingInput, base: ModelConfig, attributes: AttributeSpec, order: str
) -> SearchResult:
    """The candidate with the best mean time-ordered AUC; `data` in the order to replay
    (`order` says which: time, or a stratified shuffle when there are no dates)."""
    n = len(data.raw)
    start = replace(base, search=False)
    if n < SEARCH_MIN_ROWS:
        return SearchResult(
            start, {"skipped": f"{n} rows: fewer than {SEARCH_MIN_ROWS}, defaults kept"}
        )
    rows = data.take(np.arange(max(0, n - SEARCH_MAX_ROWS), n))
    tried: list[dict[str, Any]] = []
    folds: list[list[float]] = []

    def attempt(config: ModelConfig) -> None:
        aucs, briers = _score(config, attributes, rows)
        folds.append(aucs)
        tried.append(
            {
                "candidate": _name(config),
                "auc": round(float(np.mean(aucs)), 4) if aucs else None,
                "brier": round(float(np.mean(briers)), 4) if briers else None,
                "folds": len(aucs),
            }
        )

    configs = [_trees(start, *t) for t in TREES]
    for config in configs:
        attempt(config)
    if attributes.categorical:
        top = configs[_leader(folds)]
        configs.append(replace(top, categorical="ordered"))
        attempt(configs[-1])
    for l2 in LOGISTIC_L2:
        configs.append(replace(start, algorithm="logistic", l2=l2, search=False))
        attempt(configs[-1])
    if not folds[0]:
        return SearchResult(
            start,
            {"skipped": "no fold had enough conversions to compare settings", "tried": tried},
        )
    chosen, why = choose(folds, [_name(c) for c in configs], order)
    winner = configs[chosen]
    return SearchResult(
        winner,
        {
            "order": order,
            "rows": len(rows.raw),
            "folds": FOLDS,
            "tried": tried,
            "winner": _name(winner),
            "why": why,
        },
    )


def choose(folds: list[list[float]], names: list[str], order: str) -> tuple[int, str]:
    """Which candidate wins (the first is the defaults) and why, from each one's fold AUCs.

    Ten candidates on a few folds: the best of them beats the defaults by luck alone, so it
    must do so by more than its folds' spread (one standard error of the paired gain).
    """
    leader = _leader(folds)
    gain = np.asarray(folds[leader]) - np.asarray(folds[0])
    margin = float(gain.std(ddof=1) / math.sqrt(len(gain))) if len(gain) > 1 else 0.0
    defaults = float(np.mean(folds[0]))
    best = float(np.mean(folds[leader]))
    if leader and len(gain) > 1 and gain.mean() > margin:
        return leader, (
            f"best mean AUC over {len(gain)} {order} folds: {best:.4f} against the "
            f"defaults' {defaults:.4f}, ahead on average by {gain.mean():.4f} "
            f"(more than its standard error, {margin:.4f})"
        )
    other = 1 + _leader(folds[1:]) if len(folds) > 1 else 0
    gain = np.asarray(folds[other]) - np.asarray(folds[0])
    margin = float(gain.std(ddof=1) / math.sqrt(len(gain))) if len(gain) > 1 else 0.0
    return 0, (
        f"defaults kept: mean AUC {defaults:.4f} over {len(gain)} {order} folds; the best "
        f"other candidate ({names[other]}, {float(np.mean(folds[other])):.4f}) is not ahead "
        f"by more than its standard error ({margin:.4f})"
    )


def _leader(folds: list[list[float]]) -> int:
    """The candidate with the best mean AUC over the defaults' folds; the first of equals."""
    width = len(folds[0])
    means = [float(np.mean(f)) if len(f) == width and width else -math.inf for f in folds]
    return int(np.argmax(means))
