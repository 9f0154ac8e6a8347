"""JSON: the document's records, exactly as the command's docs define them."""

from __future__ import annotations

import json
import math
from typing import Any

from . import Document


def _clean(value: Any) -> Any:
    # NOTE: JSON has no NaN or Infinity; a number that is not finite becomes null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


#: encoder pieces joined at a time
_PIECES = 8192


def render(doc: Document) -> str:
    """Indented JSON ending in a newline (what ``json.dumps(indent=2, default=str)`` gives)."""
    # NOTE: indented JSON goes through the json module's Python encoder, whose thousands of
    # small pieces json.dumps holds in one list before joining them: 38 MiB for the 5 MB
    # document of 20,000 checkpoints (issue 21). Joined a batch at a time, the same text.
    pieces: list[str] = []
    batch: list[str] = []
    for piece in json.JSONEncoder(indent=2, default=str).iterencode(_clean(doc.records)):
        batch.append(piece)
        if len(batch) == _PIECES:
            pieces.append("".join(batch))
            batch.clear()
    pieces.append("".join(batch))
    pieces.append("\n")
    return "".join(pieces)
