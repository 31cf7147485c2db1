"""An XLSX read back with the standard library (zipfile + XML): cells with their types."""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from xml.etree import ElementTree

NS = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
EPOCH = datetime(1899, 12, 30)


@dataclass
class Sheet:
    """The first worksheet: typed rows, number formats per cell, panes, autofilter, widths."""

    rows: list[list[Any]] = field(default_factory=list)
    formats: list[list[str | None]] = field(default_factory=list)
    frozen_rows: int = 0
    autofilter: str | None = None
    widths: list[float] = field(default_factory=list)


def _column(ref: str) -> int:
    letters = re.match(r"[A-Z]+", ref)
    assert letters is not None
    index = 0
    for char in letters.group():
        index = index * 26 + ord(char) - 64
    return index - 1


def read(body: bytes) -> Sheet:
    """Parse the workbook's first sheet; dates are numbers with a date format, made datetimes."""
    archive = zipfile.ZipFile(io.BytesIO(body))
    names = archive.namelist()
    strings: list[str] = []
    if "xl/sharedStrings.xml" in names:
        root = ElementTree.fromstring(archive.read("xl/sharedStrings.xml"))
        strings = ["".join(t.text or "" for t in si.iter(f"{{{NS['m']}}}t"))
                   for si in root.findall("m:si", NS)]  # fmt: skip
    styles = ElementTree.fromstring(archive.read("xl/styles.xml"))
    custom = {int(n.get("numFmtId", "0")): n.get("formatCode", "")
              for n in styles.iterfind("m:numFmts/m:numFmt", NS)}  # fmt: skip
    cell_formats = [custom.get(int(xf.get("numFmtId", "0")))
                    for xf in styles.iterfind("m:cellXfs/m:xf", NS)]  # fmt: skip
    sheet_xml = ElementTree.fromstring(archive.read("xl/worksheets/sheet1.xml"))
    sheet = Sheet()
    pane = sheet_xml.find("m:sheetViews/m:sheetView/m:pane", NS)
    if pane is not None and pane.get("state") == "frozen":
        sheet.frozen_rows = int(float(pane.get("ySplit", "0")))
    found = sheet_xml.find("m:autoFilter", NS)
    sheet.autofilter = None if found is None else found.get("ref")
    for col in sheet_xml.iterfind("m:cols/m:col", NS):
        span = int(col.get("max", "1")) - int(col.get("min", "1")) + 1
        sheet.widths += [float(col.get("width", "0"))] * span
    for row in sheet_xml.iterfind("m:sheetData/m:row", NS):
        values: list[Any] = []
        formats: list[str | None] = []
        for cell in row.findall("m:c", NS):
            index = _column(cell.get("r", "A"))
            while len(values) < index:
                values.append(None)
                formats.append(None)
            kind = cell.get("t", "n")
            raw = cell.findtext("m:v", default=None, namespaces=NS)
            style = cell_formats[int(cell.get("s", "0"))]
            value: Any
            if kind == "s":
                value = strings[int(raw or 0)]
            elif kind == "inlineStr":
                value = "".join(t.text or "" for t in cell.iter(f"{{{NS['m']}}}t"))
            elif kind == "b":
                value = raw == "1"
            elif kind == "str":
                value = raw
            else:
                value = float(raw) if raw is not None else None
                if value is not None and style is not None and "yy" in style:
                    value = EPOCH + timedelta(days=value)
            values.append(value)
            formats.append(style)
        sheet.rows.append(values)
        sheet.formats.append(formats)
    return sheet
