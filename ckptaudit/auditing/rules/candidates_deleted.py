"""The ``candidates-deleted`` finding: ``prune --all`` deleted candidates whole."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..common import Rule
from ..finding import CodeInfo, Finding

if TYPE_CHECKING:
    from ..engine import AuditOptions, RunAudit

INFO = CodeInfo(
    "candidates-deleted",
    "warning",
    "Checkpoints compared during training were deleted whole by `prune --all`.",
    "The run's ckptaudit-pruned.json records checkpoints whose folders (predictions too) `prune --all` deleted.",
    "The selection statistics (the set that cannot be told apart, the winner's expected score on new data) "
    "count only the checkpoints left, so they understate how much the winner was selected for: its optimism "
    "looks smaller than it was.",
    "The deleted checkpoints were never candidates (a warm-up phase the team excluded on purpose).",
    "Prune with the default (weights only: predictions stay, every statistic unchanged) instead of --all; "
    "the recorded scores say what the deleted candidates scored.",
)


def detect(ra: RunAudit, o: AuditOptions) -> Iterator[Finding]:
    from ...errors import RunFormatError
    from ...store.pruned import read_pruned

    try:
        records = read_pruned(ra.run.path)
    except RunFormatError as exc:
        ra.problems.append(str(exc))
        return
    present = {c.name for c in ra.run.checkpoints}
    gone = sorted((r for r in records.values() if r.removed == "all" and r.checkpoint not in present), key=lambda r: r.checkpoint)
    if not gone:
        return
    recorded = [r.scores.get(ra.spec.text) for r in gone]
    known = [v for v in recorded if v is not None]
    best = None
    if known:
        best = max(known) if ra.spec.mode == "max" else min(known)
    total = len(present) + len(gone)
    yield Finding(
        "candidates-deleted",
        "warning",
        ra.run.name,
        None,
        f"{len(gone)} of {total} checkpoints were deleted whole by `prune --all`; the selection statistics count "
        f"only the {len(present)} left and understate the winner's optimism"
        + (f" (best recorded score of the deleted ones by {ra.spec.text}: {best:.4g})" if best is not None else ""),
        {"deleted": [r.checkpoint for r in gone], "candidates": total, "left": len(present), "best_deleted": best},
    )


RULE = Rule(INFO, detect, order=95)
