"""Replay a labelled history in time order the way the service would have run on it.

The first leads train the first model; then, window by window, the next leads are scored by
the model of the moment, their outcomes are revealed, and the policy runs as the service runs
it (`engine.policy`: recalibration or retraining, each gated against the champion). Metrics
are prequential: every prediction was made before its outcome was known. Beside them, the
base-rate prior, computed from the past only, is the bar a model must clear to be worth using.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np

from leadscore.engine.attributes import AttributeSpec
from leadscore.engine.errors import InvalidInputError
from leadscore.engine.gate import GateConfig
from leadscore.engine.metrics import brier, ece, log_loss, summary
from leadscore.engine.model import LeadModel, ModelConfig, train
from leadscore.engine.pipeline import evaluate_model
from leadscore.engine.policy import passed, recalibrated, retrained
from leadscore.engine.raw import FloatArray
from leadscore.engine.training import TrainingInput

Policy = Literal["static", "recalibrate", "retrain"]
POLICIES: Final[tuple[Policy, ...]] = ("static", "recalibrate", "retrain")
#: The share of the scored rows at the end reported on its own: where drift has gone furthest.
LAST_SHARE: Final = 0.2
DEFAULT_WINDOWS: Final = 10
MAX_DEFAULT_WINDOW: Final = 1000
#: The share of the history the first model learns from, unless told.
FIRST_SHARE: Final = 0.2


@dataclass(frozen=True)
class BacktestConfig:
    """How to cut the history: leads per window, and how many train the first model."""

    window: int
    start: int
    model: ModelConfig = field(default_factory=ModelConfig)
    gate: GateConfig = field(default_factory=GateConfig)

    @classmethod
    def sized(
        cls, rows: int, window: int | None, model: ModelConfig, start: int | None = None
    ) -> BacktestConfig:
        """A window of `window` leads (default: a tenth of the rows, at most 1,000: about as
        often as a service recalibrates) after the first `start` (default: a fifth of the
        rows, at least one window), which train the first model."""
        size = window or max(1, min(MAX_DEFAULT_WINDOW, rows // DEFAULT_WINDOWS))
        first = start or max(size, round(rows * FIRST_SHARE))
        if first + 1 > rows:
            raise InvalidInputError(
                f"training on the first {first} leads leaves nothing to score in {rows} rows"
            )
        return cls(window=size, start=first, model=model, gate=GateConfig(seed=model.seed))


@dataclass
class PolicyRun:
    """One policy's predictions over the scored rows and when its model changed."""

    probs: FloatArray
    updates: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def in_time_order(data: TrainingInput) -> TrainingInput:
    """The rows in creation order; rows without a time keep the file's order (a row's
    position stands for its time, so the gate's newest leads are the file's last ones)."""
    if np.isnan(data.created_us).all():
        return replace(data, created_us=np.arange(len(data.created_us), dtype=np.float64))
    if np.isnan(data.created_us).any():
        missing = int(np.isnan(data.created_us).sum())
        raise InvalidInputError(f"{missing} rows have no time to order them by")
    return data.take(np.argsort(data.created_us, kind="stable"))


def _windows(rows: int, config: BacktestConfig) -> list[tuple[int, int]]:
    edges = [*range(config.start, rows, config.window), rows]
    return list(itertools.pairwise(edges))


def _conversion(model: LeadModel, data: TrainingInput) -> FloatArray:
    return evaluate_model(model, data).probs["conversion"]


def replay(
    data: TrainingInput,
    policy: Policy,
    first: LeadModel,
    config: BacktestConfig,
    attributes: AttributeSpec,
) -> PolicyRun:
    """Score each window with the model of the moment, then let the policy update it."""
    started = time.perf_counter()
    rows = len(data.created_us)
    run = PolicyRun(np.full(rows, np.nan))
    current = first
    for number, (low, high) in enumerate(_windows(rows, config)):
        run.probs[low:high] = _conversion(current, data.take(np.arange(low, high)))
        if policy == "static" or high == rows:
            continue
        seen = data.take(np.arange(high))
        about = f"backtest: leads 1–{high}"
        if policy == "recalibrate":
            challenger = recalibrated(seen, current, config.gate)
        else:
            challenger = retrained(seen, config.model, config.gate, current, about, attributes)
        gate = challenger.card_["gate"]
        run.updates.append({"after_window": number + 1, "rows_seen": high,
                            "promoted": passed(challenger), "reason": gate["reason"]})  # fmt: skip
        if passed(challenger):
            current = challenger
    run.seconds = time.perf_counter() - started
    return run


def past_prior(labels: FloatArray, config: BacktestConfig) -> FloatArray:
    """Each window's base rate as known before it: the mean outcome of every earlier lead."""
    prior = np.full(len(labels), np.nan)
    for low, high in _windows(len(labels), config):
        prior[low:high] = float(labels[:low].mean())
    return prior


def _metrics(labels: FloatArray, probs: FloatArray) -> dict[str, float]:
    """Every metric that the rows allow (AUC needs both outcomes)."""
    if len(np.unique(labels)) == 2:
        return summary(labels, probs)
    return {"brier": brier(labels, probs), "log_loss": log_loss(labels, probs),
            "ece": ece(labels, probs), "n": float(len(labels)),
            "positive_rate": float(np.mean(labels))}  # fmt: skip


def report(
    labels: FloatArray, runs: dict[str, FloatArray], config: BacktestConfig
) -> dict[str, Any]:
    """Overall, last-fifth and per-window metrics of each series of predictions."""
    rows = len(labels)
    windows = _windows(rows, config)
    scored = np.arange(config.start, rows)
    last = scored[len(scored) - max(1, round(len(scored) * LAST_SHARE)) :]
    out: dict[str, Any] = {}
    for name, probs in runs.items():
        out[name] = {
            "overall": _metrics(labels[scored], probs[scored]),
            "last_fifth": _metrics(labels[last], probs[last]),
            "windows": [_metrics(labels[low:high], probs[low:high]) for low, high in windows],
        }
    return out


def backtest(
    data: TrainingInput,
    attributes: AttributeSpec,
    config: BacktestConfig,
    policies: tuple[Policy, ...] = POLICIES,
) -> dict[str, Any]:
    """Train on the start, replay every policy, and report them next to the past's prior."""
    data = in_time_order(data)
    labels = data.outcomes.converted
    rows = len(labels)
    started = time.perf_counter()
    first = train(data.take(np.arange(config.start)), config.model, attributes,
                  data_description=f"backtest: leads 1–{config.start}")  # fmt: skip
    trained_in = time.perf_counter() - started
    runs = {policy: replay(data, policy, first, config, attributes) for policy in policies}
    series: dict[str, FloatArray] = {name: run.probs for name, run in runs.items()}
    series["prior"] = past_prior(labels, config)
    metrics = report(labels, series, config)
    for name, run in runs.items():
        metrics[name] |= {"updates": run.updates, "seconds": round(run.seconds, 2)}
    return {
        "rows": rows,
        "start": config.start,
        "window": config.window,
        "windows": len(_windows(rows, config)),
        "first_model_seconds": round(trained_in, 2),
        "base_rate": {
            "training": float(labels[: config.start].mean()),
            "scored": float(labels[config.start :].mean()),
        },
        "policies": metrics,
    }


def plot(result: dict[str, Any], path: Path) -> None:
    """Brier score and base rate per window, one line per policy and the prior, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True)
    for name, series in result["policies"].items():
        values = [w["brier"] for w in series["windows"]]
        style = "--" if name == "prior" else "-"
        top.plot(range(1, len(values) + 1), values, style, marker="o", label=name)
    top.set_ylabel("Brier score (lower is better)")
    top.set_title(f"Backtest: {result['rows']:,} leads, windows of {result['window']:,}")
    top.legend()
    prior = result["policies"]["prior"]["windows"]
    rates = [w["positive_rate"] for w in prior]
    bottom.bar(range(1, len(rates) + 1), rates, color="#8aa")
    bottom.set_ylabel("converted (share of the window)")
    bottom.set_xlabel("window")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
