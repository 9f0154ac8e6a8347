"""The HTML report: one self-contained page (inline CSS, JS, SVG and data; opens offline).

``render_report(report)`` is the entry point; ``svg`` draws the charts and ``page`` lays
out the sections. ``style.css`` and ``report.js`` are inlined into every page.
"""

from __future__ import annotations

from pathlib import Path

from ...reporting import Report
from ...store.safeio import write_atomic
from .page import printable, render_parts, render_report


def write_html(report: Report, path: str | Path) -> int:
    """Write the page to ``path`` atomically (a reader never sees half a page); returns its size in bytes."""
    path = Path(path)
    # NOTE: encoded a section at a time: a sweep's page as one str (often 2 bytes a character)
    # was held three times over (the sections, their join, the page) before its bytes
    data = b"".join([printable(part).encode("utf-8") for part in render_parts(report)])
    write_atomic(path, data)  # an exclusive temporary; never onto a device or through a link
    return len(data)


__all__ = ["render_parts", "render_report", "write_html"]
