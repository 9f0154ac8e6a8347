"""CSV with a header row; empty cells for missing values, full precision numbers.

Fields are quoted per RFC 4180 (a newline stays inside its field). A text cell that a
spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``, ``@``, TAB or CR)
is prefixed with ``'``, the usual guard against CSV formula injection; numbers are never
changed."""

from __future__ import annotations

import csv
import io
from typing import Any

from . import Document

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _field(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        value = ",".join(map(str, value))
    if isinstance(value, str) and len(value) > 1 and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def render(doc: Document) -> str:
    """RFC 4180 CSV text."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([_field(c) for c in doc.columns])
    for row in doc.rows:
        writer.writerow([_field(v) for v in row])
    return buf.getvalue()
