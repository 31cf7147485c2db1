"""Train, calibrate, save and load the three-head lead model, with its card of held-out metrics."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import lightgbm as lgb
import numpy as np

from leadscore.engine.drift import reference
from leadscore.engine.errors import ModelArtifactError, TrainingDataError
from leadscore.engine.fastpath import SingleRowPredictor
from leadscore.engine.features import (
    FEATURE_INDEX,
    FEATURE_NAMES,
    PROTECTED,
    SourceEncoding,
    spec_hash,
    transform,
)
from leadscore.engine.metrics import IsotonicCalibrator, summary
from leadscore.engine.raw import FloatArray, RawBatch
from leadscore.engine.schema import LeadData

if TYPE_CHECKING:
    import polars as pl

HEADS: Final = ("conversion", "closing", "timeline")
MIN_CLASS_EXAMPLES: Final = 40
ATTRIBUTE_PREFIX: Final = "attributes."
MAX_CATEGORIES: Final = 100
Algorithm = Literal["lightgbm", "random_forest"]
NDArrayInt = np.ndarray[Any, np.dtype[np.int64]]


@dataclass(frozen=True)
class ScoringPolicy:
    """Thresholds a team can tune; stored in the card so a score can be reproduced."""

    hot: float = 70.0
    warm: float = 40.0
    escalation_confidence: float = 0.85
    commission_rate: float = 0.06


@dataclass(frozen=True)
class ModelConfig:
    """Training parameters; the defaults keep exact explanations under a tenth of a millisecond."""

    algorithm: Algorithm = "lightgbm"
    max_trees: int = 400
    learning_rate: float = 0.12
    num_leaves: int = 8
    max_depth: int = 3
    min_data_in_leaf: int = 40
    num_threads: int = 2
    seed: int = 0
    include_protected: bool = False
    calibration_share: float = 0.15
    test_share: float = 0.15
    policy: ScoringPolicy = field(default_factory=ScoringPolicy)


@dataclass(frozen=True)
class AttributeSpec:
    """A team's custom CRM columns used beside the 28 features; vocabularies learned at training."""

    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    vocab: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        """Matrix column order: numeric first, then categorical."""
        return self.numeric + self.categorical

    def learn(self, values: Mapping[str, Sequence[object]]) -> AttributeSpec:
        """Keep the most frequent categories of each categorical attribute, in a stable order."""
        vocab: dict[str, tuple[str, ...]] = {}
        for name in self.categorical:
            counts: dict[str, int] = {}
            for value in values[name]:
                key = _category(value)
                if key is not None:
                    counts[key] = counts.get(key, 0) + 1
            ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            vocab[name] = tuple(k for k, _ in ranked[:MAX_CATEGORIES])
        return AttributeSpec(self.numeric, self.categorical, vocab)

    def encode(self, values: Mapping[str, Sequence[object]], n: int) -> FloatArray:
        """(n, k) matrix: numbers as floats, categories as vocabulary codes, unknown → NaN."""
        out = np.full((n, len(self.names)), np.nan)
        for j, name in enumerate(self.numeric):
            out[:, j] = [_number(v) for v in values.get(name, [None] * n)]
        for j, name in enumerate(self.categorical, start=len(self.numeric)):
            codes = {c: float(i) for i, c in enumerate(self.vocab.get(name, ()))}
            out[:, j] = [
                codes.get(_category(v) or "", np.nan) for v in values.get(name, [None] * n)
            ]
        return out


def _number(value: object) -> float:
    """A custom numeric field as float; text that is not a number is missing, not zero."""
    if value is None:
        return np.nan
    if isinstance(value, bool | int | float):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        return np.nan


def _category(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip().lower()
    return text or None


def attributes_from_leads(leads: Sequence[LeadData], spec: AttributeSpec) -> FloatArray:
    """The attribute matrix for pydantic leads."""
    values = {name: [lead.attributes.get(name) for lead in leads] for name in spec.names}
    return spec.encode(values, len(leads))


def attributes_from_frame(df: pl.DataFrame, spec: AttributeSpec) -> FloatArray:
    """The attribute matrix for a canonical frame (`attributes.<name>` columns)."""
    values = {
        name: df[ATTRIBUTE_PREFIX + name].to_list()
        for name in spec.names
        if ATTRIBUTE_PREFIX + name in df.columns
    }
    return spec.encode(values, df.height)


@dataclass(frozen=True)
class HeadPrediction:
    """Raw margins and calibrated probabilities of one head; contributions when asked."""

    raw: FloatArray
    prob: FloatArray
    contributions: FloatArray | None = None


@dataclass
class LeadModel:
    """A trained artifact: three boosters, their calibrators, encodings and the card."""

    boosters: dict[str, lgb.Booster]
    calibrators: dict[str, IsotonicCalibrator]
    encoding: SourceEncoding
    attributes: AttributeSpec
    model_features: tuple[str, ...]
    card: dict[str, Any]
    num_threads: int = 2
    _fast: dict[str, SingleRowPredictor] = field(default_factory=dict, repr=False)

    @property
    def version(self) -> str:
        """Content hash of the artifact: the same model always has the same version."""
        return str(self.card["version"])

    @property
    def feature_columns(self) -> NDArrayInt:
        """Indices of the 28 features the boosters were trained on."""
        return np.array(
            [FEATURE_INDEX[n] for n in self.model_features if n in FEATURE_INDEX], dtype=np.int64
        )

    def matrix(self, features: FloatArray, attributes: FloatArray | None) -> FloatArray:
        """Model input: the trained subset of the 28 features, then the custom attributes."""
        base = features[:, self.feature_columns]
        if not self.attributes.names:
            return np.ascontiguousarray(base)
        extra = (
            attributes
            if attributes is not None
            else np.full((features.shape[0], len(self.attributes.names)), np.nan)
        )
        return np.ascontiguousarray(np.hstack([base, extra]))

    def _single(self, head: str) -> SingleRowPredictor:
        """The fast one-row predictor of a head, made on first use."""
        predictor = self._fast.get(head)
        if predictor is None:
            predictor = SingleRowPredictor(self.boosters[head])
            self._fast[head] = predictor
        return predictor

    def predict_head(self, head: str, x: FloatArray, explain: bool = False) -> HeadPrediction:
        """Calibrated probability of one head; exact TreeSHAP contributions when `explain`."""
        if x.shape[0] == 1:
            single = self._single(head)
            if explain:
                contrib = single.contributions(x[0])[None, :]
                raw = contrib.sum(axis=1)
            else:
                contrib = None
                raw = np.array([single.raw(x[0])])
            return HeadPrediction(raw, self.calibrators[head].predict(raw), contrib)
        booster = self.boosters[head]
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
        return HeadPrediction(raw, self.calibrators[head].predict(raw), contrib)

    def conversion_probability(self, features: FloatArray, attrs: FloatArray | None) -> FloatArray:
        """Calibrated P(conversion) of feature rows: what drift compares over time."""
        return self.predict_head("conversion", self.matrix(features, attrs)).prob

    def save(self, directory: Path) -> Path:
        """Write the artifact atomically: a reader never sees a half-written model."""
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=directory.parent))
        for head, booster in self.boosters.items():
            booster.save_model(str(staging / f"{head}.lgb"))
        meta = {
            "calibrators": {h: c.to_dict() for h, c in self.calibrators.items()},
            "encoding": self.encoding.to_dict(),
            "attributes": {
                "numeric": list(self.attributes.numeric),
                "categorical": list(self.attributes.categorical),
                "vocab": {k: list(v) for k, v in self.attributes.vocab.items()},
            },
            "model_features": list(self.model_features),
        }
        (staging / "meta.json").write_text(json.dumps(meta, sort_keys=True))
        self.card["version"] = _content_hash(staging)
        (staging / "card.json").write_text(json.dumps(self.card, indent=2, sort_keys=True))
        if directory.exists():
            shutil.rmtree(directory)
        staging.rename(directory)
        return directory

    @classmethod
    def load(cls, directory: Path) -> LeadModel:
        """Load an artifact, refusing one built for another feature spec or altered on disk."""
        card_path = directory / "card.json"
        if not card_path.is_file():
            raise ModelArtifactError(f"{directory} is not a model artifact (no card.json)")
        card = json.loads(card_path.read_text())
        if card.get("feature_spec") != spec_hash():
            raise ModelArtifactError(
                f"model {directory} was trained on feature spec {card.get('feature_spec')}, "
                f"this build computes {spec_hash()}: retrain it"
            )
        if _content_hash(directory) != card.get("version"):
            raise ModelArtifactError(f"model {directory} does not match its card's version hash")
        meta = json.loads((directory / "meta.json").read_text())
        boosters = {
            head: lgb.Booster(model_file=str(directory / f"{head}.lgb"))
            for head in meta["calibrators"]
        }
        attrs = meta["attributes"]
        return cls(
            boosters=boosters,
            calibrators={
                h: IsotonicCalibrator.from_dict(c) for h, c in meta["calibrators"].items()
            },
            encoding=SourceEncoding.from_dict(meta["encoding"]),
            attributes=AttributeSpec(
                tuple(attrs["numeric"]),
                tuple(attrs["categorical"]),
                {k: tuple(v) for k, v in attrs["vocab"].items()},
            ),
            model_features=tuple(meta["model_features"]),
            card=card,
            num_threads=int(card["params"]["num_threads"]),
        )


def _content_hash(directory: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(directory.iterdir()):
        if path.name != "card.json":
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


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


def _params(config: ModelConfig) -> dict[str, Any]:
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


def _fit_booster(
    x: FloatArray, y: FloatArray, categorical: list[int], config: ModelConfig
) -> lgb.Booster:
    """Gradient boosting with early stopping on the latest tenth of the training rows."""
    params = _params(config)
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


def _check_labels(head: str, y: FloatArray) -> None:
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


def train(
    data: TrainingInput,
    config: ModelConfig,
    attributes: AttributeSpec = AttributeSpec(),
    *,
    data_description: str = "",
) -> LeadModel:
    """Fit trees on the oldest rows, calibrate on the next, report metrics on the newest."""
    _check_labels("conversion", data.outcomes.converted)
    split = split_rows(data.created_us, data.outcomes.converted, config)
    train_rows = data.take(split.train)
    attributes = attributes.learn(train_rows.attribute_values)
    encoding = SourceEncoding.fit(train_rows.raw.sources, train_rows.outcomes.converted)
    used = tuple(n for n in FEATURE_NAMES if config.include_protected or n not in PROTECTED)
    model = LeadModel({}, {}, encoding, attributes, used + attributes.names, {}, config.num_threads)
    categorical = list(range(len(used) + len(attributes.numeric), len(model.model_features)))

    def matrix(part: TrainingInput) -> FloatArray:
        feats = transform(part.raw, encoding)
        attrs = attributes.encode(part.attribute_values, len(part.raw))
        return model.matrix(feats, attrs)

    subsets = {
        "train": train_rows,
        "calibration": data.take(split.calibration),
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
        booster = _fit_booster(parts["train"][1][known], y_train[known], categorical, config)
        model.boosters[head] = booster
        cal_part, x_cal = parts["calibration"]
        y_cal = cal_part.outcomes.labels(head)
        cal_known = ~np.isnan(y_cal)
        raw_cal = np.asarray(booster.predict(x_cal[cal_known], raw_score=True), dtype=np.float64)
        model.calibrators[head] = IsotonicCalibrator.fit(raw_cal, y_cal[cal_known])
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
            probs = model.predict_head(head, x_test[test_known]).prob
            metrics[head] = summary(y_test[test_known], probs)
    model.card = {
        "version": "",
        "created_at": datetime.now(UTC).isoformat(),
        "algorithm": config.algorithm,
        "params": _params(config),
        "feature_spec": spec_hash(),
        "features": list(model.model_features),
        "protected_features_included": config.include_protected,
        "heads": {
            "conversion": "P(lead converts)",
            "closing": "P(closes | converts); reported as P(closes) = conversion × this",
            "timeline": "P(closes within the stated timeline | closes)",
        },
        "training_data": {
            "description": data_description,
            "fingerprint": fingerprint(parts["train"][1], parts["train"][0].outcomes.converted),
            "rows": len(data.raw),
            "split": split.kind,
            "rows_per_head": rows,
        },
        "thresholds": asdict(config.policy),
        "metrics": metrics,
    }
    train_part = parts["train"][0]
    train_attrs = attributes.encode(train_part.attribute_values, len(train_part.raw))
    model.card["reference"] = reference(model, train_part.raw, train_attrs)
    return model
