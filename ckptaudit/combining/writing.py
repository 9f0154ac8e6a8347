"""Writing an adopted combination into its run as a new, ordinary checkpoint.

The folder is written as the recorder writes one (a hidden ``.NAME.<8 hex>.tmp`` folder,
fsynced, renamed into place), so a reader never sees half of it. Its meta.json records
``kind`` (``ensemble`` or ``weight-average``), ``members`` (checkpoint names and how often
each counts) and the ``combine`` decision; its epoch and step are the last member's, so the
curves place it where its newest member ends. ``rank``, ``pick``, ``check``, ``report`` and
``prune`` then read it like any checkpoint.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from ..store.reader import CHECKPOINTS_DIR, META_FILE, Checkpoint
from ..store.runwriter import _fsync_dir, write_json_atomic, write_predictions


def member_records(checkpoints: Sequence[Checkpoint], members: Sequence[int]) -> list[dict[str, Any]]:
    """``[{"checkpoint": NAME, "count": n}]`` in epoch order, from member indices."""
    counts = np.bincount(np.asarray(members, dtype=np.int64), minlength=len(checkpoints))
    return [{"checkpoint": checkpoints[i].name, "count": int(counts[i])} for i in np.flatnonzero(counts)]


def write_combined(
    run_path: Path,
    name: str,
    kind: str,
    members: Sequence[Checkpoint],
    records: list[dict[str, Any]],
    decision: Mapping[str, Any],
    val: Mapping[str, Any] | None = None,
    files: Mapping[str, Path] | None = None,
) -> Path:
    """Write checkpoint ``name`` (error if it exists) holding ``val`` arrays (``target``,
    ``output``, ``ids``, ``input_hash``) and/or the ``files`` moved in (name -> temporary
    path); returns its folder."""
    checkpoints = Path(run_path) / CHECKPOINTS_DIR
    final = checkpoints / name
    if os.path.lexists(final):
        raise UsageError(f"{final} already exists: remove it or combine under another metric", final)
    last = max(members, key=lambda c: c.order_key)
    meta: dict[str, Any] = {"epoch": last.epoch, "kind": kind, "members": records, "combine": dict(decision)}
    if last.step is not None:
        meta["step"] = last.step
    temp = checkpoints / f".{name}.{secrets.token_hex(4)}.tmp"
    temp.mkdir()
    try:
        if val is not None:
            write_predictions(temp / "val.npz", val["target"], val["output"], val.get("ids"), input_hash=val.get("input_hash"))
        for fname, src in (files or {}).items():
            shutil.move(str(src), temp / fname)
        write_json_atomic(temp / META_FILE, meta)
        os.rename(temp, final)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    _fsync_dir(checkpoints)
    return final
