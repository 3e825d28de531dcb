"""CSV downloads that staff open in a spreadsheet (the audit log, the decision log).

A cell whose text starts with = + - @ (or a tab or carriage return) would be read as a formula
by Excel or LibreOffice: it is written with a leading apostrophe, so it shows as text.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterable, Sequence
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_cell(value: Any) -> str:
    """A value as CSV text a spreadsheet shows as text: times ISO 8601, dicts as JSON, None empty."""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dict):
        value = json.dumps(value, sort_keys=True, ensure_ascii=False)
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in FORMULA_STARTS else text


def rows_csv(columns: Sequence[str], rows: Iterable[Any]) -> str:
    """A header of ``columns``, then each row's attributes of those names (CRLF lines, as RFC 4180)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([spreadsheet_cell(getattr(row, column)) for column in columns])
    return out.getvalue()
