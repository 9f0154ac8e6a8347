"""The HTML report: one self-contained page (inline CSS, JS, SVG and data; opens offline).

``render_report(report)`` is the entry point; ``svg`` draws the charts and ``page`` lays
out the sections. ``style.css`` and ``report.js`` are inlined into every page.
"""

from __future__ import annotations

from pathlib import Path

from ...reporting import Report
from ...store.safeio import write_atomic
from .page import render_report


def write_html(report: Report, path: str | Path) -> int:
    """Write the page to ``path`` atomically (a reader never sees half a page); returns its size in bytes."""
    path = Path(path)
    data = render_report(report).encode("utf-8")
    write_atomic(path, data)  # an exclusive temporary; never onto a device or through a link
    return len(data)


__all__ = ["render_report", "write_html"]
