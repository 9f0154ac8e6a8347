"""The ``fragile-operating-point`` finding (issue 20)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from ...stats.operating_shares import HOLD_LEVEL
from ..common import Rule, _r
from ..finding import CodeInfo, Finding

if TYPE_CHECKING:
    from ..engine import AuditOptions, RunAudit

INFO = CodeInfo(
    "fragile-operating-point",
    "warning",
    "The chosen threshold's constraint (precision >= P, recall >= R, ...) is unlikely to hold on new data.",
    "For an operating-point metric (recall@precision>=P, ...) the checkpoint and its threshold were both tuned "
    "on the validation rows. The selection is bootstrapped (rows resampled; checkpoint and threshold re-chosen "
    "on the in-bag rows) and the share of draws in which the re-chosen pair still meets the constraint on the "
    "out-of-bag rows is "
    "reported (ckptaudit/stats/operating.py). Warning when that share is below 0.9; the message gives the "
    "threshold of the winning checkpoint nearest to the chosen one whose constraint holds in at least 90% of "
    "resamples.",
    "A threshold tuned to just meet 'precision >= 0.8' on validation meets it on new data about half the time.",
    "A constraint that is a soft target rather than a contract.",
    "Ship the safer threshold the message gives, or a larger validation set, or a looser constraint.",
)


def detect(ra: RunAudit, o: AuditOptions) -> Iterator[Finding]:
    sel = ra.selection
    op = getattr(sel, "operating", None)
    if op is None or op.holds is None or op.holds >= HOLD_LEVEL or ra.winner is None:
        return
    safe = sel.safe_threshold  # type: ignore[union-attr]
    point = ra.spec.operating
    advice = (
        f"threshold {safe!r} (tuned to a stricter bound) holds it with probability {op.safe_holds:.2f}"
        if safe is not None
        else "no stricter bound up to +0.3 holds it with probability 0.9"
    )
    yield Finding(
        "fragile-operating-point",
        "warning",
        ra.run.name,
        ra.winner.name,
        f"{ra.spec.text}: the chosen threshold {sel.threshold!r} meets {point.describe()} on new data "  # type: ignore[union-attr]
        f"with probability {op.holds:.2f} (checkpoint and threshold re-chosen in-bag, checked out-of-bag); {advice}",
        {
            "metric": ra.spec.text,
            "threshold": sel.threshold,  # type: ignore[union-attr]
            "constraint_holds": _r(op.holds, 6),
            "safe_threshold": safe,
            "safe_holds": None if op.safe_holds is None else _r(op.safe_holds, 6),
            "hold_level": HOLD_LEVEL,
        },
    )


RULE = Rule(INFO, detect, order=120)
