"""The regret of a replayed rule, with an interval that knows the post-hoc best was selected.

A rule (early stopping, a retention policy) hands over one checkpoint; the post-hoc best is
the checkpoint with the best re-scored value among *all* recorded checkpoints (the verdict's
winner). The raw regret is ``sign * (value[best] - value[rule's])``, >= 0. It flatters the
post-hoc best, which is the maximum of noisy estimates on the same rows
(:mod:`ckptaudit.stats.selection`), so its interval re-selects the best in every resample:
on the *same* resamples as the verdict's selection statistics (the same per-row data, seed
and draws, :func:`ckptaudit.stats.selection._resampled`), regret_b = max over checkpoints of
``sign * value_b`` minus ``sign * value_b[rule's]``; the 2.5th and 97.5th percentiles are
the 95% interval, and ``p_zero`` is the share of resamples in which the rule's checkpoint
is itself the best. Whether the regret can be told apart from zero at all is the verdict's
model confidence set (``within_noise``: the rule's checkpoint cannot be told apart from the
best), which holds its 95% guarantee however many checkpoints there are.

Between rules on the same run the best cancels: the difference of two rules' regrets is the
difference of their checkpoints' values, so a sweep comparing rules (:mod:`ckptaudit.replay.sweep`)
is not biased by the maximum.

The rule's own choice is held fixed: it was made by training from logged numbers, which
cannot be resampled (docs/replay.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .intervals import _percentiles, event_class
from .rows import RunEvaluation


@dataclass(frozen=True)
class Regret:
    """A rule's regret under the target metric (positive: the rule loses)."""

    raw: float  #: sign * (validation value of the post-hoc best - that of the rule's checkpoint)
    interval: tuple[float, float] | None  #: 95% percentile interval, the best re-selected per resample
    p_zero: float | None = None  #: share of resamples where the rule's checkpoint is the best
    skipped_draws: int = 0  #: resamples where the metric was undefined


def regrets(
    evaluation: RunEvaluation, picks: Sequence[int | None], *, resamples: int, seed: int
) -> tuple[list[Regret | None], str | None]:
    """The regret of each checkpoint index in ``picks`` (None: the rule ships nothing, or
    the checkpoint cannot be scored), and a note when only raw regrets could be computed."""
    from .selection import _one_blas_thread, _resampled

    spec = evaluation.spec
    sign = 1.0 if spec.maximize else -1.0
    values = evaluation.values
    scorable = [i for i, v in enumerate(values) if v is not None]
    if not scorable:
        return [None] * len(picks), "no checkpoint could be scored"
    best = max(scorable, key=lambda i: (sign * values[i], -i))  # type: ignore[operator]
    raws = [None if p is None or values[p] is None else sign * (values[best] - values[p]) + 0.0 for p in picks]  # type: ignore[operator]
    rows = evaluation.rows
    note = evaluation.rows_note if rows is None else None
    if rows is None or best not in evaluation.scored:
        return [None if r is None else Regret(r, None) for r in raws], note or "the best checkpoint has no per-row data"
    rng = np.random.default_rng(seed)
    with _one_blas_thread():
        v_in, _ = _resampled(rows, spec, evaluation.run.task, resamples, rng, event_class(spec, evaluation.run.task, rows.kind))
    oriented = sign * v_in
    finite = np.isfinite(oriented).all(axis=1)  # a resample with an undefined value is left out, and counted
    oriented = oriented[finite]
    top = oriented.max(axis=1) if oriented.size else oriented[:, 0]
    local = {ci: j for j, ci in enumerate(evaluation.scored)}
    out: list[Regret | None] = []
    for p, raw in zip(picks, raws, strict=True):
        j = None if p is None else local.get(p)
        if raw is None or j is None or not oriented.size:
            out.append(None if raw is None else Regret(raw, None))
            continue
        d = top - oriented[:, j]
        out.append(Regret(raw, _percentiles(d), float(np.mean(d == 0)), int(np.count_nonzero(~finite))))
    return out, None
