"""The ``accuracy-paradox`` finding."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from ...metrics.spec import base_name
from ..common import Rule, _r
from ..finding import CodeInfo, Finding

if TYPE_CHECKING:
    from ...store.reader import Run
    from ..engine import AuditOptions, RunAudit, _Stats

INFO = CodeInfo(
    "accuracy-paradox",
    "warning/error",
    "High accuracy on imbalanced data that mostly reflects the majority class.",
    "The validation set is imbalanced (the majority class is at least --imbalance of it), the checkpoint "
    "that matters (the one being shipped, else run.json 'chosen', else the audit winner) has accuracy at or "
    "above the majority-class baseline, and it either removes less than --paradox-lift of the errors of "
    "always predicting the majority class, or recalls less than --paradox-recall of the rarest class.",
    "Accuracy rewards predicting the majority class: a fraud model at 98% accuracy can catch 12% of fraud. "
    "A checkpoint chosen by accuracy is then chosen for the wrong reason. Severity is error when the run's "
    "selected_by names accuracy, warning otherwise.",
    "A task where the majority class really is what matters, or a rare class that is deliberately ignored.",
    "Select by a metric that sees the rare class: recall:class=NAME, balanced_accuracy, f1, average_precision; "
    "re-pick with `ckptaudit pick --metric ...`.",
)


def _relies_on_accuracy(run: Run) -> bool:
    if run.selected_by is None:
        return False
    return base_name(run.selected_by.metric) in ("accuracy", "categorical_accuracy", "binary_accuracy")


def _focus(ra: RunAudit, o: AuditOptions) -> _Stats | None:
    """The checkpoint that matters: the one being shipped, else the one training chose,
    else the audit winner."""
    name = o.focus or ra.run.chosen
    if name is not None:
        for st in ra.stats:
            if st.checkpoint.name == name:
                return st
    return next((s for s in ra.stats if s.checkpoint is ra.winner), None)


def detect(ra: RunAudit, o: AuditOptions) -> Iterator[Finding]:
    st = _focus(ra, o)
    if ra.prevalence is None or st is None or st.accuracy is None or st.recalls is None:
        return
    prev = ra.prevalence
    baseline = float(prev.max())
    # NOTE: the paradox is accuracy that *looks* good: a checkpoint below the majority
    # baseline trades accuracy for the rare class, which is not what this finding is about.
    if baseline < o.imbalance or st.accuracy < baseline:
        return
    rare = int(np.argmin(np.where(prev > 0, prev, np.inf)))
    lift = (st.accuracy - baseline) / (1 - baseline) if baseline < 1 else 0.0
    rare_recall = float(st.recalls[rare])
    if lift >= o.paradox_lift and rare_recall >= o.paradox_recall:
        return
    names = ra.run.classes or tuple(str(i) for i in range(len(prev)))
    severity = "error" if _relies_on_accuracy(ra.run) else "warning"
    picked = f", and the run picks by {ra.run.selected_by.metric}" if severity == "error" and ra.run.selected_by else ""
    yield Finding(
        "accuracy-paradox",
        severity,
        ra.run.name,
        st.checkpoint.name,
        f"accuracy {st.accuracy:.4f} vs {baseline:.4f} for always predicting {names[int(np.argmax(prev))]!r} "
        f"(removes {lift:.0%} of its errors), recall of {names[rare]!r} {rare_recall:.4f}{picked}",
        {
            "prevalence": {names[i]: _r(p) for i, p in enumerate(prev)},
            "baseline_accuracy": _r(baseline),
            "accuracy": _r(st.accuracy),
            "error_reduction": _r(lift),
            "recall": {names[i]: _r(r) for i, r in enumerate(st.recalls)},
            "balanced_accuracy": _r(float(np.mean(st.recalls[prev > 0]))),
            "selected_by": None if ra.run.selected_by is None else ra.run.selected_by.metric,
        },
    )


RULE = Rule(INFO, detect, order=10)
