"""The one ordering rule of checkpoints: best first, unscorable last, ties documented.

Best first by the metric; equal values go to the next metric given, then the earlier
epoch, then the earlier step, then the run and checkpoint name, so the order never
depends on file names or modification times (README, "Ordering").
"""

from __future__ import annotations

from collections.abc import Sequence

from ..metrics.evaluation import CheckpointScore
from ..metrics.spec import MetricSpec


def order_scores(
    scores: Sequence[CheckpointScore], spec: MetricSpec, index: int = 0, tie_break: Sequence[tuple[int, MetricSpec]] = ()
) -> list[CheckpointScore]:
    """Scores best first under ``spec`` (value at ``index``), unscorable last. Equal values
    go by each ``(index, spec)`` of ``tie_break`` in turn, then to the earlier epoch."""
    sign = -1.0 if spec.maximize else 1.0

    def key(s: CheckpointScore) -> tuple:
        v = s.values[index]
        ties: list[object] = []
        for i, other in tie_break:
            w = s.values[i]
            ties += [w is None, 0.0 if w is None else (-w if other.maximize else w)]
        return (
            v is None,
            0.0 if v is None else sign * v,
            *ties,
            s.checkpoint.epoch,
            -1 if s.checkpoint.step is None else s.checkpoint.step,
            s.run.name,
            s.checkpoint.name,
        )

    return sorted(scores, key=key)
