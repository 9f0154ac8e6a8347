"""The gate's result on one run: its rules, read from the run's verdict."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..verdict.model import Rule

if TYPE_CHECKING:
    from ..config import Policy
    from ..store.reader import Checkpoint, Run, Skipped
    from ..verdict.model import Verdict


@dataclass(frozen=True)
class GateResult:
    """The verdict of ``check`` on one run."""

    run: Run
    metric: str
    chosen: Checkpoint | None
    chosen_how: str | None
    rules: tuple[Rule, ...]
    policy: Policy
    matches: tuple[str, ...] = ()  #: every checkpoint the shipped weights match (several: ambiguous)
    #: folders under checkpoints/ that are not checkpoints (no meta.json), left out with a note
    skipped: tuple[Skipped, ...] = ()
    #: the run's verdict the rules were judged on (values, intervals, tie set, findings)
    verdict: Verdict | None = None

    @property
    def passed(self) -> bool:
        """All rules passed (skipped rules pass)."""
        return all(r.passed for r in self.rules)

    def as_dict(self) -> dict[str, Any]:
        """JSON shape: run, metric, chosen, chosen_how, matches, passed, policy_source, rules,
        skipped, and the ``verdict`` the rules read (every checkpoint's value, ci95 and tie
        membership, the winner estimate: :meth:`ckptaudit.verdict.Verdict.as_dict`)."""
        return {
            "run": self.run.name,
            "metric": self.metric,
            "chosen": None if self.chosen is None else self.chosen.name,
            "chosen_how": self.chosen_how,
            "matches": list(self.matches),
            "passed": self.passed,
            "policy_source": self.policy.source,
            "rules": [r.as_dict() for r in self.rules],
            "skipped": [s.as_dict() for s in self.skipped],
            "verdict": None if self.verdict is None else self.verdict.as_dict(),
        }

    @classmethod
    def of(cls, verdict: Verdict) -> GateResult:
        """The gate's view of a verdict computed under a policy."""
        assert verdict.policy is not None
        return cls(
            run=verdict.run,
            metric=verdict.primary.text,
            chosen=verdict.chosen.checkpoint,
            chosen_how=verdict.chosen.how,
            rules=verdict.rules,
            policy=verdict.policy,
            matches=verdict.chosen.matches,
            skipped=verdict.skipped,
            verdict=verdict,
        )
