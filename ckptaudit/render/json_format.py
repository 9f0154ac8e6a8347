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


def render(doc: Document) -> str:
    """Indented JSON ending in a newline."""
    return json.dumps(_clean(doc.records), indent=2, default=str) + "\n"
