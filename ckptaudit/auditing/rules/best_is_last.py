"""The ``best-is-last`` finding."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..common import Rule, _r
from ..finding import CodeInfo, Finding

if TYPE_CHECKING:
    from ..engine import AuditOptions, RunAudit

INFO = CodeInfo(
    "best-is-last",
    "info",
    "The best checkpoint is the last one.",
    "The audit winner is the run's final checkpoint.",
    "The metric was still improving when training stopped: more epochs may help, and the run may not have converged.",
    "Training deliberately stopped at a fixed budget; a schedule that anneals to the end.",
    "Train longer, or confirm that the improvement has levelled off.",
)


def detect(ra: RunAudit, o: AuditOptions) -> Iterator[Finding]:
    scored = [s for s in ra.stats if s.value is not None]
    if len(scored) >= 2 and ra.winner is not None and scored[-1].checkpoint is ra.winner:
        yield Finding(
            "best-is-last",
            "info",
            ra.run.name,
            ra.winner.name,
            f"the best checkpoint by {ra.spec.text} is the last one (epoch {ra.winner.epoch}); training may not have converged",
            {"metric": ra.spec.text, "epoch": ra.winner.epoch, "value": _r(scored[-1].value)},
        )


RULE = Rule(INFO, detect, order=80)
