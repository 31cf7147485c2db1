"""Our numpy metrics and isotonic calibrator agree with scikit-learn's on the same data."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from leadscore.engine import metrics


def _data(seed: int, n: int = 2_000, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    raw = rng.normal(size=n)
    if ties:  # coarse scores: many leads share one
        raw = np.round(raw, 1)
    labels = (rng.random(n) < 1 / (1 + np.exp(-2 * raw))).astype(np.float64)
    return raw, labels


@pytest.mark.parametrize(("seed", "ties"), [(1, False), (2, True), (3, True)])
def test_auc_matches_sklearn_with_and_without_ties(seed: int, ties: bool) -> None:
    raw, labels = _data(seed, ties=ties)
    assert metrics.auc(labels, raw) == pytest.approx(roc_auc_score(labels, raw), abs=1e-12)


def test_auc_of_one_class_is_undefined() -> None:
    assert np.isnan(metrics.auc(np.ones(5), np.arange(5.0)))


@pytest.mark.parametrize("seed", [4, 5])
def test_brier_and_log_loss_match_sklearn(seed: int) -> None:
    raw, labels = _data(seed)
    probs = 1 / (1 + np.exp(-raw))
    assert metrics.brier(labels, probs) == pytest.approx(brier_score_loss(labels, probs))
    assert metrics.log_loss(labels, probs) == pytest.approx(log_loss(labels, probs), rel=1e-9)


@pytest.mark.parametrize(("seed", "ties"), [(6, False), (7, True)])
def test_isotonic_blocks_are_sklearns_solution(seed: int, ties: bool) -> None:
    """Pool-adjacent-violators has one solution: our blocks' means are sklearn's fitted steps,
    and at the centre of each block our interpolated map returns that block's mean."""
    raw, labels = _data(seed, n=3_000, ties=ties)
    ours = metrics.IsotonicCalibrator.fit(raw, labels)
    reference = IsotonicRegression(increasing=True).fit(raw, labels)
    steps = np.unique(reference.predict(np.unique(raw)))
    np.testing.assert_allclose(np.asarray(ours.y_), steps, rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        ours.predict(np.asarray(ours.x_)), np.asarray(ours.y_), rtol=0, atol=1e-12
    )
    assert np.all(np.diff(ours.y_) > 0), "blocks must strictly increase"


def test_calibration_errors_are_zero_for_perfect_probabilities() -> None:
    labels = np.array([0.0, 1.0] * 50)
    assert metrics.ece(labels, labels) == 0.0
    assert metrics.brier(labels, labels) == 0.0
