"""Whole-file workflows the CLI calls: train, cross-validate, evaluate, score in chunks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import polars as pl

from leadscore.engine.attributes import AttributeSpec
from leadscore.engine.features import transform
from leadscore.engine.io import FrameWriter, iter_chunks, scan_frame
from leadscore.engine.metrics import reliability, summary
from leadscore.engine.model import HEADS, LeadModel, ModelConfig, train
from leadscore.engine.raw import FloatArray
from leadscore.engine.scorer import Scorer
from leadscore.engine.training import TrainingInput, fold_numbers


@dataclass(frozen=True)
class Evaluation:
    """Metrics per head plus the labels and probabilities behind them (for plots)."""

    metrics: dict[str, dict[str, float]]
    labels: dict[str, FloatArray]
    probs: dict[str, FloatArray]


def _head_probs(model: LeadModel, data: TrainingInput) -> dict[str, FloatArray]:
    """Every head's probability on the rows, as the model would report it."""
    features = transform(data.raw, model.encoding_)
    attrs = model.attributes_.encode(data.attribute_values, len(data.raw))
    x = model.matrix(features, attrs)
    return {head: model.predict_head(head, x).prob for head in model.boosters_}


def _evaluation(labels: dict[str, FloatArray], probs: dict[str, FloatArray]) -> Evaluation:
    metrics = {}
    for head in probs:
        known = ~np.isnan(labels[head])
        y, p = labels[head][known], probs[head][known]
        if len(np.unique(y)) == 2:
            metrics[head] = summary(y, p)
    return Evaluation(metrics, labels, probs)


def evaluate_model(model: LeadModel, data: TrainingInput) -> Evaluation:
    """An existing model's metrics on labelled data it may never have seen."""
    probs = _head_probs(model, data)
    return _evaluation({h: data.outcomes.labels(h) for h in probs}, probs)


def stratified_folds(
    labels: FloatArray, k: int, seed: int
) -> np.ndarray[tuple[int], np.dtype[np.int64]]:
    """Fold number per row, each fold keeping the overall conversion rate."""
    return fold_numbers(labels, k, seed)


def cross_validate(
    data: TrainingInput, config: ModelConfig, attributes: AttributeSpec, k: int
) -> Evaluation:
    """K-fold CV of the whole pipeline: encodings, trees and calibration refitted per fold."""
    if k < 2:
        raise ValueError("cross-validation needs at least 2 folds")
    folds = stratified_folds(data.outcomes.converted, k, config.seed)
    fold_config = replace(config, test_share=0.0)
    n = len(data.raw)
    probs = {head: np.full(n, np.nan) for head in HEADS}
    for fold in range(k):
        held = np.flatnonzero(folds == fold)
        model = train(data.take(np.flatnonzero(folds != fold)), fold_config, attributes)
        for head, p in _head_probs(model, data.take(held)).items():
            probs[head][held] = p
    present = {h: p for h, p in probs.items() if not np.isnan(p).all()}
    return _evaluation({h: data.outcomes.labels(h) for h in present}, present)


def calibration_plot(evaluation: Evaluation, path: Path) -> None:
    """A reliability diagram per head, written as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heads = list(evaluation.metrics)
    fig, axes = plt.subplots(1, len(heads), figsize=(4.5 * len(heads), 4.5), squeeze=False)
    for ax, head in zip(axes[0], heads, strict=True):
        known = ~np.isnan(evaluation.labels[head])
        bins = reliability(evaluation.labels[head][known], evaluation.probs[head][known])
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect")
        ax.plot(
            [b["predicted"] for b in bins], [b["observed"] for b in bins], marker="o", label=head
        )
        m = evaluation.metrics[head]
        ax.set_title(f"{head}: AUC {m['auc']:.3f}, ECE {m['ece']:.3f}")
        ax.set_xlabel("predicted probability")
        ax.set_ylabel("observed rate")
        ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def count_rows(path: Path) -> int:
    """Rows in a lead file, for the progress bar."""
    return int(scan_frame(path).select(pl.len()).collect().item())


def score_file(
    source: Path,
    target: Path,
    scorer: Scorer,
    *,
    explain: bool = False,
    chunk_size: int = 50_000,
    progress: Callable[[int], None] = lambda _n: None,
) -> int:
    """Stream a lead file through the scorer chunk by chunk; returns the rows scored."""
    total = 0
    with FrameWriter(target) as writer:
        for chunk in iter_chunks(source, chunk_size):
            writer.write(scorer.score_frame(chunk, explain=explain))
            total += chunk.height
            progress(chunk.height)
    return total
