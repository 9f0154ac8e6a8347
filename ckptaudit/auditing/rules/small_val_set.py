"""The ``small-val-set`` finding."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from ..common import Rule
from ..finding import CodeInfo, Finding

if TYPE_CHECKING:
    from ..engine import AuditOptions, RunAudit

INFO = CodeInfo(
    "small-val-set",
    "warning",
    "The validation set, or its rarest class, is too small to separate checkpoints.",
    "Fewer than --min-rows validation rows, or fewer than --min-class-rows rows of the rarest class.",
    "With few rows one sample changes a metric by a large step, so differences between checkpoints are mostly noise.",
    "A deliberately small smoke-test run.",
    "Validate on more rows (or more of the rare class); use `rank --ci` to see the intervals.",
)


def detect(ra: RunAudit, o: AuditOptions) -> Iterator[Finding]:
    if ra.n_val == 0:
        return
    evidence: dict[str, object] = {"rows": ra.n_val, "min_rows": o.min_rows}
    reasons = []
    if ra.n_val < o.min_rows:
        reasons.append(f"{ra.n_val} validation rows (< {o.min_rows})")
    if ra.prevalence is not None:
        counts = np.rint(ra.prevalence * ra.n_val).astype(int)
        present = counts[counts > 0]
        rarest = int(present.min()) if present.size else 0
        evidence.update(rarest_class_rows=rarest, min_class_rows=o.min_class_rows)
        if rarest < o.min_class_rows:
            reasons.append(f"the rarest class has {rarest} rows (< {o.min_class_rows})")
    if reasons:
        yield Finding(
            "small-val-set",
            "warning",
            ra.run.name,
            None,
            f"{'; '.join(reasons)}: one row moves {ra.spec.text} by a large step",
            evidence,
        )


RULE = Rule(INFO, detect, order=100)
