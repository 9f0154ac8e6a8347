"""Recording the checkpoints a prune deletes: before anything moves, which checkpoints lose
their weights (or, with ``--all``, their folder) and what they scored, in the run's pruned
file, so that later statistics can say what they no longer count."""

from __future__ import annotations

from ..store.pruned import PrunedCheckpoint, read_pruned, write_pruned
from ..store.prunefs import (
    ConfinedRun,
)
from .entries import PlanEntry, PrunePlan


def _finite(v: float | None) -> float | None:
    import math

    return None if v is None or not math.isfinite(v) else float(v)


def _record_pruned(cr: ConfinedRun, p: PrunePlan, doomed: list[PlanEntry]) -> None:
    """Record, before anything moves, which checkpoints lose their weights (or, with --all,
    their folder and what they scored) in the run's pruned file."""
    import datetime as _dt

    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    records = read_pruned(cr.path)
    by_name = {c.name: c for c in p.run.checkpoints}
    for e in doomed:
        c = by_name.get(e.checkpoint)
        logged = {} if c is None else {k: _finite(v) for k, v in c.logged.items()}
        records[e.checkpoint] = PrunedCheckpoint(
            e.checkpoint, p.mode, e.epoch, None if c is None else c.step, now, dict(e.scores), logged
        )
    write_pruned(cr.run_fd, cr.path, records)
