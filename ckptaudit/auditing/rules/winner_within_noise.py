"""The ``winner-within-noise`` finding."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..common import Rule, _r
from ..finding import CodeInfo, Finding

if TYPE_CHECKING:
    from ..engine import AuditOptions, RunAudit

INFO = CodeInfo(
    "winner-within-noise",
    "info/warning",
    "Other checkpoints cannot be told apart from the best on this validation set.",
    "A 95% model confidence set (Hansen, Lunde & Nason 2011; bootstrap over validation rows, --resamples, "
    "seeded) keeps every checkpoint the validation set cannot tell apart from the best, with family-wise "
    "control: a run of truly equal checkpoints reports one as worse at most ~5% of the time. The message also "
    "gives the winner's value expected on new data (the whole selection bootstrapped: best on in-bag rows, "
    "scored on out-of-bag rows) and the optimism of its raw value. Warning when at least --tie-fraction of "
    "the run's checkpoints are in the set, info when only a few are (normal near convergence).",
    "Choosing among tied checkpoints is choosing by noise: the 'best' may be worse on new data.",
    "Converged training, where neighbouring epochs are nearly the same model.",
    "Use a larger validation set, average the tied checkpoints, or prefer the earliest tied one.",
)


def detect(ra: RunAudit, o: AuditOptions) -> Iterator[Finding]:
    sel = ra.selection
    if ra.winner is None or sel is None or sel.estimate is None:
        return
    tied = ra.tied_with_winner()
    if not tied:
        return
    n = sum(1 for s in ra.stats if s.value is not None)
    severity = "warning" if len(tied) + 1 >= max(3, o.tie_fraction * n) else "info"
    e = sel.estimate
    yield Finding(
        "winner-within-noise",
        severity,
        ra.run.name,
        ra.winner.name,
        f"{len(tied)} of {n - 1} other checkpoints cannot be told apart from the best, {ra.winner.name} "
        f"({ra.spec.text} {e.raw:.4f}), on {ra.n_val} rows (95% model confidence set); "
        f"expected on new data {e.expected:.4f} [{e.interval[0]:.4f}, {e.interval[1]:.4f}], optimism {e.optimism:+.4f}",
        {
            "metric": ra.spec.text,
            "winner": ra.winner.name,
            "value": _r(e.raw, 6),
            "expected_on_new_data": _r(e.expected, 6),
            "expected_ci95": [_r(e.interval[0], 6), _r(e.interval[1], 6)],
            "optimism": _r(e.optimism, 6),
            "tied": len(tied),
            "tied_checkpoints": tied,
            "checkpoints": n,
            "method": sel.method,
            "resamples": o.resamples,
            "seed": o.seed,
        },
    )


RULE = Rule(INFO, detect, order=90)
