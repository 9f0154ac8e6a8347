"""CSV with a header row; empty cells for missing values, full precision numbers."""

from __future__ import annotations

import csv
import io

from . import Document


def render(doc: Document) -> str:
    """RFC 4180 CSV text."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(doc.columns)
    for row in doc.rows:
        writer.writerow(["" if v is None else (",".join(map(str, v)) if isinstance(v, (list, tuple)) else v) for v in row])
    return buf.getvalue()
