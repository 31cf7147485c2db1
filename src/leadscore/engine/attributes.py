"""A team's custom CRM fields beside the 28 features: vocabularies learned, values encoded."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Final, Literal

import numpy as np

from leadscore.engine.raw import FloatArray
from leadscore.engine.schema import LeadData

if TYPE_CHECKING:
    import polars as pl

ATTRIBUTE_PREFIX: Final = "attributes."
MAX_CATEGORIES: Final = 100
#: Leads of prior weight behind a category's learned conversion rate.
SMOOTHING: Final = 20.0
#: How a numeric column reads its values: a number, a yes/no (1/0), or a date (its day).
Kind = Literal["number", "boolean", "date"]
_YES: Final = frozenset({"true", "yes", "y", "1", "t", "on"})
_NO: Final = frozenset({"false", "no", "n", "0", "f", "off"})
_DAY_SECONDS: Final = 86_400.0


@dataclass(frozen=True)
class AttributeSpec:
    """A team's custom CRM columns used beside the 28 features; vocabularies learned at training."""

    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    vocab: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: Numeric columns that are yes/no or dates (the rest are numbers).
    kinds: Mapping[str, Kind] = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        """Matrix column order: numeric first, then categorical."""
        return self.numeric + self.categorical

    @classmethod
    def inferred(cls, values: Mapping[str, Sequence[object]]) -> AttributeSpec:
        """Fields nobody typed (a CRM connection's `attributes.<name>`): a number when every
        value given is one, else a category; a field without any value is left out."""
        numeric: list[str] = []
        categorical: list[str] = []
        for name, column in values.items():
            given = [v for v in column if v is not None and str(v).strip()]
            if not given:
                continue
            is_number = all(not math.isnan(_number(v)) for v in given)
            (numeric if is_number else categorical).append(name)
        return cls(tuple(numeric), tuple(categorical))

    def learn(
        self, values: Mapping[str, Sequence[object]], labels: FloatArray | None = None
    ) -> AttributeSpec:
        """Keep the most frequent categories of each categorical attribute, in a stable order;
        with `labels`, ordered by their smoothed conversion rate (an ordered encoding)."""
        vocab: dict[str, tuple[str, ...]] = {}
        prior = float(np.nanmean(labels)) if labels is not None and len(labels) else 0.0
        for name in self.categorical:
            counts: dict[str, int] = {}
            hits: dict[str, float] = {}
            for i, value in enumerate(values[name]):
                key = _category(value)
                if key is not None:
                    counts[key] = counts.get(key, 0) + 1
                    if labels is not None and labels[i] == 1:
                        hits[key] = hits.get(key, 0.0) + 1.0
            ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_CATEGORIES]
            if labels is not None:
                # A rare category's rate is pulled to the overall one: it is mostly noise.
                rates = {k: (hits.get(k, 0.0) + SMOOTHING * prior) / (n + SMOOTHING)
                         for k, n in ranked}  # fmt: skip
                ranked = sorted(ranked, key=lambda kv: (rates[kv[0]], kv[0]))
            vocab[name] = tuple(k for k, _ in ranked)
        return AttributeSpec(self.numeric, self.categorical, vocab, self.kinds)

    def describe(self, name: str, value: float) -> str:
        """A reason's label in the team's words: the field's own name and its value, a
        category by its name rather than its code."""
        if math.isnan(value):
            return f"{name}: unknown"
        kind = self.kinds.get(name, "number")
        if kind == "boolean":
            return f"{name}: {'yes' if value else 'no'}"
        if kind == "date":
            return f"{name}: {datetime.fromtimestamp(value * _DAY_SECONDS, UTC).date().isoformat()}"
        if name in self.categorical:
            vocab = self.vocab.get(name, ())
            code = int(value)
            return f"{name}: {vocab[code] if 0 <= code < len(vocab) else 'other'}"
        return f"{name}: {value:g}"

    def encode(self, values: Mapping[str, Sequence[object]], n: int) -> FloatArray:
        """(n, k) matrix: numbers as floats, categories as vocabulary codes, unknown → NaN."""
        out = np.full((n, len(self.names)), np.nan)
        for j, name in enumerate(self.numeric):
            read = _READERS[self.kinds.get(name, "number")]
            out[:, j] = [read(v) for v in values.get(name, [None] * n)]
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


def _boolean(value: object) -> float:
    """Yes/no as 1/0 (true, yes, 1, …); anything else is missing."""
    if isinstance(value, bool | int | float) and value in (0, 1):
        return float(value)
    text = str(value).strip().lower() if value is not None else ""
    return 1.0 if text in _YES else 0.0 if text in _NO else np.nan


def _date(value: object) -> float:
    """A date as its day number (days since 1970-01-01, UTC); unreadable is missing."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day, tzinfo=UTC)
    elif isinstance(value, str) and value.strip():
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return np.nan
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    else:
        return np.nan
    return math.floor(moment.timestamp() / _DAY_SECONDS)


_READERS: Final = {"number": _number, "boolean": _boolean, "date": _date}


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
