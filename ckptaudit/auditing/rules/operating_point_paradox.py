"""The ``operating-point-paradox`` finding (issue 20): the seed's accuracy paradox, stated as
the alert budget a team works to."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..common import Rule, _r
from ..finding import CodeInfo, Finding

if TYPE_CHECKING:
    from ..engine import AuditOptions, RunAudit

INFO = CodeInfo(
    "operating-point-paradox",
    "warning",
    "The checkpoint best by accuracy is beyond noise worse at the operating point the team ships.",
    "Under an operating-point metric (recall@precision>=P, recall@specificity>=S, ...) the audit compares the "
    "checkpoint with the best validation accuracy with the best checkpoint/threshold pair. Warning when the "
    "accuracy-best checkpoint is outside the pair's 95% model confidence set (or meets the constraint at no "
    "threshold); the message states the difference in the team's terms: at the same alert budget (at most "
    "1 false alert in 1/(1-P) for a precision constraint, (1-S) false alerts per negative row for a "
    "specificity one) how many more positives per 1,000 rows it misses.",
    "A model picked by accuracy on imbalanced data (the seed's fraud model: 98% accuracy, 12% recall) can "
    "be the wrong checkpoint for any useful alert budget.",
    "A team that really ships at the default threshold and cares about accuracy.",
    'Pick by the operating point: `ckptaudit pick RUN --metric "recall@precision>=0.8"`.',
)


def _budget(point) -> str:
    if point.constraint == "precision":
        per = 1.0 / (1.0 - point.bound) if point.bound < 1 else float("inf")
        return f"at most 1 false alert in {per:.3g} (precision >= {point.bound:g})"
    if point.constraint == "specificity":
        return f"at most {1000 * (1 - point.bound):.3g} false alerts per 1,000 negative rows (specificity >= {point.bound:g})"
    return f"{point.constraint} >= {point.bound:g}"


def detect(ra: RunAudit, o: AuditOptions) -> Iterator[Finding]:
    point = getattr(ra.spec, "operating", None)
    if point is None or point.is_cost or ra.winner is None:
        return
    scored = [s for s in ra.stats if s.accuracy is not None]
    if not scored:
        return
    acc = max(scored, key=lambda s: s.accuracy)  # max keeps the earliest of ties
    win = next((s for s in ra.stats if s.checkpoint is ra.winner), None)
    if win is None or win.value is None or acc.checkpoint is ra.winner:
        return
    sel = ra.selection
    if acc.value is not None:
        if sel is None or not sel.available or sel.is_tied_best(acc.checkpoint.name):
            return  # within the noise (or not known to be beyond it)
    names = ra.run.classes
    index = ra.spec.class_index if ra.spec.class_index is not None else 1
    positive = names[index] if names and index < len(names) and ra.run.task != "multilabel" else "positives"
    budget = _budget(point)
    if acc.value is None:
        said = f"meets {point.describe()} at no threshold"
        missed = None
    else:
        said = f"{point.target} {acc.value:.4f} vs {win.value:.4f} for {ra.winner.name}"
        missed = None
        if point.target == "recall" and ra.prevalence is not None and index < len(ra.prevalence):
            missed = (win.value - acc.value) * float(ra.prevalence[index]) * 1000
            said += f": {missed:.1f} more {positive} rows missed per 1,000 rows"
    yield Finding(
        "operating-point-paradox",
        "warning",
        ra.run.name,
        acc.checkpoint.name,
        f"the best checkpoint by accuracy, {acc.checkpoint.name} ({acc.accuracy:.4f}), at {budget}: {said}",
        {
            "metric": ra.spec.text,
            "accuracy_best": acc.checkpoint.name,
            "accuracy": _r(acc.accuracy),
            "value": None if acc.value is None else _r(acc.value, 6),
            "best": ra.winner.name,
            "best_value": _r(win.value, 6),
            "missed_per_1000_rows": None if missed is None else _r(missed, 3),
        },
    )


RULE = Rule(INFO, detect, order=110)
