"""The ``suspicious-perfect`` finding."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..common import Rule, _r
from ..finding import CodeInfo, Finding

if TYPE_CHECKING:
    from ..engine import AuditOptions, RunAudit, _Stats

INFO = CodeInfo(
    "suspicious-perfect",
    "warning",
    "Near-perfect validation scores.",
    "Validation accuracy >= --perfect, ROC AUC of exactly 1 (every positive outscores every negative), R2 >= --perfect, or a logged validation loss "
    "<= 1e-6, most suspicious in the first epochs.",
    "Real tasks are rarely solved perfectly; a perfect score early in training usually means the label "
    "leaked into the inputs or the validation rows are training rows.",
    "A genuinely easy task (a toy data set), or a validation set too small to show errors.",
    "Look for target leakage in the features and overlap between splits; confirm on a fresh held-out set.",
)


def detect(ra: RunAudit, o: AuditOptions) -> Iterator[Finding]:
    n = len(ra.stats)
    hits: list[tuple[_Stats, str, float]] = []
    for st in ra.stats:
        if st.accuracy is not None and st.accuracy >= o.perfect:
            hits.append((st, "accuracy", st.accuracy))
        elif st.auc is not None:
            hits.append((st, "roc_auc", st.auc))
        elif st.r2 is not None and st.r2 >= o.perfect:
            hits.append((st, "r2", st.r2))
        else:
            for key, value in st.checkpoint.logged.items():
                k = key.lower()
                if "val" in k and "loss" in k and math.isfinite(value) and value <= 1e-6:
                    hits.append((st, key, value))
                    break
    if not hits:
        return
    first, what, value = hits[0]
    position = ra.stats.index(first) + 1
    early = position <= max(1, n // 5)
    yield Finding(
        "suspicious-perfect",
        "warning",
        ra.run.name,
        first.checkpoint.name,
        f"validation {what} {value:.4f} at epoch {first.checkpoint.epoch} "
        f"(checkpoint {position} of {n}{', early in training' if early else ''}); {len(hits)} checkpoint(s) near-perfect",
        {
            "first_epoch": first.checkpoint.epoch,
            "metric": what,
            "value": _r(value, 6),
            "early": early,
            "checkpoints": [s.checkpoint.name for s, _, _ in hits],
        },
    )


RULE = Rule(INFO, detect, order=50)
