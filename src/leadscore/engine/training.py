"""What training reads and how it splits, fits and checks: data in, boosters out, no model."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

import lightgbm as lgb
import numpy as np

from leadscore.engine.attributes import ATTRIBUTE_PREFIX, AttributeSpec
from leadscore.engine.errors import TrainingDataError
from leadscore.engine.linear import LinearHead
from leadscore.engine.raw import FloatArray, RawBatch

if TYPE_CHECKING:
    import polars as pl

    from leadscore.engine.model import ModelConfig

MIN_CLASS_EXAMPLES: Final = 40
Algorithm = Literal["lightgbm", "random_forest", "logistic"]
#: How a team's categorical fields reach the trees: LightGBM's own categorical splits, or
#: categories ordered by their training conversion rate and split as a number (a learned
#: encoding: a threshold on the rank is a cut on the rate).
CategoricalMode = Literal["native", "ordered"]
NDArrayInt = np.ndarray[Any, np.dtype[np.int64]]


class Head(Protocol):
    """What the scorer asks of one head, a booster's or a linear model's."""

    def predict(
        self,
        data: FloatArray,
        *,
        raw_score: bool = ...,
        pred_contrib: bool = ...,
        num_threads: int = ...,
    ) -> Any: ...

    def num_trees(self) -> int: ...

    def num_feature(self) -> int: ...

    def feature_importance(self, importance_type: str = ...) -> Any: ...

    def save_model(self, filename: str) -> Any: ...


@dataclass(frozen=True)
class Outcomes:
    """Labels per lead; NaN where a head's label does not apply (not converted, not closed)."""

    converted: FloatArray
    closed: FloatArray
    on_time: FloatArray

    @classmethod
    def from_frame(cls, df: pl.DataFrame) -> Outcomes:
        """Read the outcome columns a training frame carries; absent columns are all missing."""
        import polars as pl

        def col(name: str) -> FloatArray:
            if name not in df.columns:
                return np.full(df.height, np.nan)
            return df[name].cast(pl.Float64).fill_null(np.nan).to_numpy().astype(np.float64)

        closed = col("closed")
        converted = col("converted")
        return cls(
            converted, np.where(converted == 1, closed, np.nan), col("closed_within_timeline")
        )

    def labels(self, head: str) -> FloatArray:
        """A head's label: conversion, closing given conversion, on time given closing."""
        if head == "conversion":
            return self.converted
        if head == "closing":
            return self.closed
        return np.where(self.closed == 1, self.on_time, np.nan)


@dataclass(frozen=True)
class Split:
    """Row indices for trees, calibration and the honest test; how they were chosen."""

    train: NDArrayInt
    calibration: NDArrayInt
    test: NDArrayInt
    kind: str


def split_rows(created_us: FloatArray, labels: FloatArray, config: ModelConfig) -> Split:
    """Time-ordered when timestamps exist (no peeking at the future), else stratified by label."""
    n = len(labels)
    rng = np.random.default_rng(config.seed)
    if np.mean(~np.isnan(created_us)) >= 0.9:
        order = np.argsort(np.nan_to_num(created_us, nan=np.inf), kind="stable")
        kind = "time-ordered"
    else:
        # Interleave a shuffled order per class so every slice keeps the base rate.
        order = np.empty(0, dtype=np.int64)
        keys = np.empty(0)
        for value in (0.0, 1.0):
            members = rng.permutation(np.flatnonzero(labels == value))
            order = np.concatenate([order, members])
            keys = np.concatenate([keys, (np.arange(len(members)) + 0.5) / max(len(members), 1)])
        order = order[np.argsort(keys, kind="stable")]
        kind = "stratified"
    n_test = round(n * config.test_share)
    n_cal = round(n * config.calibration_share)
    n_train = n - n_test - n_cal
    return Split(order[:n_train], order[n_train : n_train + n_cal], order[n_train + n_cal :], kind)


Folds = list[tuple[NDArrayInt, NDArrayInt]]


def expanding_windows(n: int, k: int) -> Folds:
    """Rows in time order cut in k+1 blocks: learn from the first j, judge block j+1."""
    edges = np.linspace(0, n, k + 2).round().astype(np.int64)
    return [(np.arange(0, edges[j]), np.arange(edges[j], edges[j + 1])) for j in range(1, k + 1)]


def fold_numbers(labels: FloatArray, k: int, seed: int) -> NDArrayInt:
    """Fold number per row, each fold keeping the overall conversion rate."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(labels), dtype=np.int64)
    for value in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == value))
        fold[members] = np.arange(len(members)) % k
    return fold


def shuffled_folds(labels: FloatArray, k: int, seed: int) -> Folds:
    """K folds keeping the overall conversion rate, for rows without dates."""
    fold = fold_numbers(labels, k, seed)
    return [(np.flatnonzero(fold != j), np.flatnonzero(fold == j)) for j in range(k)]


def booster_params(config: ModelConfig) -> dict[str, Any]:
    """What the card records of the training settings (LightGBM's, or the logistic model's)."""
    if config.algorithm == "logistic":
        return {"objective": "binary", "model": "logistic", "l2": config.l2,
                "num_threads": config.num_threads, "seed": config.seed}  # fmt: skip
    params: dict[str, Any] = {
        "objective": "binary",
        "learning_rate": config.learning_rate,
        "num_leaves": config.num_leaves,
        "max_depth": config.max_depth,
        "min_data_in_leaf": config.min_data_in_leaf,
        "lambda_l2": 1.0,
        "feature_fraction": 0.9,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "num_threads": config.num_threads,
        "seed": config.seed,
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": -1,
    }
    if config.algorithm == "random_forest":
        params |= {
            "boosting": "rf",
            "bagging_fraction": 0.632,
            "feature_fraction": 0.6,
            "num_leaves": max(config.num_leaves, 31),
            "max_depth": max(config.max_depth, 8),
        }
    return params


def fit_head(
    x: FloatArray,
    y: FloatArray,
    categorical: list[int],
    config: ModelConfig,
    directions: Sequence[int] = (),
) -> Head:
    """One head of the configured kind: boosted trees, a random forest, or a logistic model
    (which treats every categorical column as one-hot, whatever the trees' mode)."""
    if config.algorithm == "logistic":
        return LinearHead.fit(x, y, categorical, config.l2, directions)
    if config.categorical == "ordered":
        categorical = []  # ordered codes are split as numbers
    return fit_booster(x, y, categorical, config, directions)


def fit_booster(
    x: FloatArray,
    y: FloatArray,
    categorical: list[int],
    config: ModelConfig,
    directions: Sequence[int] = (),
) -> lgb.Booster:
    """Gradient boosting with early stopping on the latest tenth of the training rows;
    `directions` (one per column, +1/-1/0) constrain the score to rise or fall with a column."""
    params = booster_params(config)
    if any(directions):
        params |= {
            "monotone_constraints": list(directions),
            "monotone_constraints_method": "intermediate",
        }
    n_valid = max(int(len(y) * 0.1), 1)
    train_set = lgb.Dataset(
        x[:-n_valid], y[:-n_valid], categorical_feature=categorical or "auto", free_raw_data=False
    )
    valid_set = lgb.Dataset(x[-n_valid:], y[-n_valid:], reference=train_set)
    if config.algorithm == "random_forest":
        return lgb.train(params, train_set, num_boost_round=min(config.max_trees, 200))
    booster = lgb.train(
        params,
        train_set,
        num_boost_round=config.max_trees,
        valid_sets=[valid_set],
        callbacks=[lgb.early_stopping(40, verbose=False)],
    )
    best = booster.best_iteration or config.max_trees
    # Re-serialise at the best iteration so the artifact holds only the trees it uses.
    return lgb.Booster(model_str=booster.model_to_string(num_iteration=best))


def check_labels(head: str, y: FloatArray) -> None:
    positives = int(np.sum(y == 1))
    negatives = int(np.sum(y == 0))
    if positives == 0 or negatives == 0:
        raise TrainingDataError(f"the {head} label is constant: nothing to learn")
    if min(positives, negatives) < MIN_CLASS_EXAMPLES:
        raise TrainingDataError(
            f"the {head} label has {positives} positive and {negatives} negative examples; "
            f"at least {MIN_CLASS_EXAMPLES} of each are needed"
        )


def fingerprint(x: FloatArray, y: FloatArray) -> str:
    """Identifies the exact training data behind a model."""
    digest = hashlib.sha256(np.ascontiguousarray(x).tobytes())
    digest.update(np.ascontiguousarray(y).tobytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class TrainingInput:
    """Everything training reads, already extracted: features, attributes, labels, time."""

    raw: RawBatch
    attribute_values: Mapping[str, Sequence[object]]
    outcomes: Outcomes
    created_us: FloatArray

    @classmethod
    def from_frame(cls, df: pl.DataFrame, attributes: AttributeSpec) -> TrainingInput:
        """Extract from a canonical training frame with outcome columns."""
        import polars as pl

        from leadscore.engine.columnar import raw_from_frame

        if "converted" not in df.columns or df["converted"].null_count() == df.height:
            raise TrainingDataError("no conversion label: training needs a `converted` outcome")
        if df["converted"].null_count():
            raise TrainingDataError(f"{df['converted'].null_count()} rows have no conversion label")
        created = df["created_at"].dt.epoch("us").cast(pl.Float64).fill_null(np.nan)
        values = {
            name: df[ATTRIBUTE_PREFIX + name].to_list()
            if ATTRIBUTE_PREFIX + name in df.columns
            else [None] * df.height
            for name in attributes.names
        }
        return cls(raw_from_frame(df), values, Outcomes.from_frame(df), created.to_numpy())

    def take(self, rows: NDArrayInt) -> TrainingInput:
        """The subset of rows, in the given order."""
        return TrainingInput(
            RawBatch(self.raw.values[rows], [self.raw.sources[i] for i in rows]),
            {k: [v[i] for i in rows] for k, v in self.attribute_values.items()},
            Outcomes(
                self.outcomes.converted[rows],
                self.outcomes.closed[rows],
                self.outcomes.on_time[rows],
            ),
            self.created_us[rows],
        )
