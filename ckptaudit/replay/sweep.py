"""Which rule loses least over many runs (``ckptaudit replay --sweep``).

Per rule, the mean regret over the runs where every rule shipped a scorable checkpoint (the
same runs for every rule, so the means are comparable), and a 95% percentile interval from
resampling *runs* (the runs are the units a team's history is made of; each run's own
selection noise is in its row of the table). The post-hoc best is common to all rules on a
run, so differences between rules are differences of their checkpoints' values and are not
biased by the maximum (:mod:`ckptaudit.stats.regret`). ``p_best`` is the share of resamples
of runs in which the rule has the least mean regret (ties shared): a rule whose ``p_best``
is low is beaten by another with some confidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .engine import RuleResult

SWEEP_RESAMPLES = 2000


@dataclass(frozen=True)
class RuleSummary:
    """One rule over a sweep."""

    rule: str
    runs: int  #: runs compared (every rule shipped a scorable checkpoint)
    mean_regret: float | None
    regret_ci95: tuple[float, float] | None
    p_best: float | None
    mean_epochs_saved: float | None
    stopped_runs: int  #: runs the rule stopped early
    rank: int | None = None  #: 1: the least mean regret


def summarise(results: Sequence[RuleResult], rules: Sequence[str], *, seed: int = 0) -> list[RuleSummary]:
    """One :class:`RuleSummary` per rule, least mean regret first (see the module docstring)."""
    by_run: dict[str, dict[str, RuleResult]] = {}
    for r in results:
        by_run.setdefault(r.run, {})[r.rule] = r
    complete = [run for run, rs in by_run.items() if all(rule in rs and rs[rule].regret is not None for rule in rules)]
    saved = {rule: [by_run[run][rule].epochs_saved for run in by_run if rule in by_run[run]] for rule in rules}
    stopped = {rule: sum(by_run[run][rule].stopped for run in by_run if rule in by_run[run]) for rule in rules}
    if not complete:
        return [RuleSummary(rule, 0, None, None, None, _mean(saved[rule]), stopped[rule]) for rule in rules]
    matrix = np.array([[by_run[run][rule].regret for rule in rules] for run in complete], dtype=np.float64)
    means = matrix.mean(axis=0)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(complete), size=(SWEEP_RESAMPLES, len(complete)))
    boot = matrix[draws].mean(axis=1)  # (resamples, rules)
    low, high = np.percentile(boot, [2.5, 97.5], axis=0)
    least = boot.min(axis=1, keepdims=True)
    winners = np.isclose(boot, least, rtol=0, atol=1e-12)
    p_best = (winners / winners.sum(axis=1, keepdims=True)).mean(axis=0)
    order = sorted(range(len(rules)), key=lambda k: (means[k], k))
    ranks = {k: pos + 1 for pos, k in enumerate(order)}
    out = [
        RuleSummary(
            rules[k],
            len(complete),
            float(means[k]),
            (float(low[k]), float(high[k])),
            float(p_best[k]),
            _mean(saved[rules[k]]),
            stopped[rules[k]],
            ranks[k],
        )
        for k in order
    ]
    return out


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if values else None
