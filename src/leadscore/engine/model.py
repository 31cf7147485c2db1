"""The three-head lead model as an estimator: parameters in `__init__`, learned state set by
`fit` (or `load`), calibrated probabilities and exact TreeSHAP contributions, and its card.

Examples
--------
>>> from leadscore.engine.synthetic import generate
>>> data = TrainingInput.from_frame(generate(3_000, seed=2), AttributeSpec())
>>> model = LeadModel(ModelConfig(num_threads=1)).fit(data)
>>> sorted(model.boosters_) == sorted(model.calibrators_)
True
>>> model.card_["metrics"]["conversion"]["auc"] > 0.6
True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Protocol, Self, cast

import lightgbm as lgb
import numpy as np

from leadscore.engine.artifact import read_artifact, write_artifact
from leadscore.engine.attributes import AttributeSpec
from leadscore.engine.drift import reference
from leadscore.engine.errors import ModelArtifactError
from leadscore.engine.fastpath import SingleRowPredictor
from leadscore.engine.features import (
    CONVERSION_DIRECTIONS,
    FEATURE_INDEX,
    FEATURE_NAMES,
    PROTECTED,
    SourceEncoding,
    spec_hash,
    transform,
)
from leadscore.engine.metrics import IsotonicCalibrator, summary
from leadscore.engine.raw import FloatArray
from leadscore.engine.training import (
    MIN_CLASS_EXAMPLES,
    Algorithm,
    CategoricalMode,
    Head,
    NDArrayInt,
    TrainingInput,
    booster_params,
    check_labels,
    expanding_windows,
    fingerprint,
    fit_head,
    shuffled_folds,
    split_rows,
)

HEADS: Final = ("conversion", "closing", "timeline")
CROSS_FIT_FOLDS: Final = 3
CROSS_FIT_NOTE: Final = "cross-fitted: out-of-fold margins of {k} {order} folds"
#: Up to this many rows, predicting row by row through the one-row path is the faster way.
SMALL_BATCH: Final = 32
HEAD_MEANINGS: Final = {
    "conversion": "P(lead converts)",
    "closing": "P(closes | converts); reported as P(closes) = conversion × this",
    "timeline": "P(closes within the stated timeline | closes)",
}


@dataclass(frozen=True)
class ScoringPolicy:
    """Thresholds a team can tune; stored in the card so a score can be reproduced."""

    hot: float = 70.0
    warm: float = 40.0
    escalation_confidence: float = 0.85
    commission_rate: float = 0.06
    #: Below this evidence (share of the model's attention on known facts) a lead is thin data.
    min_evidence: float = 0.4


@dataclass(frozen=True)
class ModelConfig:
    """Training parameters; the defaults keep exact explanations under a tenth of a millisecond."""

    algorithm: Algorithm = "lightgbm"
    #: Early stopping would go on to ~160 trees for no held-out gain; 100 keeps a lead's
    #: explanations and what-if questions within the latency budget (BENCHMARKS.md).
    max_trees: int = 100
    learning_rate: float = 0.12
    num_leaves: int = 8
    max_depth: int = 3
    min_data_in_leaf: int = 40
    #: Categorical fields: LightGBM's own splits, or ordered by conversion rate (`training`).
    categorical: CategoricalMode = "native"
    #: Shrinkage of the logistic model's coefficients (algorithm "logistic").
    l2: float = 1.0
    #: Pick the settings above by time-ordered cross-validation first (`engine.search`).
    search: bool = False
    #: Trees on the training and calibration rows together, calibrated on out-of-fold margins
    #: (3 folds: windows in time when the rows are dated) instead of on held-out rows.
    cross_fit: bool = False
    num_threads: int = 2
    seed: int = 0
    include_protected: bool = False
    calibration_share: float = 0.15
    test_share: float = 0.15
    policy: ScoringPolicy = field(default_factory=ScoringPolicy)


class OneRow(Protocol):
    """The one-row calls of a head: LightGBM's fast path, or a linear head itself."""

    def raw_many(self, rows: FloatArray) -> FloatArray: ...

    def contributions(self, row: FloatArray) -> FloatArray: ...


@dataclass(frozen=True)
class HeadPrediction:
    """Raw margins and calibrated probabilities of one head; contributions when asked."""

    raw: FloatArray
    prob: FloatArray
    contributions: FloatArray | None = None


class LeadModel:
    """Gradient-boosted heads with isotonic calibration; `*_` attributes are learned by `fit`.

    Parameters
    ----------
    config : training parameters (trees, threads, seed, split shares, scoring policy).
    attributes : the team's custom columns to use; their vocabularies are learned by `fit`.
    """

    boosters_: dict[str, Head]
    calibrators_: dict[str, IsotonicCalibrator]
    encoding_: SourceEncoding
    attributes_: AttributeSpec
    model_features_: tuple[str, ...]
    card_: dict[str, Any]

    def __init__(
        self, config: ModelConfig | None = None, attributes: AttributeSpec | None = None
    ) -> None:
        self.config = config or ModelConfig()
        self.attributes = attributes or AttributeSpec()
        self._fast: dict[str, OneRow] = {}

    @property
    def version_(self) -> str:
        """Content hash of the artifact: the same model always has the same version."""
        return str(self.card_["version"])

    @property
    def num_threads(self) -> int:
        """Threads LightGBM may use for large batches."""
        return self.config.num_threads

    @property
    def feature_columns(self) -> NDArrayInt:
        """Indices of the 28 features the boosters were trained on."""
        return np.array(
            [FEATURE_INDEX[n] for n in self.model_features_ if n in FEATURE_INDEX], dtype=np.int64
        )

    def matrix(self, features: FloatArray, attributes: FloatArray | None) -> FloatArray:
        """Model input: the trained subset of the 28 features, then the custom attributes."""
        base = features[:, self.feature_columns]
        if not self.attributes_.names:
            return np.ascontiguousarray(base)
        extra = (
            attributes
            if attributes is not None
            else np.full((features.shape[0], len(self.attributes_.names)), np.nan)
        )
        return np.ascontiguousarray(np.hstack([base, extra]))

    def _single(self, head: str) -> OneRow:
        """The fast one-row predictor of a head, made on first use (a linear head is its own)."""
        predictor = self._fast.get(head)
        if predictor is None:
            fitted = self.boosters_[head]
            predictor = (
                SingleRowPredictor(fitted)
                if isinstance(fitted, lgb.Booster)
                else cast(OneRow, fitted)
            )
            self._fast[head] = predictor
        return predictor

    def predict_head(self, head: str, x: FloatArray, explain: bool = False) -> HeadPrediction:
        """Calibrated probability of one head; exact TreeSHAP contributions when `explain`."""
        # One lead, or a few rows without explanations (a lead's what-if variants): the
        # one-row path beats a batch call.
        if x.shape[0] == 1 or (not explain and x.shape[0] <= SMALL_BATCH):
            single = self._single(head)
            if explain:
                contrib = single.contributions(x[0])[None, :]
                raw = contrib.sum(axis=1)
            else:
                contrib = None
                raw = single.raw_many(x)
            return HeadPrediction(raw, self.calibrators_[head].predict(raw), contrib)
        booster = self.boosters_[head]
        threads = 1 if x.shape[0] < 2_000 else self.num_threads
        if explain:
            contrib = np.asarray(
                booster.predict(x, pred_contrib=True, num_threads=threads), dtype=np.float64
            )
            raw = contrib.sum(axis=1)
        else:
            contrib = None
            raw = np.asarray(
                booster.predict(x, raw_score=True, num_threads=threads), dtype=np.float64
            )
        return HeadPrediction(raw, self.calibrators_[head].predict(raw), contrib)

    def conversion_probability(self, features: FloatArray, attrs: FloatArray | None) -> FloatArray:
        """Calibrated P(conversion) of feature rows: what drift compares over time."""
        return self.predict_head("conversion", self.matrix(features, attrs)).prob

    def learn_columns(self, train: TrainingInput, config: ModelConfig) -> list[int]:
        """Learn the encodings and the column order from training rows; the categorical
        columns' indices."""
        ordered = config.categorical == "ordered"
        labels = train.outcomes.converted if ordered else None
        self.attributes_ = self.attributes.learn(train.attribute_values, labels)
        self.encoding_ = SourceEncoding.fit(train.raw.sources, train.outcomes.converted)
        used = tuple(n for n in FEATURE_NAMES if config.include_protected or n not in PROTECTED)
        self.model_features_ = used + self.attributes_.names
        return list(range(len(used) + len(self.attributes_.numeric), len(self.model_features_)))

    def _out_of_fold(
        self, head: str, rows: TrainingInput, config: ModelConfig, order: str
    ) -> tuple[FloatArray, FloatArray]:
        """Margins of every row a fold model did not learn from, and their labels: what the
        calibration learns on when the trees have learned from all rows (cross-fitting)."""
        n = len(rows.raw)
        if order == "time-ordered":  # each window judged by a model of the leads before it
            folds = expanding_windows(n, CROSS_FIT_FOLDS)
        else:
            folds = shuffled_folds(rows.outcomes.converted, CROSS_FIT_FOLDS, config.seed)
        raws: list[FloatArray] = []
        labels: list[FloatArray] = []
        fold_config = replace(config, cross_fit=False)
        directions = CONVERSION_DIRECTIONS if head == "conversion" else {}
        for train_index, valid_index in folds:
            fold = LeadModel(fold_config, self.attributes)
            train, valid = rows.take(train_index), rows.take(valid_index)
            categorical = fold.learn_columns(train, fold_config)
            y_train, y_valid = train.outcomes.labels(head), valid.outcomes.labels(head)
            known, valid_known = ~np.isnan(y_train), ~np.isnan(y_valid)
            if min(np.sum(y_train == 1), np.sum(y_train == 0)) == 0:
                continue  # nothing to learn from in this window
            fitted = fit_head(
                fold.design(train)[known],
                y_train[known],
                categorical,
                fold_config,
                [directions.get(name, 0) for name in fold.model_features_],
            )
            x_valid = fold.design(valid)[valid_known]
            raws.append(np.asarray(fitted.predict(x_valid, raw_score=True), dtype=np.float64))
            labels.append(y_valid[valid_known])
        return np.concatenate(raws), np.concatenate(labels)

    def design(self, part: TrainingInput) -> FloatArray:
        """The model input of training rows, with the encodings `learn_columns` set."""
        feats = transform(part.raw, self.encoding_)
        attrs = self.attributes_.encode(part.attribute_values, len(part.raw))
        return self.matrix(feats, attrs)

    def fit(self, data: TrainingInput, *, data_description: str = "") -> Self:
        """Fit trees on the oldest rows, calibrate on the next, report metrics on the newest;
        with `config.search`, settings chosen first on the training and calibration rows."""
        config = self.config
        check_labels("conversion", data.outcomes.converted)
        split = split_rows(data.created_us, data.outcomes.converted, config)
        searched: dict[str, Any] | None = None
        if config.search:
            from leadscore.engine.search import search

            found = search(
                data.take(np.concatenate([split.train, split.calibration])),
                config,
                self.attributes,
                split.kind,
            )
            config, searched = found.config, found.record
        self.fitted_config_ = config
        if config.cross_fit:
            # Trees learn from every row but the test; calibration from out-of-fold margins.
            train_rows = data.take(np.concatenate([split.train, split.calibration]))
            calibration_rows = data.take(np.empty(0, dtype=np.int64))
        else:
            train_rows = data.take(split.train)
            calibration_rows = data.take(split.calibration)
        categorical = self.learn_columns(train_rows, config)
        self.boosters_, self.calibrators_, self._fast = {}, {}, {}
        matrix = self.design

        subsets = {
            "train": train_rows,
            "calibration": calibration_rows,
            "test": data.take(split.test),
        }
        parts = {name: (part, matrix(part)) for name, part in subsets.items()}
        metrics: dict[str, dict[str, float]] = {}
        rows: dict[str, dict[str, int]] = {}
        for head in HEADS:
            y_train = parts["train"][0].outcomes.labels(head)
            known = ~np.isnan(y_train)
            if head != "conversion":
                positives, negatives = np.sum(y_train == 1), np.sum(y_train == 0)
                if min(positives, negatives) < MIN_CLASS_EXAMPLES:
                    continue
            directions = CONVERSION_DIRECTIONS if head == "conversion" else {}
            booster = fit_head(
                parts["train"][1][known],
                y_train[known],
                categorical,
                config,
                [directions.get(name, 0) for name in self.model_features_],
            )
            self.boosters_[head] = booster
            if config.cross_fit:
                raw_cal, y_known = self._out_of_fold(head, train_rows, config, split.kind)
                cal_known = np.ones(len(y_known), dtype=bool)
            else:
                cal_part, x_cal = parts["calibration"]
                y_cal = cal_part.outcomes.labels(head)
                cal_known = ~np.isnan(y_cal)
                y_known = y_cal[cal_known]
                raw_cal = np.asarray(
                    booster.predict(x_cal[cal_known], raw_score=True), dtype=np.float64
                )
            self.calibrators_[head] = IsotonicCalibrator.fit(raw_cal, y_known)
            test_part, x_test = parts["test"]
            y_test = test_part.outcomes.labels(head)
            test_known = ~np.isnan(y_test)
            rows[head] = {
                "train": int(known.sum()),
                "calibration": int(cal_known.sum()),
                "test": int(test_known.sum()),
                "trees": int(booster.num_trees()),
            }
            if test_known.sum() > 0 and len(np.unique(y_test[test_known])) == 2:
                probs = self.predict_head(head, x_test[test_known]).prob
                metrics[head] = summary(y_test[test_known], probs)
        train_part, x_train = parts["train"]
        self.card_ = {
            "version": "",
            "created_at": datetime.now(UTC).isoformat(),
            "algorithm": config.algorithm,
            "params": booster_params(config),
            "categorical": config.categorical,
            "calibration": CROSS_FIT_NOTE.format(k=CROSS_FIT_FOLDS, order=split.kind)
            if config.cross_fit
            else "held out: the rows after the trees' own",
            "feature_spec": spec_hash(),
            "features": list(self.model_features_),
            "protected_features_included": config.include_protected,
            "heads": dict(HEAD_MEANINGS),
            "training_data": {
                "description": data_description,
                "fingerprint": fingerprint(x_train, train_part.outcomes.converted),
                "rows": len(data.raw),
                "split": split.kind,
                "rows_per_head": rows,
            },
            "thresholds": asdict(config.policy),
            "metrics": metrics,
        }
        if searched is not None:
            self.card_["search"] = searched
        train_attrs = self.attributes_.encode(train_part.attribute_values, len(train_part.raw))
        self.card_["reference"] = reference(self, train_part.raw, train_attrs)
        return self

    def with_calibration(
        self, calibrators: dict[str, IsotonicCalibrator], card: dict[str, Any]
    ) -> LeadModel:
        """The same trees and encodings with other calibration maps and their card."""
        model = LeadModel(self.config, self.attributes)
        model.boosters_ = dict(self.boosters_)
        model.calibrators_ = calibrators
        model.encoding_ = self.encoding_
        model.attributes_ = self.attributes_
        model.model_features_ = self.model_features_
        model.card_ = dict(card)  # saving sets its version: never the source model's card
        return model

    def save(self, directory: Path) -> Path:
        """Write the artifact atomically; the card then carries the content-hash version."""
        meta = {
            "calibrators": {h: c.to_dict() for h, c in self.calibrators_.items()},
            "encoding": self.encoding_.to_dict(),
            "attributes": {
                "numeric": list(self.attributes_.numeric),
                "categorical": list(self.attributes_.categorical),
                "vocab": {k: list(v) for k, v in self.attributes_.vocab.items()},
                "kinds": dict(self.attributes_.kinds),
            },
            "model_features": list(self.model_features_),
        }
        write_artifact(directory, self.boosters_, meta, self.card_)
        return directory

    @classmethod
    def load(cls, directory: Path) -> LeadModel:
        """Load an artifact, refusing one built for another feature spec or altered on disk."""
        boosters, meta, card = read_artifact(directory)
        attrs = meta["attributes"]
        learned = AttributeSpec(
            tuple(attrs["numeric"]),
            tuple(attrs["categorical"]),
            {k: tuple(v) for k, v in attrs["vocab"].items()},
            dict(attrs.get("kinds", {})),  # artifacts before typed attributes: all numbers
        )
        try:
            threads = int(card["params"]["num_threads"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelArtifactError(f"model {directory} has no training parameters") from exc
        model = cls(
            ModelConfig(num_threads=threads),
            AttributeSpec(learned.numeric, learned.categorical, kinds=learned.kinds),
        )
        model.boosters_ = boosters
        model.calibrators_ = {
            h: IsotonicCalibrator.from_dict(c) for h, c in meta["calibrators"].items()
        }
        model.encoding_ = SourceEncoding.from_dict(meta["encoding"])
        model.attributes_ = learned
        model.model_features_ = tuple(meta["model_features"])
        model.card_ = card
        return model


def train(
    data: TrainingInput,
    config: ModelConfig,
    attributes: AttributeSpec | None = None,
    *,
    data_description: str = "",
) -> LeadModel:
    """`LeadModel(config, attributes).fit(data)`: the one-call form the pipelines use."""
    return LeadModel(config, attributes).fit(data, data_description=data_description)
