"""Column mappings: turn someone else's CRM export into LeadScore's canonical training frame."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final, Literal

import polars as pl
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from leadscore.engine.attributes import AttributeSpec, Kind
from leadscore.engine.errors import MappingError
from leadscore.engine.frame import ATTRIBUTE_PREFIX, LEAD_COLUMNS
from leadscore.engine.io import canonicalise, read_frame

OUTCOME_TARGETS: dict[str, str] = {
    "conversion": "converted",
    "closing": "closed",
    "timeline": "closed_within_timeline",
}
MAPPABLE_FIELDS = frozenset(LEAD_COLUMNS) - {"lead_id", "created_at", "as_of"}


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReadOptions(_Spec):
    """How to read the file: CSV delimiter and the texts that mean 'no value'."""

    delimiter: str = Field(default=",", min_length=1, max_length=1)
    null_values: list[str] | None = None


class OutcomeColumn(_Spec):
    """Which column holds an outcome, and which of its values mean yes."""

    column: str
    positive: list[str | int | float | bool] = Field(min_length=1)


class AttributeColumns(_Spec):
    """Extra columns the model may use beside the 28 features."""

    numeric: list[str] = Field(default_factory=list)
    categorical: list[str] = Field(default_factory=list)
    boolean: list[str] = Field(default_factory=list)  # yes/no, true/false, 1/0
    date: list[str] = Field(default_factory=list)  # ISO dates or date columns

    def names(self) -> list[str]:
        """Every attribute column, in the order the model takes them."""
        return self.numeric + self.boolean + self.date + self.categorical


class ColumnMapping(_Spec):
    """A mapping file: canonical field ← the export's column, outcomes, attributes, drops."""

    read: ReadOptions = Field(default_factory=ReadOptions)
    lead_id: str | None = None
    created_at: str | None = None
    outcomes: dict[Literal["conversion", "closing", "timeline"], OutcomeColumn]
    fields: dict[str, str] = Field(default_factory=dict)
    attributes: AttributeColumns = Field(default_factory=AttributeColumns)
    drop: list[str] = Field(default_factory=list)
    #: The export's column that orders its rows in time (a date), for time-ordered work …
    order_by: str | None = None
    #: … or `time` when the file's rows are already in time order (no date column).
    row_order: Literal["time"] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ColumnMapping:
        """Conversion is required, fields must exist, and a dropped column is never used."""
        if "conversion" not in self.outcomes:
            raise ValueError("outcomes.conversion is required")
        if self.order_by is not None and self.row_order is not None:
            raise ValueError("order_by and row_order both say how rows are ordered: give one")
        unknown = sorted(set(self.fields) - MAPPABLE_FIELDS)
        if unknown:
            raise ValueError(f"unknown canonical field(s) {unknown} in fields")
        dropped = set(self.drop) & set(self.used_columns())
        if dropped:
            raise ValueError(f"column(s) {sorted(dropped)} are both dropped and used")
        return self

    def used_columns(self) -> list[str]:
        """Every export column the mapping reads."""
        cols = [o.column for o in self.outcomes.values()]
        cols += list(self.fields.values())
        cols += self.attributes.names()
        cols += [c for c in (self.lead_id, self.created_at, self.order_by) if c is not None]
        return cols

    @property
    def time_ordered(self) -> bool:
        """Whether the mapping says how its rows follow each other in time."""
        return self.order_by is not None or self.row_order == "time"

    @property
    def attribute_spec(self) -> AttributeSpec:
        """The attributes as the model sees them."""
        a = self.attributes
        kinds: dict[str, Kind] = dict.fromkeys(a.boolean, "boolean")
        kinds |= dict.fromkeys(a.date, "date")
        return AttributeSpec(tuple(a.numeric + a.boolean + a.date), tuple(a.categorical),
                             kinds=kinds)  # fmt: skip


#: A mapping is a page of YAML: anything larger or deeper is not one, and is refused unread.
MAX_MAPPING_BYTES: Final = 64 * 1024
MAX_MAPPING_DEPTH: Final = 10


def load_mapping(path: Path) -> ColumnMapping:
    """Read and validate a mapping file; any problem is one clear line."""
    if not path.is_file():
        raise MappingError(f"mapping {path}: no such file")
    return parse_mapping(path.read_bytes(), f"mapping {path}")


def parse_mapping(raw: bytes, source: str) -> ColumnMapping:
    """Validate a mapping's bytes (`source` names it in errors: an upload's name, not a server
    path); bounded in size and depth and without aliases, so no YAML can cost much to read."""
    if len(raw) > MAX_MAPPING_BYTES:
        raise MappingError(f"{source}: {len(raw):,} bytes; a mapping has at most "
                           f"{MAX_MAPPING_BYTES:,}")  # fmt: skip
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MappingError(
            f"{source}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
        ) from exc
    try:
        _check_shape(text, source)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MappingError(f"{source}: not valid YAML ({exc.__class__.__name__})") from exc
    if not isinstance(data, dict):
        raise MappingError(f"{source}: expected a YAML mapping at the top level")
    return mapping_from_document(data, source)


def mapping_from_document(data: dict[str, Any], source: str) -> ColumnMapping:
    """Validate a mapping already parsed (YAML, or JSON sent to the API); the first problem
    names its place in the document."""
    try:
        return ColumnMapping.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "mapping"
        raise MappingError(f"{source}: {where}: {first['msg']}") from exc


def _check_shape(text: str, source: str) -> None:
    """Refuse aliases (a few lines of them expand to billions of nodes) and nesting deeper
    than any mapping needs, from the parser's events, before anything is built."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            raise MappingError(f"{source}: YAML aliases (*{event.anchor}) are not accepted")
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_MAPPING_DEPTH:
                raise MappingError(f"{source}: nested deeper than {MAX_MAPPING_DEPTH} levels")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _positive(series: pl.Series, positive: list[Any]) -> pl.Series:
    """True where the value is one of the positive values (compared as lower-case text)."""
    wanted = sorted({str(v).lower() for v in positive})
    text = pl.col("v").cast(pl.String).str.to_lowercase()
    labels = (
        series.alias("v")
        .to_frame()
        .select(pl.when(pl.col("v").is_null()).then(None).otherwise(text.is_in(wanted)))
    )
    return labels.to_series()


def apply_mapping(df: pl.DataFrame, mapping: ColumnMapping) -> pl.DataFrame:
    """The export as a canonical frame with outcome and `attributes.*` columns."""
    missing = sorted(set(mapping.used_columns()) - set(df.columns))
    if missing:
        raise MappingError(
            f"column(s) {missing} named in the mapping are not in the file "
            f"(it has {len(df.columns)} columns: {', '.join(df.columns[:12])}…)"
        )
    df = df.drop([c for c in mapping.drop if c in df.columns])
    if mapping.order_by is not None:
        df = sort_by_time(df, mapping.order_by)
    out: dict[str, pl.Series] = {}
    if mapping.lead_id:
        out["lead_id"] = df[mapping.lead_id].cast(pl.String)
    else:
        out["lead_id"] = pl.Series([f"row_{i + 1}" for i in range(df.height)])
    if mapping.created_at:
        out["created_at"] = df[mapping.created_at]
    for field, column in mapping.fields.items():
        out[field] = df[column]
    for head, outcome in mapping.outcomes.items():
        out[OUTCOME_TARGETS[head]] = _positive(df[outcome.column], outcome.positive)
    for name in mapping.attributes.names():
        out[ATTRIBUTE_PREFIX + name] = df[name]
    return canonicalise(pl.DataFrame(out))


def sort_by_time(df: pl.DataFrame, column: str) -> pl.DataFrame:
    """The rows in the order of a date column (stable: ties keep the file's order); a column
    that is not dates, or has gaps, is named."""
    if column not in df.columns:
        raise MappingError(f"order_by: column {column!r} is not in the file")
    values = df[column]
    if values.dtype == pl.String:
        values = values.str.to_datetime(strict=False, time_zone="UTC")
    if not values.dtype.is_temporal() and not values.dtype.is_numeric():
        raise MappingError(f"order_by: column {column!r} holds {values.dtype}, not dates")
    unreadable = values.null_count()
    if unreadable:
        raise MappingError(
            f"order_by: column {column!r} has {unreadable} rows without a readable date"
        )
    return (
        df.with_columns(values.alias("__order"))
        .sort("__order", maintain_order=True)
        .drop("__order")
    )


def load_training_frame(path: Path, mapping: ColumnMapping | None) -> pl.DataFrame:
    """Read a training file, mapped when a mapping is given, else already canonical."""
    if mapping is None:
        return canonicalise(read_frame(path))
    options = mapping.read.model_dump()
    return apply_mapping(read_frame(path, options), mapping)
