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
    and at the centre of each block the unshrunk map returns that block's mean."""
    raw, labels = _data(seed, n=3_000, ties=ties)
    blocks = metrics.pav_blocks(raw, labels)
    reference = IsotonicRegression(increasing=True).fit(raw, labels)
    steps = np.unique(reference.predict(np.unique(raw)))
    np.testing.assert_allclose(blocks.means, steps, rtol=0, atol=1e-12)
    assert np.all(np.diff(blocks.means) > 0), "blocks must strictly increase"
    assert blocks.counts.sum() == len(raw)
    plain = metrics.IsotonicCalibrator.fit(raw, labels, prior_strength=0.0)
    np.testing.assert_allclose(plain.y_, steps, rtol=0, atol=1e-12)
    np.testing.assert_allclose(plain.predict(np.asarray(plain.x_)), steps, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("seed", "ties"), [(6, False), (7, True)])
def test_shrunk_map_stays_within_the_prior_weight_of_sklearns_steps(seed: int, ties: bool) -> None:
    """The served map is sklearn's step function moved by at most strength / (n + strength) per
    block of n leads: it differs only where the evidence is thin, and never reaches 0 or 1."""
    raw, labels = _data(seed, n=3_000, ties=ties)
    reference = IsotonicRegression(increasing=True).fit(raw, labels)
    blocks = metrics.pav_blocks(raw, labels)
    pooled, values = metrics.shrink(blocks)
    steps = reference.predict(pooled.centres)
    k = metrics.PRIOR_STRENGTH
    # Blocks shrinking had to re-pool span several of sklearn's steps: compare the others.
    spans = np.diff(np.searchsorted(np.cumsum(blocks.counts), np.cumsum(pooled.counts)), prepend=-1)
    alone = spans == 1
    assert alone.mean() > 0.5
    assert np.all(np.abs(values - steps)[alone] <= k / (pooled.counts[alone] + k) + 1e-12)
    assert reference.predict(raw).min() == 0.0
    assert reference.predict(raw).max() == 1.0
    assert values.min() > 0.0
    assert values.max() < 1.0


def test_calibration_errors_are_zero_for_perfect_probabilities() -> None:
    labels = np.array([0.0, 1.0] * 50)
    assert metrics.ece(labels, labels) == 0.0
    assert metrics.brier(labels, labels) == 0.0
