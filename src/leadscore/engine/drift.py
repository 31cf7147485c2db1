"""Population stability: how far the leads being scored now have moved from the leads a model
was trained on, per feature and for the score, as the population stability index (PSI)."""

from __future__ import annotations

import math
from typing import Any, Final, Protocol

import numpy as np

from leadscore.engine.attributes import ATTRIBUTE_PREFIX, AttributeSpec
from leadscore.engine.features import FEATURE_NAMES, SourceEncoding, transform
from leadscore.engine.raw import FloatArray, RawBatch

QUANTILES: Final = tuple(q / 10 for q in range(1, 10))
SCORE_EDGES: Final = tuple(float(x) for x in range(10, 100, 10))
FLOOR: Final = 1e-4  # an empty bin counts as this share, so the index stays finite
#: Conventional reading: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 major shift.
DEFAULT_THRESHOLD: Final = 0.25


def _shares(values: FloatArray, edges: FloatArray) -> list[float]:
    """Share of values per bin between the edges, plus a last bin for missing values."""
    missing = np.isnan(values)
    counts = np.bincount(
        np.searchsorted(edges, values[~missing], side="right"), minlength=len(edges) + 1
    ).astype(np.float64)
    counts = np.append(counts, missing.sum())
    return [round(float(c) / max(len(values), 1), 6) for c in counts]


def psi(expected: list[float], actual: list[float]) -> float:
    """Σ (actual − expected) · ln(actual / expected) over the bins."""
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        e, a = max(e, FLOOR), max(a, FLOOR)
        total += (a - e) * math.log(a / e)
    return round(total, 6)


class DriftModel(Protocol):
    """What drift needs of a model (`engine.model.LeadModel` has it; drift imports no model)."""

    @property
    def encoding_(self) -> SourceEncoding:
        """The source encoding the model's features were built with."""
        ...

    @property
    def attributes_(self) -> AttributeSpec:
        """The team's fields the model reads, with their learned vocabularies."""
        ...

    def conversion_probability(self, features: FloatArray, attrs: FloatArray | None) -> FloatArray:
        """Calibrated P(conversion) of feature rows (plus encoded custom attributes)."""
        ...


def _scores(model: DriftModel, features: FloatArray, attrs: FloatArray | None) -> FloatArray:
    return np.asarray(model.conversion_probability(features, attrs) * 100.0, dtype=np.float64)


def _columns(
    model: DriftModel, features: FloatArray, attrs: FloatArray | None
) -> list[tuple[str, FloatArray, bool]]:
    """Every column drift watches: the 28 features, then the team's fields as
    `attributes.<name>` (categories binned by their learned code)."""
    columns = [(name, features[:, j], False) for j, name in enumerate(FEATURE_NAMES)]
    spec = model.attributes_
    if attrs is not None:
        columns += [
            (ATTRIBUTE_PREFIX + name, attrs[:, j], name in spec.categorical)
            for j, name in enumerate(spec.names)
        ]
    return columns


def reference(model: DriftModel, raw: RawBatch, attrs: FloatArray | None) -> dict[str, Any]:
    """What the training leads looked like: per-feature decile bins and the score histogram."""
    features = transform(raw, model.encoding_)
    result: dict[str, Any] = {"rows": len(raw), "features": {}}
    for name, column, categorical in _columns(model, features, attrs):
        if categorical:  # one bin per learned category; unseen ones fall with the missing
            learned = len(model.attributes_.vocab.get(name[len(ATTRIBUTE_PREFIX) :], ()))
            edges = np.arange(1, learned, dtype=np.float64) - 0.5
        else:
            known = column[~np.isnan(column)]
            edges = np.unique(np.quantile(known, QUANTILES)) if len(known) else np.array([])
        result["features"][name] = {
            "edges": edges.tolist(),  # exact: a rounded edge would move tied values
            "shares": _shares(column, edges),
        }
    edges = np.array(SCORE_EDGES)
    shares = _shares(_scores(model, features, attrs), edges)
    result["score"] = {"edges": list(SCORE_EDGES), "shares": shares}
    return result


def drift_report(
    model: DriftModel,
    ref: dict[str, Any],
    raw: RawBatch,
    attrs: FloatArray | None,
    threshold: float = DEFAULT_THRESHOLD,
) -> dict[str, Any]:
    """PSI of the live leads against the reference, per feature and team field and for the
    score."""
    features = transform(raw, model.encoding_)
    per_feature = {}
    for name, column, _ in _columns(model, features, attrs):
        expected = ref["features"].get(name)
        if expected is None:  # a model from before its fields were tracked
            continue
        actual = _shares(column, np.array(expected["edges"], dtype=np.float64))
        per_feature[name] = psi(expected["shares"], actual)
    score_actual = _shares(_scores(model, features, attrs), np.array(ref["score"]["edges"]))
    score_psi = psi(ref["score"]["shares"], score_actual)
    drifted = sorted((n for n, v in per_feature.items() if v > threshold),
                     key=lambda n: -per_feature[n])  # fmt: skip
    return {
        "rows": len(raw),
        "reference_rows": ref["rows"],
        "threshold": threshold,
        "score_psi": score_psi,
        "feature_psi": dict(sorted(per_feature.items(), key=lambda kv: -kv[1])),
        "drifted_features": drifted,
        "alert": score_psi > threshold or bool(drifted),
    }
