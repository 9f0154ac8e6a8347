"""The HTML report: one self-contained page (inline CSS, JS, SVG and data; opens offline).

``render_report(report)`` is the entry point; ``svg`` draws the charts and ``page`` lays
out the sections. ``style.css`` and ``report.js`` are inlined into every page.
"""

from __future__ import annotations

import os
from pathlib import Path

from ...reporting import Report
from .page import render_report


def write_html(report: Report, path: str | Path) -> int:
    """Write the page to ``path`` atomically (a reader never sees half a page); returns its size in bytes."""
    path = Path(path)
    data = render_report(report).encode("utf-8")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return len(data)


__all__ = ["render_report", "write_html"]
