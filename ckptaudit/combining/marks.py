"""How views mark combined checkpoints and their members (rank's ``combined`` column, the
report's combination panel).

Combined checkpoints are the ones ``combine`` writes, named ``combined-*``; only their
meta.json is read (one small file each), so marking costs nothing on runs without them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..store.reader import Run
from ..store.runformat import COMBINED_PREFIX as PREFIX
from .ensembles import combination_of


def combination_marks(runs: Iterable[Run]) -> dict[tuple[str, str], str]:
    """(run name, checkpoint) -> a short mark: ``ensemble of 5`` / ``weight-average of 3`` on
    a combined checkpoint, ``member of combined-X[, combined-Y]`` on its members."""
    marks: dict[tuple[str, str], str] = {}
    member_of: dict[tuple[str, str], list[str]] = {}
    for run in runs:
        for ckpt in run.checkpoints:
            if not ckpt.name.startswith(PREFIX):
                continue
            combo = combination_of(ckpt)
            if combo is None:
                continue
            marks[(run.name, ckpt.name)] = f"{combo['kind']} of {len(combo['members'])}"
            for member in combo["members"]:
                member_of.setdefault((run.name, member), []).append(ckpt.name)
    for key, names in member_of.items():
        marks.setdefault(key, "member of " + ", ".join(names))
    return marks


def combination_records(checkpoints: Iterable[Any]) -> list[dict[str, Any]]:
    """What ``combine`` recorded in the meta.json of each combined checkpoint among
    ``checkpoints``: name, kind, members and the decision record (``combine``), for the
    report's panel (which shows these numbers; it computes none)."""
    import json

    out = []
    for ckpt in checkpoints:
        if not ckpt.name.startswith(PREFIX):
            continue
        try:
            meta = json.loads((ckpt.path / "meta.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(meta, dict) or not isinstance(meta.get("combine"), dict):
            continue
        out.append({"checkpoint": ckpt.name, "kind": meta.get("kind"), "members": meta.get("members") or [], **meta["combine"]})
    return out
