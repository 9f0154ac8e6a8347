"""The ``train-val-overlap`` finding."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from ..common import Rule, _r
from ..finding import CodeInfo, Finding

if TYPE_CHECKING:
    from ..engine import AuditOptions, RunAudit

INFO = CodeInfo(
    "train-val-overlap",
    "error",
    "Validation rows also appear in the training predictions.",
    "Sample ids (array 'id') or input content hashes (array 'input_hash') present in both train.npz and val.npz.",
    "Rows the model trained on score better than unseen rows, so validation metrics are inflated and the "
    "checkpoint that memorised most looks best.",
    "Ids that are per-split row numbers rather than global sample ids (both splits then start at 0); exact "
    "duplicate inputs that occur naturally in the data.",
    "De-duplicate the split (group-aware splitting for near-duplicates), record global ids, and re-run.",
)


def detect(ra: RunAudit, o: AuditOptions) -> Iterator[Finding]:
    run = ra.run
    if ra.overlap is None:  # no checkpoint with both splits, or the pass could not read one of them
        return
    ckpt = next((c for c in run.checkpoints if c.has_split("train") and c.has_split("val")), None)
    if ckpt is None:
        return
    val, train = ra.overlap
    flagged = np.zeros(val.n, dtype=bool)
    by: list[str] = []
    for key, label in (("ids", "id"), ("input_hash", "input_hash")):
        tv, vv = getattr(train, key), getattr(val, key)
        if tv is None or vv is None:
            continue
        hit = np.isin(vv, tv)
        if hit.any():
            by.append(label)
            flagged |= hit
    if not flagged.any():
        return
    count = int(flagged.sum())
    examples = (val.ids[flagged][:5] if val.ids is not None else val.input_hash[flagged][:5]).tolist()  # type: ignore[index]
    yield Finding(
        "train-val-overlap",
        "error",
        run.name,
        None,
        f"{count} of {val.n} validation rows ({count / val.n:.1%}) also appear in train.npz (matched by {' and '.join(by)})",
        {"count": count, "fraction": _r(count / val.n), "matched_by": by, "examples": examples, "checked_at": ckpt.name},
    )


RULE = Rule(INFO, detect, order=20)
