"""A minimal progress bar on stderr, silent when stderr is not a terminal.

Kept dependency-free so the CLI's start-up stays fast and CI logs stay clean.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


def progress_bar(label: str, stream: TextIO | None = None, min_seconds: float = 0.5) -> Callable[[int, int], None] | None:
    """A ``callback(done, total)`` drawing a bar, or None when ``stream`` is not a tty.

    The bar first appears after ``min_seconds`` so quick commands print nothing.
    """
    out = stream if stream is not None else sys.stderr
    if not out.isatty():
        return None
    start = time.monotonic()
    last = [0.0]

    def update(done: int, total: int) -> None:
        now = time.monotonic()
        if now - start < min_seconds and done < total:
            return
        if now - last[0] < 0.1 and done < total:
            return
        last[0] = now
        width = 30
        filled = int(width * done / total) if total else width
        out.write(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        if done >= total:
            out.write("\r" + " " * (len(label) + width + 24) + "\r")
        out.flush()

    return update
