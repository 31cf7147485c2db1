"""Lead files in and out: CSV, Parquet and JSONL to the canonical frame, whole or in chunks."""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Final

import polars as pl

from leadscore.engine.errors import InvalidInputError
from leadscore.engine.frame import (
    ATTRIBUTE_PREFIX,
    INTERACTION_DTYPE,
    LEAD_COLUMNS,
    UTC_US,
    WEB_FIELDS,
)
from leadscore.engine.schema import Lead, LeadData

PARQUET_ROW_GROUP: Final = 65_536
FORMATS: Final = {".csv": "csv", ".parquet": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_JSON_INTERACTION: Final = pl.List(
    pl.Struct({**INTERACTION_DTYPE.to_schema(), "timestamp": pl.String})
)


def file_format(path: Path) -> str:
    """The format named by a file's extension, or a clear refusal."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InvalidInputError(
            f"{path.name}: unsupported file type {path.suffix!r} (use .csv, .parquet or .jsonl)"
        )
    return fmt


def leads_to_frame(leads: Sequence[Lead]) -> pl.DataFrame:
    """Pydantic leads as a canonical frame; attributes become `attributes.<name>` text columns."""
    rows: list[dict[str, Any]] = []
    attribute_names: dict[str, None] = {}
    for lead in leads:
        data = lead.lead_data.model_dump()
        web = data.pop("web_activity") or {}
        attributes = data.pop("attributes")
        row = {"lead_id": lead.lead_id, **data}
        row.update({f"web_activity.{k}": web.get(k) for k in WEB_FIELDS})
        for key, value in attributes.items():
            attribute_names[key] = None
            row[ATTRIBUTE_PREFIX + key] = None if value is None else str(value)
        rows.append(row)
    schema = {name: dtype for name, dtype in LEAD_COLUMNS.items() if name != "as_of"}
    schema |= {ATTRIBUTE_PREFIX + name: pl.String() for name in attribute_names}
    return pl.DataFrame(rows, schema=schema, orient="row" if not rows else None)


def frame_to_leads(df: pl.DataFrame) -> list[Lead]:
    """Canonical rows back to validated pydantic leads (the API's shape)."""
    fields = set(LeadData.model_fields) - {"web_activity", "attributes"}
    leads = []
    for row in df.to_dicts():
        data = {k: v for k, v in row.items() if k in fields and v is not None}
        web = {k: row.get(f"web_activity.{k}") for k in WEB_FIELDS}
        data["web_activity"] = {k: v for k, v in web.items() if v is not None}
        data["attributes"] = {
            k[len(ATTRIBUTE_PREFIX) :]: v for k, v in row.items() if k.startswith(ATTRIBUTE_PREFIX)
        }
        leads.append(Lead.model_validate({"lead_id": row["lead_id"], "lead_data": data}))
    return leads


def _flatten_nested(df: pl.DataFrame) -> pl.DataFrame:
    """Accept the API's nested shape: `lead_data`, `web_activity` and `attributes` structs."""
    if "lead_data" in df.columns and isinstance(df.schema["lead_data"], pl.Struct):
        df = df.unnest("lead_data")
    for struct_name in ("web_activity", "attributes"):
        if struct_name in df.columns and isinstance(df.schema[struct_name], pl.Struct):
            inner = df[struct_name].struct.unnest()
            inner = inner.rename({c: f"{struct_name}.{c}" for c in inner.columns})
            df = df.drop(struct_name).hstack(inner)
    return df


def _interactions(series: pl.Series) -> pl.Series:
    """Interaction lists from JSON text or nested values, with timestamps parsed as UTC."""
    if series.dtype == pl.String:
        series = series.str.json_decode(_JSON_INTERACTION)
    if series.dtype == pl.List(INTERACTION_DTYPE):
        return series
    inner = series.dtype.inner if isinstance(series.dtype, pl.List) else None
    if not isinstance(inner, pl.Struct):
        raise InvalidInputError("interaction_history must be a list of interaction objects")
    fields = {f.name for f in inner.fields}
    exprs = []
    for name, dtype in INTERACTION_DTYPE.to_schema().items():
        field = pl.element().struct.field(name) if name in fields else pl.lit(None)
        if name == "timestamp" and name in fields and inner.to_schema()[name] == pl.String:
            field = field.str.to_datetime(time_zone="UTC", time_unit="us")
        exprs.append(field.cast(dtype).alias(name))
    return series.list.eval(pl.struct(exprs)).cast(pl.List(INTERACTION_DTYPE))


def canonicalise(df: pl.DataFrame) -> pl.DataFrame:
    """Cast known columns to the canonical dtypes and add absent ones as nulls; keep the rest."""
    df = _flatten_nested(df)
    columns = []
    for name, dtype in LEAD_COLUMNS.items():
        if name not in df.columns:
            columns.append(pl.lit(None, dtype=dtype).alias(name))
        elif name == "interaction_history":
            columns.append(pl.lit(_interactions(df[name])).alias(name))
        elif dtype == UTC_US and df.schema[name] == pl.String:
            columns.append(pl.col(name).str.to_datetime(time_zone="UTC", time_unit="us"))
        elif dtype == UTC_US:
            columns.append(pl.col(name).dt.replace_time_zone("UTC").dt.cast_time_unit("us"))
        else:
            columns.append(pl.col(name).cast(dtype))
    extras = [c for c in df.columns if c not in LEAD_COLUMNS]
    try:
        return df.select(*columns, *extras)
    except (pl.exceptions.InvalidOperationError, pl.exceptions.ComputeError) as exc:
        raise InvalidInputError(f"a column does not hold the expected type: {exc}") from exc


def _csv_options(read_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """A mapping's `read` section as polars' CSV arguments (one reading for head and whole)."""
    options = read_options or {}
    return {"separator": options.get("delimiter", ","), "null_values": options.get("null_values")}


def read_frame(path: Path, read_options: Mapping[str, Any] | None = None) -> pl.DataFrame:
    """Read a whole file as it is (no canonicalisation): mappings rename columns first."""
    fmt = file_format(path)
    if not path.is_file():
        raise InvalidInputError(f"{path}: no such file")
    if fmt == "csv":
        return pl.read_csv(path, **_csv_options(read_options), infer_schema_length=None)
    if fmt == "parquet":
        return pl.read_parquet(path)
    return pl.read_ndjson(path, infer_schema_length=None)


def read_head(path: Path, rows: int, read_options: Mapping[str, Any] | None = None) -> pl.DataFrame:
    """The first `rows` rows of a file as they are, without reading the rest: enough to check
    its columns and types before a job reads it whole. Errors never name the path."""
    fmt = file_format(path)
    if fmt != "parquet":
        _utf8_first_line(path)
    if fmt == "csv":
        return pl.read_csv(
            path, **_csv_options(read_options), n_rows=rows, infer_schema_length=rows
        )
    if fmt == "parquet":
        return pl.scan_parquet(path).head(rows).collect()
    # polars reads past `n_rows` in JSONL and then refuses a type its inference did not see:
    # hand it those lines alone (at most 1 MiB each: a lead is a few KiB).
    with path.open("rb") as handle:
        lines = b"".join(handle.readline(1 << 20) for _ in range(rows))
    return pl.read_ndjson(io.BytesIO(lines), infer_schema_length=None)


def _utf8_first_line(path: Path, limit: int = 1 << 20) -> None:
    """Refuse a text file whose first line (a CSV's header) is not UTF-8: polars would read
    its column names with replacement characters, and a mapping would not find them."""
    with path.open("rb") as handle:
        start = handle.read(limit)
    line = start.split(b"\n", 1)[0]
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(
            f"the first line is not UTF-8 text (byte 0x{line[exc.start]:02x} at offset "
            f"{exc.start}): save the export as UTF-8"
        ) from exc


def scan_frame(path: Path) -> pl.LazyFrame:
    """A lazy scan of a lead file, for streaming in bounded memory."""
    fmt = file_format(path)
    if not path.is_file():
        raise InvalidInputError(f"{path}: no such file")
    if fmt == "csv":
        return pl.scan_csv(path, infer_schema_length=None)
    if fmt == "parquet":
        return pl.scan_parquet(path)
    return pl.scan_ndjson(path, infer_schema_length=None)


def iter_chunks(path: Path, chunk_size: int) -> Iterator[pl.DataFrame]:
    """Canonical frames of at most `chunk_size` rows, streamed from the file."""
    for chunk in scan_frame(path).collect_batches(chunk_size=chunk_size):
        yield canonicalise(chunk)


class FrameWriter:
    """Appends frames to one CSV, Parquet or JSONL file, so output never sits whole in memory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.format = file_format(path)
        self._handle: IO[bytes] | None = None
        self._parquet: Any = None

    def write(self, df: pl.DataFrame) -> None:
        """Append one chunk."""
        if self.format == "parquet":
            import pyarrow.parquet as pq

            table = df.to_arrow()
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(str(self.path), table.schema)
            # Small row groups let readers stream the file in bounded memory.
            self._parquet.write_table(table, row_group_size=PARQUET_ROW_GROUP)
            return
        first = self._handle is None
        if self._handle is None:
            self._handle = self.path.open("wb")
        if self.format == "csv":
            df.write_csv(self._handle, include_header=first)
        else:
            df.write_ndjson(self._handle)

    def close(self) -> None:
        """Flush and close the file."""
        if self._parquet is not None:
            self._parquet.close()
        if self._handle is not None:
            self._handle.close()

    def __enter__(self) -> FrameWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_frame(df: pl.DataFrame, path: Path) -> None:
    """Write a whole frame; nested interaction lists go to CSV as JSON text."""
    if file_format(path) == "csv" and "interaction_history" in df.columns:
        df = df.with_columns(
            pl.struct("interaction_history")
            .struct.json_encode()
            .str.strip_prefix('{"interaction_history":')
            .str.strip_suffix("}")
            .alias("interaction_history")
        )
    with FrameWriter(path) as writer:
        writer.write(df)
