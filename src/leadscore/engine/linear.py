"""A regularised logistic head on the same columns as the trees, with exact contributions.

On a few hundred labelled leads a linear model can beat boosted trees; the training search
(`engine.search`) tries one beside them. It answers the calls a booster answers in the
scorer (raw margins, per-column contributions, one-row predictions, importance) so a model
whose heads are linear is scored, explained and questioned the same way.

A column's contribution is its terms' distance from their training mean, so the margin is the
expected margin plus the contributions, exactly (SHAP values of an additive model).

Examples
--------
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(400, 2))
>>> y = (x[:, 0] + 0.3 * rng.normal(size=400) > 0).astype(float)
>>> head = LinearHead.fit(x, y, categorical=[], l2=1.0)
>>> contrib = head.predict(x[:3], pred_contrib=True)
>>> bool(np.allclose(contrib.sum(axis=1), head.predict(x[:3], raw_score=True)))
True
>>> bool(head.coef_[0] > 1.0 > abs(head.coef_[1]))
True
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from leadscore.engine.raw import FloatArray

NEWTON_STEPS: Final = 50


@dataclass(frozen=True)
class _Column:
    """How one input column becomes design terms: scaled number (+ missing flag) or one-hot."""

    categorical: bool
    fill: float = 0.0
    mean: float = 0.0
    scale: float = 1.0
    flag: bool = False
    levels: tuple[float, ...] = ()
    #: The training range: a value beyond it counts as its edge, as a tree would read it —
    #: a lead (or a market) outside what was seen must not move a linear score without bound.
    low: float = -math.inf
    high: float = math.inf

    @classmethod
    def learn(cls, values: FloatArray, categorical: bool) -> _Column:
        known = values[~np.isnan(values)]
        if categorical:
            return cls(True, levels=tuple(float(v) for v in np.unique(known)))
        fill = float(np.median(known)) if len(known) else 0.0
        filled = np.where(np.isnan(values), fill, values)
        scale = float(filled.std())
        return cls(
            False,
            fill,
            float(filled.mean()),
            scale if scale > 0 else 1.0,
            bool(0 < len(known) < len(values)),
            low=float(filled.min()) if len(filled) else -math.inf,
            high=float(filled.max()) if len(filled) else math.inf,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "categorical": self.categorical,
            "fill": self.fill,
            "mean": self.mean,
            "scale": self.scale,
            "flag": self.flag,
            "levels": list(self.levels),
            "low": self.low,
            "high": self.high,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> _Column:
        return cls(
            bool(d["categorical"]),
            float(d["fill"]),
            float(d["mean"]),
            float(d["scale"]),
            bool(d["flag"]),
            tuple(float(v) for v in d["levels"]),
            float(d["low"]),
            float(d["high"]),
        )


class _Layout:
    """Every column's design terms at once (scaled numbers, missing flags, one-hot levels):
    a few array operations per call, however many columns, so one lead costs microseconds."""

    def __init__(self, columns: Sequence[_Column]) -> None:
        numeric = [j for j, c in enumerate(columns) if not c.categorical]
        self.numeric = np.array(numeric, dtype=np.int64)
        self.fill = np.array([columns[j].fill for j in numeric], dtype=np.float64)
        self.mean = np.array([columns[j].mean for j in numeric], dtype=np.float64)
        self.scale = np.array([columns[j].scale for j in numeric], dtype=np.float64)
        self.low = np.array([columns[j].low for j in numeric], dtype=np.float64)
        self.high = np.array([columns[j].high for j in numeric], dtype=np.float64)
        self.flags = np.array([j for j in numeric if columns[j].flag], dtype=np.int64)
        pairs = [(j, level) for j, c in enumerate(columns) if c.categorical for level in c.levels]
        self.level_columns = np.array([j for j, _ in pairs], dtype=np.int64)
        self.levels = np.array([level for _, level in pairs], dtype=np.float64)
        #: The input column of each design term; sums contributions back per column.
        self.owner = np.concatenate([self.numeric, self.flags, self.level_columns])
        self.to_columns = np.zeros((len(self.owner), len(columns)))
        self.to_columns[np.arange(len(self.owner)), self.owner] = 1.0

    def design(self, x: FloatArray) -> FloatArray:
        values = x[:, self.numeric]
        filled = np.where(np.isnan(values), self.fill, values)
        z = (np.clip(filled, self.low, self.high) - self.mean) / self.scale
        flags = np.isnan(x[:, self.flags]).astype(np.float64)
        onehot = (x[:, self.level_columns] == self.levels).astype(np.float64)
        return np.hstack([z, flags, onehot])


def _newton(design: FloatArray, y: FloatArray, l2: float) -> tuple[FloatArray, float]:
    """Coefficients and intercept minimising log-loss + l2/2·|w|² (Newton's method, each step
    halved until the loss falls: near-separable categories would otherwise overshoot)."""
    n, d = design.shape
    x = np.hstack([design, np.ones((n, 1))])
    w = np.zeros(d + 1)
    base = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
    w[-1] = np.log(base / (1 - base))
    penalty = np.full(d + 1, l2)
    penalty[-1] = 0.0  # the intercept is not shrunk

    def loss(weights: FloatArray) -> float:
        margin = x @ weights
        return float(np.sum(np.logaddexp(0.0, margin) - y * margin) + 0.5 * penalty @ weights**2)

    current = loss(w)
    for _ in range(NEWTON_STEPS):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -30.0, 30.0)))
        grad = x.T @ (p - y) + penalty * w
        hess = (x.T * (p * (1 - p))) @ x + np.diag(penalty + 1e-6)
        step = np.linalg.solve(hess, grad)
        for _ in range(30):
            trial = w - step
            value = loss(trial)
            if value <= current:
                break
            step = step / 2
        else:
            break  # no step lowers the loss: at the minimum as far as floats tell
        w, improvement, current = trial, current - value, value
        if improvement < 1e-9 * max(current, 1.0):
            break
    return w[:-1], float(w[-1])


class LinearHead:
    """L2-regularised logistic regression over scaled numbers and one-hot categories."""

    def __init__(
        self,
        columns: Sequence[_Column],
        coef: FloatArray,
        intercept: float,
        means: FloatArray,
        importance: FloatArray | None = None,
    ) -> None:
        self.columns_ = tuple(columns)
        self.coef_ = coef
        self.intercept_ = intercept
        self.term_means_ = means
        self._layout = _Layout(self.columns_)
        self.expected_ = float(intercept + coef @ means)
        self.importance_ = importance if importance is not None else np.zeros(len(self.columns_))

    @classmethod
    def fit(
        cls,
        x: FloatArray,
        y: FloatArray,
        categorical: Sequence[int],
        l2: float,
        directions: Sequence[int] = (),
    ) -> LinearHead:
        """Learn scaling and levels from `x`, then the coefficients; a column with a
        direction (+1/-1, as the trees' monotone constraints) never moves the score the
        other way: a coefficient of the wrong sign is held at zero and the rest refitted."""
        cats = set(categorical)
        columns = [_Column.learn(x[:, j], j in cats) for j in range(x.shape[1])]
        layout = _Layout(columns)
        design = layout.design(x)
        # A number's scaled term comes first among its terms, in the order of `numeric`.
        signed = [(term, directions[j]) for term, j in enumerate(layout.numeric.tolist())
                  if j < len(directions) and directions[j]]  # fmt: skip
        free = np.ones(design.shape[1], dtype=bool)
        coef, intercept = _newton(design, y, l2)
        for _ in range(len(signed)):
            wrong = [term for term, d in signed if free[term] and coef[term] * d < 0]
            if not wrong:
                break
            free[wrong] = False
            coef = np.zeros(design.shape[1])
            coef[free], intercept = _newton(design[:, free], y, l2)
        head = cls(columns, coef, intercept, design.mean(axis=0))
        head.importance_ = np.abs(head._contributions(x)[:, :-1]).mean(axis=0)
        return head

    def _contributions(self, x: FloatArray) -> FloatArray:
        terms = (self._layout.design(x) - self.term_means_) * self.coef_
        out = np.empty((x.shape[0], len(self.columns_) + 1))
        out[:, :-1] = terms @ self._layout.to_columns
        out[:, -1] = self.expected_
        return out

    def predict(
        self,
        data: FloatArray,
        *,
        raw_score: bool = False,
        pred_contrib: bool = False,
        num_threads: int = 1,
    ) -> FloatArray:
        """Margins (`raw_score`), probabilities, or contributions with the expected value last."""
        del num_threads  # one matrix product: no pool to size
        x = np.asarray(data, dtype=np.float64)
        if pred_contrib:
            return self._contributions(x)
        margin = self._layout.design(x) @ self.coef_ + self.intercept_
        return margin if raw_score else 1.0 / (1.0 + np.exp(-margin))

    def raw_many(self, rows: FloatArray) -> FloatArray:
        """Margins of a few rows: the one-row path of the scorer."""
        return self.predict(rows, raw_score=True)

    def contributions(self, row: FloatArray) -> FloatArray:
        """One row's contributions, the expected value last."""
        out: FloatArray = self._contributions(row[None, :])[0]
        return out

    def num_trees(self) -> int:
        """A linear head has no trees."""
        return 0

    def num_feature(self) -> int:
        return len(self.columns_)

    def feature_importance(self, importance_type: str = "gain") -> FloatArray:
        """Per column, the mean size of its contribution over the training rows (the linear
        counterpart of split gain, used to weigh a lead's evidence)."""
        del importance_type
        return self.importance_

    def save_model(self, filename: str | Path) -> None:
        """Write the head as JSON beside the boosters."""
        Path(filename).write_text(
            json.dumps(
                {
                    "kind": "logistic",
                    "columns": [c.to_dict() for c in self.columns_],
                    "coef": self.coef_.tolist(),
                    "intercept": self.intercept_,
                    "term_means": self.term_means_.tolist(),
                    "importance": self.importance_.tolist(),
                },
                sort_keys=True,
            )
        )

    @classmethod
    def load(cls, filename: str | Path) -> LinearHead:
        """Read a head written by `save_model`."""
        d = json.loads(Path(filename).read_text())
        return cls(
            [_Column.from_dict(c) for c in d["columns"]],
            np.asarray(d["coef"], dtype=np.float64),
            float(d["intercept"]),
            np.asarray(d["term_means"], dtype=np.float64),
            np.asarray(d["importance"], dtype=np.float64),
        )
