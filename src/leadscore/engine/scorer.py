"""Leads → scores: probability, class, confidence, signed reasons and commission, one or many."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Final

import numpy as np
from numpy.typing import NDArray

from leadscore.engine.attributes import attributes_from_frame, attributes_from_leads
from leadscore.engine.features import FEATURE_INDEX, FEATURES, transform
from leadscore.engine.model import LeadModel, ScoringPolicy
from leadscore.engine.qualification import Qualification, Qualifier, Question
from leadscore.engine.raw import FloatArray, raw_from_leads
from leadscore.engine.schema import Lead

if TYPE_CHECKING:
    import polars as pl

CLASSES: Final = ("cold", "warm", "hot")
_PRICE_COLUMN: Final = FEATURE_INDEX["budget_log_price"]
_SPECS: Final = {f.name: f for f in FEATURES}


@dataclass(frozen=True, slots=True)
class Reason:
    """One signed contribution to a lead's score, in score points, with a sentence for agents."""

    feature: str
    group: str
    value: float | None
    points: float
    text: str


@dataclass(frozen=True, slots=True)
class Commission:
    """What the deal is worth to the team, and that worth weighted by the chance it closes."""

    estimated_sale_price: float | None
    commission_rate: float
    estimated_commission: float | None
    expected_commission: float | None


@dataclass(frozen=True, slots=True)
class ScoreResult:
    """The engine's answer for one lead; the API contract's response is built from it."""

    lead_id: str
    ml_score: float
    ml_confidence: float
    classification: str
    conversion: float
    closing: float | None
    timeline_accuracy: float | None
    reasons: tuple[Reason, ...]
    group_points: dict[str, float]
    commission: Commission | None
    escalation_recommended: bool  # = qualification.needed
    model_version: str
    processing_time_ms: float
    evidence: float
    qualification: Qualification

    @property
    def feature_importance(self) -> dict[str, float]:
        """The lead's own top contributions, signed, in score points."""
        return {r.feature: r.points for r in self.reasons}


@dataclass(frozen=True)
class ScoreArrays:
    """Vectorised scores for n leads; rows of it become `ScoreResult`s or a file's columns."""

    score: FloatArray
    confidence: FloatArray
    class_index: np.ndarray[tuple[int], np.dtype[np.int64]]
    conversion: FloatArray
    closing: FloatArray
    timeline: FloatArray
    price: FloatArray
    points: FloatArray | None
    model_features: tuple[str, ...]
    model_matrix: FloatArray
    known: NDArray[np.bool_]
    evidence: FloatArray
    ask_next: list[tuple[Question, ...]] | None = None


class Scorer:
    """Scores with one model under one policy; safe to share across threads (read-only).

    Examples
    --------
    >>> from leadscore.engine.io import frame_to_leads
    >>> from leadscore.engine.attributes import AttributeSpec
    >>> from leadscore.engine.model import ModelConfig, train
    >>> from leadscore.engine.training import TrainingInput
    >>> from leadscore.engine.synthetic import generate
    >>> history = generate(3_000, seed=1)
    >>> data = TrainingInput.from_frame(history, AttributeSpec())
    >>> model = train(data, ModelConfig(num_threads=1))
    >>> result = Scorer(model).score(frame_to_leads(history.head(1))[0])
    >>> result.classification in {"hot", "warm", "cold"} and 0 < result.ml_score < 100
    True
    """

    def __init__(
        self, model: LeadModel, policy: ScoringPolicy | None = None, top_k: int = 5
    ) -> None:
        self.model = model
        self.policy = policy or ScoringPolicy(**model.card_.get("thresholds", {}))
        self.top_k = top_k
        # Each model column's group, once: custom attributes form a group of their own.
        groups = [
            _SPECS[name].group if name in _SPECS else "custom" for name in model.model_features_
        ]
        self._group_names = tuple(dict.fromkeys(groups))
        self._group_index = np.array([self._group_names.index(g) for g in groups], dtype=np.int64)
        self.qualifier = Qualifier(model)

    def score(
        self,
        lead: Lead,
        *,
        explain: bool = True,
        commission: bool = True,
        as_of: datetime | None = None,
        commission_rate: float | None = None,
        policy: ScoringPolicy | None = None,
        ask: bool = True,
    ) -> ScoreResult:
        """Score one lead."""
        return self.score_many(
            [lead],
            explain=explain,
            commission=commission,
            as_of=as_of,
            commission_rate=commission_rate,
            policy=policy,
            ask=ask,
        )[0]

    def score_many(
        self,
        leads: Sequence[Lead],
        *,
        explain: bool = True,
        commission: bool = True,
        as_of: datetime | None = None,
        commission_rate: float | None = None,
        policy: ScoringPolicy | None = None,
        ask: bool = True,
    ) -> list[ScoreResult]:
        """Score many leads in one vectorised pass; a team's own policy (thresholds,
        commission rate) may stand in for the model's; `ask` adds `ask_next`."""
        started = time.perf_counter()
        policy = policy or self.policy
        data = [lead.lead_data for lead in leads]
        features = transform(raw_from_leads(data, as_of), self.model.encoding_)
        attrs = attributes_from_leads(data, self.model.attributes_) if data else None
        arrays = self.arrays(features, attrs, explain=explain, policy=policy, ask=ask)
        return self._results(
            arrays, [lead.lead_id for lead in leads], commission, started, commission_rate, policy
        )

    def predict_with_features(
        self,
        features: FloatArray,
        lead_ids: Sequence[str],
        attributes: FloatArray | None = None,
        *,
        explain: bool = True,
        commission: bool = True,
    ) -> list[ScoreResult]:
        """Score pre-extracted (n, 28) feature vectors, as produced by `features.transform`."""
        started = time.perf_counter()
        if features.ndim != 2 or features.shape[1] != len(FEATURES):
            raise ValueError(f"features must have shape (n, {len(FEATURES)})")
        if len(lead_ids) != features.shape[0]:
            raise ValueError("one lead id per feature row is needed")
        arrays = self.arrays(features, attributes, explain=explain)
        return self._results(arrays, list(lead_ids), commission, started)

    def arrays(
        self,
        features: FloatArray,
        attributes: FloatArray | None,
        *,
        explain: bool,
        policy: ScoringPolicy | None = None,
        ask: bool = False,
    ) -> ScoreArrays:
        """The vectorised core every entry point shares; `ask` adds the questions to ask."""
        model = self.model
        policy = policy or self.policy
        x = model.matrix(features, attributes)
        conv = model.predict_head("conversion", x, explain=explain)
        closing = np.full(len(x), np.nan)
        timeline = np.full(len(x), np.nan)
        if "closing" in model.boosters_:
            closing = conv.prob * model.predict_head("closing", x).prob
        if "timeline" in model.boosters_:
            timeline = model.predict_head("timeline", x).prob
        score = np.round(conv.prob * 100.0, 2)
        class_index = np.where(score >= policy.hot, 2, np.where(score >= policy.warm, 1, 0)).astype(
            np.int64
        )
        # Confidence = calibrated chance the class's claim comes true: hot claims a
        # conversion, warm and cold claim none yet.
        confidence = np.round(np.where(class_index == 2, conv.prob, 1.0 - conv.prob), 4).astype(
            np.float64
        )
        points = None
        if conv.contributions is not None:
            points = self._points(conv.contributions, conv.raw, conv.prob)
        known = self.qualifier.known(x)
        questions = None
        if ask:
            questions = self.qualifier.ask_next(
                x, known, lambda rows: model.predict_head("conversion", rows).prob
            )
        return ScoreArrays(
            score=score,
            confidence=confidence,
            class_index=class_index,
            conversion=conv.prob,
            closing=closing,
            timeline=timeline,
            price=np.exp(features[:, _PRICE_COLUMN]),
            points=points,
            model_features=model.model_features_,
            model_matrix=x,
            known=known,
            evidence=self.qualifier.evidence(known),
            ask_next=questions,
        )

    def _points(self, contrib: FloatArray, raw: FloatArray, prob: FloatArray) -> FloatArray:
        """Turn margin contributions into score points that add up to score − base score."""
        calibrator = self.model.calibrators_["conversion"]
        base_raw = contrib[:, -1]
        base_prob = calibrator.predict(base_raw)
        delta_raw = raw - base_raw
        moved = np.abs(delta_raw) > 1e-9
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = (prob - base_prob) / delta_raw
        if not moved.all():
            # At the base score the ratio is 0/0: use the calibration curve's local slope.
            scale = np.where(moved, scale, calibrator.slope(raw))
        return contrib[:, :-1] * (scale * 100.0)[:, None]

    def _results(
        self,
        arrays: ScoreArrays,
        lead_ids: list[str],
        commission: bool,
        started: float,
        commission_rate: float | None = None,
        policy: ScoringPolicy | None = None,
    ) -> list[ScoreResult]:
        per_lead_ms = round((time.perf_counter() - started) * 1000.0 / max(len(lead_ids), 1), 3)
        version = self.model.version_
        policy = policy or self.policy
        rate = policy.commission_rate if commission_rate is None else commission_rate
        escalate = policy.escalation_confidence
        # Python lists once: per-element numpy indexing costs more than the arithmetic here.
        prices = arrays.price.tolist()
        closings = arrays.closing.tolist()
        timelines = arrays.timeline.tolist()
        scores = arrays.score.tolist()
        confidences = arrays.confidence.tolist()
        classes = arrays.class_index.tolist()
        conversions = arrays.conversion.tolist()
        evidence = arrays.evidence.tolist()
        thin = policy.min_evidence
        explained = arrays.points is not None
        results = []
        for i, lead_id in enumerate(lead_ids):
            price, closing, timeline = prices[i], closings[i], timelines[i]
            known_price = not math.isnan(price)
            fee = round(price * rate, 2) if known_price else None
            why: tuple[str, ...] = ("low_confidence",) if confidences[i] < escalate else ()
            if evidence[i] < thin:
                why += ("thin_data",)
            asks = arrays.ask_next[i] if arrays.ask_next is not None else ()
            results.append(
                ScoreResult(
                    lead_id=lead_id,
                    ml_score=scores[i],
                    ml_confidence=confidences[i],
                    classification=CLASSES[classes[i]],
                    conversion=round(conversions[i], 4),
                    closing=None if math.isnan(closing) else round(closing, 4),
                    timeline_accuracy=None if math.isnan(timeline) else round(timeline, 4),
                    reasons=self._reasons(arrays, i) if explained else (),
                    group_points=self._groups(arrays, i) if explained else {},
                    commission=Commission(
                        estimated_sale_price=round(price, 2) if known_price else None,
                        commission_rate=rate,
                        estimated_commission=fee,
                        expected_commission=(
                            round(fee * closing, 2)
                            if fee is not None and not math.isnan(closing)
                            else None
                        ),
                    )
                    if commission
                    else None,
                    escalation_recommended=bool(why),
                    model_version=version,
                    processing_time_ms=per_lead_ms,
                    evidence=evidence[i],
                    qualification=Qualification(bool(why), why, asks),
                )
            )
        return results

    def _groups(self, arrays: ScoreArrays, i: int) -> dict[str, float]:
        """Points summed over every feature of each group; custom attributes form their own."""
        assert arrays.points is not None
        totals = np.bincount(
            self._group_index, weights=arrays.points[i], minlength=len(self._group_names)
        )
        return dict(zip(self._group_names, np.round(totals, 2).tolist(), strict=True))

    def _reasons(self, arrays: ScoreArrays, i: int) -> tuple[Reason, ...]:
        assert arrays.points is not None
        # What the lead did and said: a missing fact is a question (`ask_next`), not a reason.
        row = np.where(arrays.known[i], arrays.points[i], 0.0)
        top = np.argsort(-np.abs(row), kind="stable")[: self.top_k].tolist()
        points_row = row.tolist()
        values_row = arrays.model_matrix[i].tolist()
        reasons = []
        for j in top:
            points = points_row[j]
            if points == 0.0:
                continue
            name = arrays.model_features[j]
            value = values_row[j]
            missing = math.isnan(value)
            spec = _SPECS.get(name)
            if spec is not None:
                label, group = spec.describe(value), spec.group
            else:
                label, group = self.model.attributes_.describe(name, value), "custom"
            reasons.append(
                Reason(
                    feature=name,
                    group=group,
                    value=None if missing else value,
                    points=round(points, 2),
                    text=f"{label}: {points:+.1f} points",
                )
            )
        return tuple(reasons)

    def score_frame(self, df: pl.DataFrame, *, explain: bool = False) -> pl.DataFrame:
        """Score a canonical frame, vectorised end to end; the file-scoring path."""
        import polars as pl

        from leadscore.engine.columnar import raw_from_frame

        features = transform(raw_from_frame(df), self.model.encoding_)
        attrs = attributes_from_frame(df, self.model.attributes_)
        a = self.arrays(features, attrs, explain=explain)
        rate = self.policy.commission_rate
        fee = a.price * rate
        columns: dict[str, object] = {
            "lead_id": df["lead_id"] if "lead_id" in df.columns else pl.int_range(df.height),
            "ml_score": a.score,
            "ml_confidence": a.confidence,
            "classification": np.array(CLASSES)[a.class_index],
            "p_conversion": np.round(a.conversion, 4),
            "p_closing": np.round(a.closing, 4),
            "p_timeline": np.round(a.timeline, 4),
            "evidence": a.evidence,
            "escalation_recommended": (a.confidence < self.policy.escalation_confidence)
            | (a.evidence < self.policy.min_evidence),
            "estimated_sale_price": np.round(a.price, 2),
            "expected_commission": np.round(fee * a.closing, 2),
            "model_version": self.model.version_,
        }
        out = pl.DataFrame(columns).with_columns(pl.col(pl.Float64).fill_nan(None))
        if a.points is not None:
            reasons = ["; ".join(r.text for r in self._reasons(a, i)) for i in range(df.height)]
            out = out.with_columns(pl.Series("reasons", reasons))
        return out
