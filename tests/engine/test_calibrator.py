"""The calibrator claims no certainty its evidence cannot back: shrunk blocks, still monotone."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadscore.engine.metrics import (
    PRIOR_STRENGTH,
    SCORE_RESOLUTION,
    IsotonicCalibrator,
    pav_blocks,
    shrink,
)

K = PRIOR_STRENGTH

# Margins from a small grid (many ties, as coarse trees give) or anywhere in a wide range.
_margin = st.one_of(
    st.sampled_from([-3.0, -1.0, -0.5, 0.0, 0.25, 1.0, 4.0]),
    st.floats(min_value=-8, max_value=8, allow_nan=False, allow_subnormal=False),
)
_noise = st.lists(st.tuples(_margin, st.sampled_from([0.0, 1.0])), min_size=1, max_size=60).map(
    lambda rows: (np.array([r for r, _ in rows]), np.array([y for _, y in rows]))
)


@st.composite
def _informative(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """Labels that mostly follow the margin, as a useful model's do: long pure runs, and a few
    exceptions near the ends (where a thin block can follow a well-filled one)."""
    n = draw(st.integers(min_value=2, max_value=60))
    raw = np.sort(np.array(draw(st.lists(_margin, min_size=n, max_size=n))))
    labels = (np.arange(n) >= draw(st.integers(min_value=0, max_value=n))).astype(np.float64)
    near_end = st.integers(min_value=0, max_value=3).map(lambda i: n - 1 - i)
    flips = draw(
        st.lists(st.one_of(near_end, st.integers(0, 3), st.integers(0, n - 1)), max_size=4)
    )
    labels[[f % n for f in flips]] = 1.0 - labels[[f % n for f in flips]]
    return raw, labels


samples = st.one_of(_noise, _informative())


def _score(p: np.ndarray) -> np.ndarray:
    """What the scorer prints: `ml_score = round(p * 100, 2)`."""
    return np.round(p * 100.0, 2)


@settings(max_examples=200, deadline=None)
@given(samples, st.lists(_margin, min_size=1, max_size=20))
def test_map_is_monotone_and_never_certain(
    data: tuple[np.ndarray, np.ndarray], probes: list[float]
) -> None:
    raw, labels = data
    cal = IsotonicCalibrator.fit(raw, labels)
    assert np.all(np.diff(cal.x_) > 0)
    assert np.all(np.diff(cal.y_) > 0)
    grid = np.sort(np.concatenate([raw, probes, [-1e9, 1e9]]))
    p = cal.predict(grid)
    # Monotone up to interpolation's rounding (one ulp between two probes on one segment).
    assert np.all(np.diff(p) >= -1e-12)
    assert p.min() >= SCORE_RESOLUTION
    assert p.max() <= 1 - SCORE_RESOLUTION
    assert _score(p).min() > 0.0
    assert _score(p).max() < 100.0


@settings(max_examples=200, deadline=None)
@given(samples)
def test_each_block_moves_only_as_far_as_its_count_allows(
    data: tuple[np.ndarray, np.ndarray],
) -> None:
    raw, labels = data
    blocks = pav_blocks(raw, labels)
    pooled, values = shrink(blocks)
    # Pooling only joins neighbours: the same leads, in fewer blocks.
    assert len(pooled.counts) <= len(blocks.counts)
    assert pooled.counts.sum() == len(raw)
    assert pooled.sums.sum() == labels.sum()
    assert set(np.cumsum(pooled.counts).tolist()) <= set(np.cumsum(blocks.counts).tolist())
    rate = labels.mean()
    n = pooled.counts
    # The posterior of Beta(K r, K (1 - r)) after s of n: within K / (n + K) of s / n, on r's side.
    moved = values - pooled.means
    tolerance = np.maximum(K / (n + K), SCORE_RESOLUTION) + 1e-12
    assert np.all(np.abs(moved) <= tolerance)
    unclipped = (values > SCORE_RESOLUTION) & (values < 1 - SCORE_RESOLUTION)
    assert np.all((moved * (rate - pooled.means) >= -1e-12)[unclipped])
    # Bounded away from 0 and 1 by exactly the prior's pseudo-counts, no more.
    low = np.clip(K * rate / (n + K), SCORE_RESOLUTION, 1 - SCORE_RESOLUTION)
    high = np.clip(1 - K * (1 - rate) / (n + K), SCORE_RESOLUTION, 1 - SCORE_RESOLUTION)
    assert np.all(values >= low - 1e-12)
    assert np.all(values <= high + 1e-12)


@settings(max_examples=100, deadline=None)
@given(samples)
def test_with_more_of_the_same_evidence_the_map_converges_to_pav(
    data: tuple[np.ndarray, np.ndarray],
) -> None:
    """Tiling the data m times keeps PAV's means and multiplies its counts: the shrinkage falls
    as K / (m n + K), and once m > 2 K N no two blocks pool any more."""
    raw, labels = data
    blocks = pav_blocks(raw, labels)
    m = math.ceil(2 * K * len(raw)) + 1
    pooled, values = shrink(pav_blocks(np.tile(raw, m), np.tile(labels, m)))
    np.testing.assert_array_equal(pooled.counts, blocks.counts * m)
    np.testing.assert_allclose(pooled.centres, blocks.centres, rtol=1e-12, atol=1e-12)
    bound = np.maximum(K / (blocks.counts * m + K), SCORE_RESOLUTION)
    assert np.all(np.abs(values - blocks.means) <= bound + 1e-12)


def test_deviation_from_pav_shrinks_with_the_counts() -> None:
    rng = np.random.default_rng(3)
    raw = np.round(rng.normal(size=400), 1)
    labels = (rng.random(400) < 1 / (1 + np.exp(-3 * raw))).astype(np.float64)
    plain = pav_blocks(raw, labels)
    assert plain.means[0] == 0.0
    assert plain.means[-1] == 1.0
    gaps = []
    for m in (1, 10, 100, 1_000):
        pooled, values = shrink(pav_blocks(np.tile(raw, m), np.tile(labels, m)))
        gaps.append(
            float(np.max(np.abs(np.interp(plain.centres, pooled.centres, values) - plain.means)))
        )
    assert gaps == sorted(gaps, reverse=True)
    assert gaps[-1] < 0.01 < gaps[0]


def test_zero_strength_is_plain_pav() -> None:
    raw = np.array([-2.0, -1.0, 0.0, 1.0, 2.0, 3.0])
    labels = np.array([0.0, 0.0, 1.0, 0.0, 1.0, 1.0])
    cal = IsotonicCalibrator.fit(raw, labels, prior_strength=0.0)
    assert cal.y_ == (0.0, 0.5, 1.0)
    assert IsotonicCalibrator.fit(raw, labels).y_ != cal.y_


def test_certain_looking_ends_get_their_posterior_means() -> None:
    """50 negatives then 50 positives: PAV says 0 and 1; the evidence says 1/102 short of each."""
    raw = np.concatenate([np.linspace(-2, -1, 50), np.linspace(1, 2, 50)])
    labels = np.repeat([0.0, 1.0], 50)
    cal = IsotonicCalibrator.fit(raw, labels)
    assert cal.y_ == pytest.approx((0.5 * K / (50 + K), (50 + 0.5 * K) / (50 + K)))
    assert _score(cal.predict(np.array([-10.0, 10.0]))).tolist() == [0.98, 99.02]


def test_a_thin_end_block_that_shrinking_reorders_is_pooled() -> None:
    """One positive above 100 leads at 95%: its own posterior (1 + r)/2 falls below theirs."""
    raw = np.concatenate([np.zeros(900), np.ones(100), [2.0]])
    labels = np.concatenate([np.zeros(900), np.ones(95), np.zeros(5), [1.0]])
    blocks = pav_blocks(raw, labels)
    assert blocks.means.tolist() == [0.0, 0.95, 1.0]
    pooled, values = shrink(blocks)
    rate = 96 / 1001
    assert pooled.counts.tolist() == [900.0, 101.0]
    assert values == pytest.approx([K * rate / (900 + K), (96 + K * rate) / (101 + K)])
    assert np.all(np.diff(values) > 0)


def test_a_huge_certain_block_is_held_to_the_printed_resolution() -> None:
    """30,000 negatives justify less than a ten-thousandth, which would print as 0.00."""
    raw = np.concatenate([np.zeros(30_000), np.ones(30_000)])
    labels = np.concatenate([np.zeros(30_000), np.arange(30_000) % 2])
    cal = IsotonicCalibrator.fit(raw, labels)
    assert cal.y_[0] == SCORE_RESOLUTION
    assert _score(cal.predict(np.array([-1.0]))).tolist() == [0.01]


def test_one_class_calibration_is_not_certain_either() -> None:
    cal = IsotonicCalibrator.fit(np.arange(10.0), np.ones(10))
    assert cal.y_ == (1 - SCORE_RESOLUTION,)


def test_round_trip_keeps_the_map() -> None:
    rng = np.random.default_rng(5)
    raw = rng.normal(size=500)
    cal = IsotonicCalibrator.fit(raw, (rng.random(500) < 0.3).astype(np.float64))
    assert IsotonicCalibrator.from_dict(cal.to_dict()) == cal


def test_an_artifact_from_before_the_shrinkage_loads_without_certainty() -> None:
    """Old artifacts stored PAV's 0 and 1 and no counts: the map is kept, its ends held in."""
    old = IsotonicCalibrator.from_dict({"x": [-1.0, 0.0, 1.0], "y": [0.0, 0.4, 1.0]})
    p = old.predict(np.array([-5.0, 0.0, 5.0]))
    assert p.tolist() == [SCORE_RESOLUTION, 0.4, 1 - SCORE_RESOLUTION]
    assert _score(p).tolist() == [0.01, 40.0, 99.99]
