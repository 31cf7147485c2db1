"""Held-out quality metrics and probability calibration, in numpy, with no other ML library."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import numpy as np

from leadscore.engine.raw import FloatArray

EPS: Final = 1e-6
ECE_BINS: Final = 15


def auc(labels: FloatArray, scores: FloatArray) -> float:
    """Area under the ROC curve by the rank-sum formula, ties counted as half."""
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    # Average ranks within ties so equal scores are neither rewarded nor punished.
    _, start, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = start + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    positives = labels == 1
    n_pos = int(positives.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def brier(labels: FloatArray, probs: FloatArray) -> float:
    """Mean squared error of the probabilities."""
    return float(np.mean((probs - labels) ** 2))


def log_loss(labels: FloatArray, probs: FloatArray) -> float:
    """Mean negative log-likelihood, probabilities clipped away from 0 and 1."""
    p = np.clip(probs, EPS, 1 - EPS)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))


def ece(labels: FloatArray, probs: FloatArray, bins: int = ECE_BINS) -> float:
    """Expected calibration error over equal-width probability bins, weighted by bin size."""
    index = np.minimum((probs * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            total += mask.sum() * abs(float(probs[mask].mean() - labels[mask].mean()))
    return float(total / len(labels))


def reliability(labels: FloatArray, probs: FloatArray, bins: int = 10) -> list[dict[str, float]]:
    """Observed vs predicted rate per probability bin, for plots and the live quality view."""
    index = np.minimum((probs * bins).astype(np.int64), bins - 1)
    rows = []
    for b in range(bins):
        mask = index == b
        if mask.any():
            rows.append(
                {
                    "bin_low": b / bins,
                    "predicted": float(probs[mask].mean()),
                    "observed": float(labels[mask].mean()),
                    "n": float(mask.sum()),
                }
            )
    return rows


def summary(labels: FloatArray, probs: FloatArray) -> dict[str, float]:
    """The card's metrics for one head."""
    return {
        "auc": auc(labels, probs),
        "brier": brier(labels, probs),
        "log_loss": log_loss(labels, probs),
        "ece": ece(labels, probs),
        "n": float(len(labels)),
        "positive_rate": float(np.mean(labels)),
    }


#: Weight, in leads, of the Beta prior each calibration block is shrunk with: one pseudo-lead
#: at the overall rate, so a block of n leads moves at most 1/(n + 1) from its observed mean.
PRIOR_STRENGTH: Final = 1.0
#: Scores print with two decimals (p x 100): below a ten-thousandth a probability would show as
#: 0.00 although the evidence says it is not zero, so no calibrated value goes beyond this.
SCORE_RESOLUTION: Final = 1e-4


@dataclass(frozen=True)
class Blocks:
    """Runs of adjacent margins pooled into one probability: centre, label sum and count each."""

    centres: FloatArray
    sums: FloatArray
    counts: FloatArray

    @property
    def means(self) -> FloatArray:
        """Observed rate of each block: the maximum-likelihood step, 0 or 1 at the ends."""
        return self.sums / self.counts


def pav_blocks(raw: FloatArray, labels: FloatArray) -> Blocks:
    """Pool-adjacent-violators: the isotonic least-squares solution as strictly rising blocks."""
    # Equal margins form one point first, so no two blocks can share a centre.
    unique_x, inverse = np.unique(raw, return_inverse=True)
    point_sums = np.bincount(inverse, weights=labels.astype(np.float64))
    point_counts = np.bincount(inverse).astype(np.float64)
    # Blocks as (sum_y, count, sum_x); merge while the previous mean exceeds the next.
    sums: list[float] = []
    counts: list[float] = []
    xsum: list[float] = []
    for x, s_y, c in zip(
        unique_x.tolist(), point_sums.tolist(), point_counts.tolist(), strict=True
    ):
        sums.append(s_y)
        counts.append(c)
        xsum.append(x * c)
        while len(sums) > 1 and sums[-2] * counts[-1] >= sums[-1] * counts[-2]:
            s, n, sx = sums.pop(), counts.pop(), xsum.pop()
            sums[-1] += s
            counts[-1] += n
            xsum[-1] += sx
    count_array = np.asarray(counts, dtype=np.float64)
    return Blocks(np.asarray(xsum) / count_array, np.asarray(sums, dtype=np.float64), count_array)


def shrink(blocks: Blocks, strength: float = PRIOR_STRENGTH) -> tuple[Blocks, FloatArray]:
    """Each block's Beta posterior mean, so no finite evidence claims certainty; still monotone."""
    # Prior Beta(strength * r, strength * (1 - r)), r the overall rate: a block of n leads moves
    # at most strength / (n + strength) from its observed mean, so a well-filled interior block
    # barely moves. A small end block can fall behind its neighbour after shrinking: the two then
    # pool, as in PAV, into one posterior. None comes nearer to 0 or 1 than SCORE_RESOLUTION.
    total = float(blocks.counts.sum())
    prior_sum = strength * float(blocks.sums.sum()) / total

    def value(s: float, n: float) -> float:
        posterior = (s + prior_sum) / (n + strength)
        return min(max(posterior, SCORE_RESOLUTION), 1.0 - SCORE_RESOLUTION)

    sums: list[float] = []
    counts: list[float] = []
    xsum: list[float] = []
    values: list[float] = []
    for x, s_y, c in zip(
        blocks.centres.tolist(), blocks.sums.tolist(), blocks.counts.tolist(), strict=True
    ):
        sums.append(s_y)
        counts.append(c)
        xsum.append(x * c)
        values.append(value(s_y, c))
        while len(values) > 1 and values[-2] >= values[-1]:
            s, n, sx = sums.pop(), counts.pop(), xsum.pop()
            values.pop()
            sums[-1] += s
            counts[-1] += n
            xsum[-1] += sx
            values[-1] = value(sums[-1], counts[-1])
    count_array = np.asarray(counts, dtype=np.float64)
    pooled = Blocks(np.asarray(xsum) / count_array, np.asarray(sums, dtype=np.float64), count_array)
    return pooled, np.asarray(values, dtype=np.float64)


@dataclass(frozen=True)
class IsotonicCalibrator:
    """Monotone map from raw model margin to probability: shrunk PAV blocks, interpolated.

    Interpolating between block centres keeps the map strictly informative (no wide flat steps)
    while staying monotone, so scores still rank leads. Each block's value is its Beta posterior
    mean (`shrink`), so no lead is ever given a probability of exactly 0 or 1.

    Examples
    --------
    >>> import numpy as np
    >>> cal = IsotonicCalibrator.fit(np.array([-2.0, -1.0, 1.0, 2.0]), np.array([0.0, 0, 1, 1]))
    >>> [round(float(v), 2) for v in cal.predict(np.array([-3.0, 3.0]))]
    [0.17, 0.83]
    """

    x_: tuple[float, ...]
    y_: tuple[float, ...]
    _xp: FloatArray = field(init=False, repr=False, compare=False)
    _fp: FloatArray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # np.interp would convert the tuples on every call: keep arrays beside them.
        object.__setattr__(self, "_xp", np.asarray(self.x_, dtype=np.float64))
        object.__setattr__(self, "_fp", np.asarray(self.y_, dtype=np.float64))

    @classmethod
    def fit(
        cls, raw: FloatArray, labels: FloatArray, prior_strength: float = PRIOR_STRENGTH
    ) -> IsotonicCalibrator:
        """Fit on held-aside data the trees never saw; `prior_strength=0` gives plain PAV."""
        blocks = pav_blocks(raw, labels)
        if prior_strength == 0:
            return cls(tuple(blocks.centres.tolist()), tuple(blocks.means.tolist()))
        pooled, values = shrink(blocks, prior_strength)
        return cls(tuple(pooled.centres.tolist()), tuple(values.tolist()))

    def predict(self, raw: FloatArray) -> FloatArray:
        """Calibrated probabilities; outside the fitted range the end values hold."""
        return np.interp(raw, self._xp, self._fp)

    def slope(self, raw: FloatArray) -> FloatArray:
        """Local derivative, used to turn margin contributions into score points at ties."""
        h = 1e-3
        return (self.predict(raw + h) - self.predict(raw - h)) / (2 * h)

    def to_dict(self) -> dict[str, list[float]]:
        """Plain JSON form stored in the artifact."""
        return {"x": list(self.x_), "y": list(self.y_)}

    @classmethod
    def from_dict(cls, data: dict[str, list[float]]) -> IsotonicCalibrator:
        """Rebuild from the artifact's JSON; older artifacts' 0 and 1 are held to the resolution."""
        # An artifact made before the shrinkage holds no counts to shrink by: this is all it gets.
        low, high = SCORE_RESOLUTION, 1.0 - SCORE_RESOLUTION
        return cls(
            tuple(float(v) for v in data["x"]),
            tuple(min(max(float(v), low), high) for v in data["y"]),
        )
