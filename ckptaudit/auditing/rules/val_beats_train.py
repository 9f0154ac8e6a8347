"""The ``val-beats-train`` finding."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from ..common import Rule, _better, _r
from ..finding import CodeInfo, Finding

if TYPE_CHECKING:
    from ..engine import AuditOptions, RunAudit

INFO = CodeInfo(
    "val-beats-train",
    "warning",
    "The validation metric beats the training metric on most checkpoints.",
    "On more than half of the checkpoints with train.npz, the validation value is better than the training "
    "value by more than --margin.",
    "A model is normally at least as good on the data it trained on; the reverse often means leakage or an "
    "evaluation bug (validation rows in training, a different preprocessing path).",
    "Dropout, augmentation or other regularisation active when the training predictions were recorded; a "
    "training metric averaged over the epoch while the model was still improving; an easier validation set.",
    "Record training predictions in eval mode on a fixed training subset, and check the split for leakage.",
)


def detect(ra: RunAudit, o: AuditOptions) -> Iterator[Finding]:
    pairs = [s for s in ra.stats if s.value is not None and s.train_value is not None]
    if len(pairs) < 2 or ra.val_changed:
        return
    beats = [s for s in pairs if _better(ra.spec, s.value, s.train_value, o.margin)]  # type: ignore[arg-type]
    if len(beats) * 2 <= len(pairs):
        return
    gaps = [s.value - s.train_value for s in beats]  # type: ignore[operator]
    yield Finding(
        "val-beats-train",
        "warning",
        ra.run.name,
        None,
        f"validation {ra.spec.text} beats training on {len(beats)} of {len(pairs)} checkpoints "
        f"(median gap {float(np.median(gaps)):+.4f})",
        {
            "metric": ra.spec.text,
            "checkpoints": len(pairs),
            "val_better": len(beats),
            "margin": o.margin,
            "median_gap": _r(float(np.median(gaps))),
            "per_epoch": [{"epoch": s.checkpoint.epoch, "train": _r(s.train_value), "val": _r(s.value)} for s in pairs],
        },
    )


RULE = Rule(INFO, detect, order=40)
