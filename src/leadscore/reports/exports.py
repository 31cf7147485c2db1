"""Writers of the leads list as files: CSV, XLSX, JSONL and Parquet, one chunk of rows at a time."""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Literal

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import xlsxwriter  # type: ignore[import-untyped]

Kind = Literal["text", "score", "percent", "bool", "currency", "points", "datetime"]
Format = Literal["csv", "xlsx", "jsonl", "parquet"]
FORMATS: Final[tuple[Format, ...]] = ("csv", "xlsx", "jsonl", "parquet")
MEDIA_TYPES: Final[dict[str, str]] = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "jsonl": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
}
#: Bytes read from a finished file per chunk of the response body.
FILE_CHUNK: Final = 256 * 1024
#: Day 0 of Excel's serial dates (so that 1 is 1900-01-01 with its leap-year bug), in UTC.
EXCEL_EPOCH: Final = datetime(1899, 12, 30, tzinfo=UTC)
ONE_DAY: Final = timedelta(days=1)
#: A spreadsheet runs a cell beginning with one of these as a formula (CSV injection).
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Column:
    """One column of an export: the list's field, its heading, its type and its width."""

    field: str
    heading: str
    kind: Kind
    width: float


COLUMNS: Final = (
    Column("lead_id", "Lead ID", "text", 18),
    Column("name", "Name", "text", 24),
    Column("email", "Email", "text", 30),
    Column("source", "Source", "text", 13),
    Column("ml_score", "Score", "score", 8),
    Column("classification", "Class", "text", 8),
    Column("ml_confidence", "Confidence", "percent", 11),
    Column("qualification_needed", "Qualify", "bool", 9),
    Column("expected_commission", "Expected commission", "currency", 14),
    Column("change_points", "Change (points)", "points", 10),
    Column("scored_at", "Scored (UTC)", "datetime", 17),
    Column("top_question", "Ask next", "text", 40),
    Column("reasons", "Top reasons", "text", 60),
    Column("model_version", "Model version", "text", 22),
)


def flat(lead: dict[str, Any]) -> list[Any]:
    """A list item as one row of cells: the question's text and the reasons' texts joined."""
    question = lead["top_question"]
    return [
        lead["lead_id"], lead["name"], lead["email"], lead["source"], lead["ml_score"],
        lead["classification"], lead["ml_confidence"], lead["qualification_needed"],
        lead["expected_commission"], lead["change_points"], lead["scored_at"],
        question["question"] if question else None,
        "; ".join(r["text"] for r in lead["reasons"]) or None, lead["model_version"],
    ]  # fmt: skip


#: The columns whose cells are text (checked for formulas) and the true/false one, by index.
_TEXT: Final = tuple(k for k, column in enumerate(COLUMNS) if column.kind == "text")
_BOOL: Final = tuple(k for k, column in enumerate(COLUMNS) if column.kind == "bool")


def _csv_row(row: list[Any]) -> list[Any]:
    """A row as text a spreadsheet opens as data: booleans as true/false, no formula run
    (None is written empty by the csv module itself)."""
    for k in _TEXT:
        value = row[k]
        if value and value.startswith(_FORMULA_START):
            row[k] = "'" + value
    for k in _BOOL:
        if row[k] is not None:
            row[k] = "true" if row[k] else "false"
    return row


def csv_header() -> bytes:
    """The CSV's first line: the list's field names (what an integrator re-imports by)."""
    return csv_rows([[column.field for column in COLUMNS]], header=True)


def csv_rows(rows: Sequence[list[Any]], header: bool = False) -> bytes:
    """Rows as CSV (RFC 4180, CRLF) in UTF-8."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerows(rows if header else [_csv_row(row) for row in rows])
    return buffer.getvalue().encode()


async def csv_body(chunks: AsyncIterator[list[dict[str, Any]]]) -> AsyncIterator[bytes]:
    """The CSV as it is read: the header with a BOM (Excel then reads UTF-8), then a chunk
    of rows per chunk of leads."""
    yield b"\xef\xbb\xbf" + csv_header()
    async for chunk in chunks:
        yield csv_rows([flat(lead) for lead in chunk])


def jsonl_rows(chunk: Sequence[dict[str, Any]]) -> bytes:
    """One JSON object per line: each lead exactly as the list shows it."""
    return b"".join(orjson.dumps(lead) + b"\n" for lead in chunk)


class XlsxSheet:
    """A workbook written row by row in XlsxWriter's constant-memory mode: typed cells, a
    frozen header, number formats, an autofilter and set widths."""

    def __init__(self, path: Path, title: str) -> None:
        self.workbook = xlsxwriter.Workbook(
            str(path),
            {"constant_memory": True, "remove_timezone": True, "strings_to_formulas": False,
             "strings_to_numbers": False, "strings_to_urls": False},
        )  # fmt: skip
        self.workbook.set_properties({"title": title, "comments": "LeadScore export"})
        self.sheet = self.workbook.add_worksheet("Leads")
        header = self.workbook.add_format({"bold": True, "bg_color": "#1F3A5F",
                                           "font_color": "#FFFFFF", "text_wrap": True,
                                           "valign": "top", "border": 1})  # fmt: skip
        self.formats = {
            "score": self.workbook.add_format({"num_format": "0.0"}),
            "percent": self.workbook.add_format({"num_format": "0.0%"}),
            "currency": self.workbook.add_format({"num_format": "$#,##0"}),
            "points": self.workbook.add_format({"num_format": "+0.0;-0.0;0.0"}),
            "datetime": self.workbook.add_format({"num_format": "yyyy-mm-dd hh:mm"}),
        }
        # Widths come first: constant-memory mode writes them before the first row.
        for index, column in enumerate(COLUMNS):
            self.sheet.set_column(index, index, column.width)
        self.sheet.set_row(0, 30)
        for index, column in enumerate(COLUMNS):
            self.sheet.write_string(0, index, column.heading, header)
        self.sheet.freeze_panes(1, 0)
        self.rows = 0

    def write(self, chunk: Sequence[dict[str, Any]]) -> None:
        """Append a chunk of leads, one typed cell per column (text is never a formula)."""
        sheet, formats = self.sheet, self.formats
        text, boolean, number = sheet.write_string, sheet.write_boolean, sheet.write_number
        kinds = [column.kind for column in COLUMNS]
        for lead in chunk:
            self.rows += 1
            row = self.rows
            for index, value in enumerate(flat(lead)):
                if value is None:
                    continue
                kind = kinds[index]
                if kind == "text":
                    text(row, index, value)
                elif kind == "bool":
                    boolean(row, index, value)
                elif kind == "datetime":
                    # Excel's serial day number, in UTC (the heading says so).
                    days = (datetime.fromisoformat(value) - EXCEL_EPOCH) / ONE_DAY
                    number(row, index, days, formats[kind])
                else:
                    number(row, index, value, formats[kind])

    def close(self) -> None:
        """Set the autofilter over every row written and finish the file."""
        self.sheet.autofilter(0, 0, max(self.rows, 1), len(COLUMNS) - 1)
        self.workbook.close()


PARQUET_SCHEMA: Final = pa.schema(
    [
        ("lead_id", pa.string()), ("name", pa.string()), ("email", pa.string()),
        ("source", pa.string()), ("ml_score", pa.float64()), ("classification", pa.string()),
        ("ml_confidence", pa.float64()), ("qualification_needed", pa.bool_()),
        ("expected_commission", pa.float64()), ("change_points", pa.float64()),
        ("scored_at", pa.timestamp("us", tz="UTC")), ("top_question", pa.string()),
        ("reasons", pa.string()), ("model_version", pa.string()),
    ]
)  # fmt: skip


class ParquetFile:
    """A Parquet file written a row group per chunk of leads, with typed columns."""

    def __init__(self, path: Path) -> None:
        self.writer = pq.ParquetWriter(str(path), PARQUET_SCHEMA, compression="zstd")

    def write(self, chunk: Sequence[dict[str, Any]]) -> None:
        """Append a chunk as one row group."""
        columns: list[list[Any]] = [[] for _ in COLUMNS]
        for lead in chunk:
            for cells, column, value in zip(columns, COLUMNS, flat(lead), strict=True):
                if column.kind == "datetime" and value is not None:
                    value = datetime.fromisoformat(value)
                cells.append(value)
        self.writer.write_table(pa.Table.from_arrays(columns, schema=PARQUET_SCHEMA))

    def close(self) -> None:
        """Finish the file (its footer)."""
        self.writer.close()


def scratch_file(suffix: str) -> Path:
    """A new empty file in the system's temporary directory, for a file built before it is sent."""
    handle, name = tempfile.mkstemp(prefix="leadscore-export-", suffix=suffix)
    os.close(handle)
    return Path(name)
