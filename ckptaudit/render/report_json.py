"""The report as JSON (``ckptaudit report -o report.json``): each run's verdict, as the API's
:meth:`~ckptaudit.verdict.Verdict.to_json` writes it, so a script reads the very numbers the
page and the CLI show."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def write_json(report: Any, path: str | Path) -> int:
    """Write ``report`` (a :class:`~ckptaudit.reporting.Report`) to ``path`` atomically;
    returns its size in bytes."""
    path = Path(path)
    data = (report.to_json(indent=2) + "\n").encode("utf-8")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return len(data)
