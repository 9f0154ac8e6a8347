"""The ``stopped-too-early`` finding: the audit metric was still improving at the last checkpoint."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..common import Rule, _r
from ..finding import CodeInfo, Finding

if TYPE_CHECKING:
    from ..engine import AuditOptions, RunAudit

INFO = CodeInfo(
    "stopped-too-early",
    "info",
    "The metric was still improving when training stopped.",
    "Over the last checkpoints (up to 5), the audit metric's slope against the epoch is above zero "
    "by a one-sided bootstrap test over validation rows at the 5% level (false alarms on a flat "
    "metric measured by simulation: docs/replay.md).",
    "Early stopping, a fixed epoch budget or a retention rule ended training while the model still "
    "gained: more epochs would probably have given a better checkpoint.",
    "A learning-rate schedule that anneals to the end; a deliberate budget; a small gain that does not matter.",
    "Train longer (ckptaudit replay shows what the stopping rule cost on past runs), or raise the patience.",
)


def detect(ra: RunAudit, o: AuditOptions) -> Iterator[Finding]:
    if ra.evaluation is None or ra.val_changed or not o.noise:
        return
    from ...stats.trend import trend_at_end

    trend = trend_at_end(ra.evaluation, resamples=o.resamples, seed=o.seed)
    if trend is None or not trend.improving:
        return
    last = ra.evaluation.checkpoints[-1]
    per = "higher" if ra.spec.maximize else "lower"
    yield Finding(
        "stopped-too-early",
        "info",
        ra.run.name,
        last.name,
        f"{ra.spec.text} was still improving at the last checkpoint: {abs(trend.slope):.4g} {per} per epoch over "
        f"epochs {trend.first_epoch}-{trend.last_epoch} (one-sided bootstrap p = {trend.p_value:.3f})",
        {
            "metric": ra.spec.text,
            "slope_per_epoch": _r(trend.slope, 6),
            "slope_ci90": [_r(trend.interval[0], 6), _r(trend.interval[1], 6)],
            "p_value": _r(trend.p_value),
            "epochs": [trend.first_epoch, trend.last_epoch],
            "checkpoints": trend.checkpoints,
        },
    )


RULE = Rule(INFO, detect, order=85)
