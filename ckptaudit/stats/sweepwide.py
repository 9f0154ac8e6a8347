"""Selection statistics across a whole sweep (``pick --across``).

The winner of ``pick --across`` is the best of every checkpoint of every run (an HPO sweep:
every trial at every epoch), so its validation value flatters it more than the best of one
run's checkpoints would: the correction must bootstrap the selection over the same pool
the winner was picked from. When every run was validated on the same rows (the trials of
one sweep), the runs' checkpoints are pooled into one candidate set (named ``RUN/CHECKPOINT``,
RUN relative to the sweep's folder) and :func:`~ckptaudit.stats.selection.select` runs on
it: the expected score on new data, its interval, the optimism and the checkpoints that
cannot be told apart from the best, all across the sweep.

Otherwise (runs of other tasks or rows, a metric without a per-row form, logged metrics
only) there is no sweep-wide statistic, and :class:`SweepSelection` says why, so that the
pick can say what its numbers do and do not correct for. The pooled pass reads each
val.npz once more (the sweep's own pass keeps no per-row data across runs).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..metrics.spec import MetricSpec
from ..store.reader import Run


@dataclass(frozen=True)
class SweepSelection:
    """The pooled candidates of a sweep, and their selection statistics where they exist."""

    runs: int
    #: the candidates: checkpoints with a value under the metric (scored from predictions,
    #: or logged), every checkpoint of the runs where that is not known
    checkpoints: int
    #: the selection over every checkpoint of every run (None: unavailable, see ``note``)
    selection: Any = None
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON shape: runs, checkpoints, scope (``sweep`` or null) and note."""
        scope = "sweep" if self.selection is not None and self.selection.available else None
        return {"runs": self.runs, "checkpoints": self.checkpoints, "scope": scope, "note": self.note}


def sweep_root(runs: Sequence[Run]) -> Path:
    """The folder holding every run of the sweep."""
    return Path(os.path.commonpath([str(r.path.resolve()) for r in runs])) if len(runs) > 1 else runs[0].path.parent


def pooled_name(run: Run, checkpoint: str, root: Path) -> str:
    """A checkpoint's name in the pooled candidate set: ``RUN/CHECKPOINT``."""
    return f"{os.path.relpath(run.path.resolve(), root)}/{checkpoint}"


def sweep_selection(runs: Sequence[Run], spec: MetricSpec, *, resamples: int, seed: int) -> SweepSelection:
    """Selection statistics of ``spec`` (unbound) over every checkpoint of ``runs`` pooled."""
    from ..errors import CkptauditError
    from ..metrics.evaluation import RunScorer
    from . import bootstrap
    from .rows import evaluate_run, row_kind
    from .selection import select

    count = sum(len(r.checkpoints) for r in runs)
    out = SweepSelection(len(runs), count)
    first = runs[0]
    if not first.task or spec.source == "logged":
        count = sum(1 for r in runs for c in r.checkpoints if c.logged.get(spec.name) is not None)
        out = replace(out, checkpoints=count)
        then = (
            "`ckptaudit predict` on each run, then a metric computed from the predictions, gives both"
            if not first.task
            else "a metric computed from the predictions (e.g. log_loss) gives both"
        )
        note = (
            f"{spec.text} is a logged metric (no per-row data): no interval and no selection-corrected estimate; "
            f"the value is the best of {count} logged values across {len(runs)} runs and flatters the winner; {then}"
        )
        return replace(out, note=note)
    shape = (first.task, first.output, first.positive_class, first.classes, first.num_classes)
    differ = [r.name for r in runs if (r.task, r.output, r.positive_class, r.classes, r.num_classes) != shape]
    if differ:
        return replace(
            out, note=f"the runs differ in task, output or classes ({differ[0]}): corrected within the winner's run only"
        )
    try:
        bound = RunScorer(first, [spec]).specs[0]
    except CkptauditError as exc:
        return replace(out, note=f"{exc.problem}: corrected within the winner's run only")
    if not bootstrap.supports(bound) or bound.operating is not None or row_kind(bound, first.task) is None:
        return replace(out, note=f"{spec.text} has no sweep-wide per-row form: corrected within the winner's run only")
    root = sweep_root(runs)
    checkpoints = tuple(replace(c, name=pooled_name(r, c.name, root)) for r in runs for c in r.checkpoints)
    pooled = replace(first, path=root, name=str(root), checkpoints=checkpoints, chosen=None, skipped=(), _lookup={})
    evaluation = evaluate_run(pooled, bound)
    if evaluation.rows is None:
        why = evaluation.rows_note or "no checkpoint could be scored"
        if "validation set changed" in why or "targets differ" in why:
            why = "the runs were not validated on the same rows"
        return replace(out, note=f"{why}: corrected within the winner's run only")
    return replace(out, checkpoints=len(evaluation.scored), selection=select(evaluation, resamples=resamples, seed=seed))
