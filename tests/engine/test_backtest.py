"""The backtest replays history as the service would have: no peeking, the service's policies."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from leadscore.engine import policy
from leadscore.engine.attributes import AttributeSpec
from leadscore.engine.backtest import BacktestConfig, backtest, in_time_order
from leadscore.engine.errors import InvalidInputError
from leadscore.engine.model import ModelConfig
from leadscore.engine.synthetic import generate
from leadscore.engine.training import TrainingInput
from leadscore.models import training

ROWS = 6000
WINDOW = 600
CONFIG = ModelConfig(num_threads=1, seed=0)


def shifted(rows: int = ROWS, seed: int = 3) -> pl.DataFrame:
    """Generated leads in time order whose base rate jumps halfway: from the middle on, a
    quarter of the leads convert whatever their data says (the ranking stays, the level
    moves)."""
    frame = generate(rows, seed=seed).sort("created_at")
    rng = np.random.default_rng(seed)
    later = np.arange(rows) >= rows // 2
    extra = later & (rng.random(rows) < 0.25)
    return frame.with_columns(pl.Series("converted", frame["converted"].to_numpy() | extra))


@pytest.fixture(scope="module")
def result() -> dict[str, object]:
    data = TrainingInput.from_frame(shifted(), AttributeSpec())
    return backtest(data, AttributeSpec(), BacktestConfig.sized(ROWS, WINDOW, CONFIG, WINDOW))


def test_recalibration_recovers_a_base_rate_shift_that_the_static_model_misses(
    result: dict[str, object],
) -> None:
    policies = result["policies"]
    assert isinstance(policies, dict)
    last = {name: policies[name]["last_fifth"] for name in policies}
    assert last["recalibrate"]["brier"] < last["static"]["brier"] - 0.01
    assert last["recalibrate"]["brier"] < last["prior"]["brier"]
    # The static model still orders leads better than chance: its level is what is off.
    assert last["static"]["auc"] > 0.55
    assert any(u["promoted"] for u in policies["recalibrate"]["updates"])
    assert policies["static"]["updates"] == []


def test_retraining_goes_through_the_gate_after_every_window(result: dict[str, object]) -> None:
    policies = result["policies"]
    assert isinstance(policies, dict)
    updates = policies["retrain"]["updates"]
    assert [u["rows_seen"] for u in updates] == [WINDOW * k for k in range(2, 10)]
    assert all(u["reason"] for u in updates)
    if not any(u["promoted"] for u in updates):  # the champion kept: the static model's scores
        assert policies["retrain"]["windows"] == policies["static"]["windows"]
    else:
        assert policies["retrain"]["windows"] != policies["static"]["windows"]


def test_every_window_is_scored_and_the_prior_uses_only_the_past(
    result: dict[str, object],
) -> None:
    assert result["start"] == WINDOW
    assert result["windows"] == (ROWS - WINDOW) // WINDOW
    policies = result["policies"]
    assert isinstance(policies, dict)
    for name in ("static", "recalibrate", "retrain", "prior"):
        windows = policies[name]["windows"]
        assert [w["n"] for w in windows] == [WINDOW] * len(windows)
        assert policies[name]["overall"]["n"] == ROWS - WINDOW
    frame = shifted()
    labels = frame["converted"].to_numpy().astype(float)
    second = policies["prior"]["windows"][1]  # scored with the first two windows' rate
    assert second["positive_rate"] == pytest.approx(labels[2 * WINDOW : 3 * WINDOW].mean())


def test_a_window_is_scored_before_its_outcomes_are_known() -> None:
    rows, window = 2400, 600
    frame = shifted(rows)
    flipped = frame.with_columns(
        pl.when(pl.int_range(pl.len()) >= rows - window)
        .then(~pl.col("converted"))
        .otherwise(pl.col("converted"))
        .alias("converted")
    )
    config = BacktestConfig.sized(rows, window, CONFIG, window)
    runs = [
        backtest(TrainingInput.from_frame(f, AttributeSpec()), AttributeSpec(), config)
        for f in (frame, flipped)
    ]
    # The last window's outcomes differ, so its metrics do; the predictions made for it
    # (before they were revealed) do not: same AUC on the flipped labels means same scores.
    for name in ("static", "recalibrate", "retrain"):
        before = runs[0]["policies"][name]["windows"][-1]
        after = runs[1]["policies"][name]["windows"][-1]
        assert before["positive_rate"] + after["positive_rate"] == pytest.approx(1.0)
        assert before["auc"] == pytest.approx(1 - after["auc"])
        earlier = runs[0]["policies"][name]["windows"][:-1]
        assert earlier == runs[1]["policies"][name]["windows"][:-1]


def test_the_service_and_the_backtest_run_one_implementation_of_each_policy() -> None:
    assert training.retrained is policy.retrained
    assert training.recalibrated is policy.recalibrated


def test_rows_without_times_keep_the_file_order_and_partial_times_are_refused() -> None:
    data = TrainingInput.from_frame(generate(300, seed=1), AttributeSpec())
    untimed = in_time_order(
        TrainingInput(data.raw, data.attribute_values, data.outcomes, np.full(300, np.nan))
    )
    assert list(untimed.created_us) == list(range(300))
    gaps = data.created_us.copy()
    gaps[7] = np.nan
    with pytest.raises(InvalidInputError, match="1 rows have no time"):
        in_time_order(TrainingInput(data.raw, data.attribute_values, data.outcomes, gaps))
    with pytest.raises(InvalidInputError, match="leaves nothing to score"):
        BacktestConfig.sized(300, 300, CONFIG)
    defaults = BacktestConfig.sized(41_188, None, CONFIG)
    assert (defaults.window, defaults.start) == (1000, 8238)  # a fifth first, then 1,000 a window
    small = BacktestConfig.sized(3_000, None, CONFIG)
    assert (small.window, small.start) == (300, 600)
