"""The gate's engine: iterate the rules over a run's verdict.

:func:`judge` is called by the verdict's builder under a policy; it reads the verdict (the
values, the tie set, the findings, the chosen checkpoint) and returns the rules' results,
one per module of :mod:`ckptaudit.gate.rules`, in order. It computes nothing statistical.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import RunFormatError
from ..metrics.evaluation import CheckpointScore
from ..metrics.spec import MetricSpec
from ..verdict.model import Rule, Verdict
from ..verdict.order import order_scores
from .rules import RULES


@dataclass(frozen=True)
class Context:
    """What every rule reads besides the verdict: the policy, the policy metric (bound to
    the run) and the checkpoints best first under it."""

    policy: Any
    spec: MetricSpec
    ordered: tuple[CheckpointScore, ...]

    def value_of(self, ckpt: Any) -> float | None:
        """The policy metric's value of ``ckpt`` (None: not scored)."""
        return next((s.values[0] for s in self.ordered if s.checkpoint is ckpt), None)


def judge(verdict: Verdict) -> tuple[Rule, ...]:
    """The gate's rules on ``verdict`` (computed under ``verdict.policy``)."""
    _unreadable(verdict)
    if verdict.audit_error is not None:
        raise verdict.audit_error
    spec = verdict.primary.spec
    context = Context(verdict.policy, spec, tuple(order_scores(verdict.scores, spec)))
    rules = tuple(rule.judge(verdict, context) for rule in RULES)
    from .rules import shipped_threshold  # issue 20: only under an operating point with a shipped threshold

    if shipped_threshold.applies(spec):
        rules += (shipped_threshold.judge(verdict, context),)
    return rules


def _unreadable(verdict: Verdict) -> None:
    """An unreadable prediction file stops the gate (exit 2), as it does `rank`: a gate
    never passes a run it could not read in full."""
    bad = [s for s in verdict.scores if s.unreadable]
    if bad:
        more = f" (and {len(bad) - 1} more checkpoint(s))" if len(bad) > 1 else ""
        raise RunFormatError(
            f"the gate judges every checkpoint, and {bad[0].checkpoint.name} cannot be read: {bad[0].notes[0]}{more}",
            verdict.run.name,
        )
