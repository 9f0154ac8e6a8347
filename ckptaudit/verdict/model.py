"""The verdict: one plain, frozen object per run that every view reads.

A :class:`Verdict` holds what one evaluation pass over a run established: every requested
metric's value per checkpoint and the 95% interval of each, the checkpoints that cannot be
told apart from the best and the winner's selection-corrected estimate (from
:mod:`ckptaudit.stats.selection`), the audit's findings, what training chose and selected by
(and how the chosen weights were identified), and, under a policy, the gate's rules.
``rank``, ``audit``, ``pick``, ``check``, ``report`` and ``plot`` select from it and render;
none of them computes a statistic of its own, so the same number is the same everywhere.
:meth:`Verdict.to_json` is the report's JSON and the API's; :meth:`Verdict.to_frame` a
DataFrame for notebooks.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..store.remote import shown

if TYPE_CHECKING:
    import pandas as pd

    from ..auditing.engine import RunAudit
    from ..auditing.finding import Finding
    from ..config import Policy
    from ..metrics.evaluation import CheckpointScore
    from ..metrics.spec import MetricSpec
    from ..stats.selection import RunSelection, WinnerEstimate
    from ..store.reader import Checkpoint, Run, Skipped


@dataclass(frozen=True)
class Rule:
    """One gate rule's verdict."""

    name: str
    passed: bool
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    skipped: bool = False

    def as_dict(self) -> dict[str, Any]:
        """JSON shape: name, passed, skipped, message, details."""
        return {
            "name": self.name,
            "passed": self.passed,
            "skipped": self.skipped,
            "message": self.message,
            "details": self.details,
        }


@dataclass(frozen=True)
class MetricVerdict:
    """One metric over one run: values and intervals in checkpoint order, and its
    selection statistics (None when the metric has none: logged, custom, not asked for)."""

    spec: MetricSpec  #: bound to the run
    values: tuple[float | None, ...]
    intervals: tuple[tuple[float, float] | None, ...] = ()
    selection: RunSelection | None = None
    #: whether statistics were asked for (False: a plain ranking, no intervals computed)
    computed: bool = False
    #: per checkpoint: cannot be told apart from the best (None: not evaluated), read from
    #: the selection once when the verdict is built
    tied: tuple[bool | None, ...] = ()

    @property
    def text(self) -> str:
        """The metric spec as the user typed it."""
        return self.spec.text

    @property
    def available(self) -> bool:
        """Whether the selection statistics (tie set, winner estimate) exist."""
        return self.selection is not None and self.selection.available

    @property
    def tied_best(self) -> tuple[str, ...] | None:
        """Checkpoints that cannot be told apart from the best (winner first), or None."""
        return tuple(self.selection.tied_best) if self.available else None  # type: ignore[union-attr]

    @property
    def estimate(self) -> WinnerEstimate | None:
        """The winner's value expected on new data (selection-corrected), or None."""
        return None if self.selection is None else self.selection.estimate

    def interval_of(self, index: int) -> tuple[float, float] | None:
        """The 95% interval of checkpoint ``index`` (None: not computed or undefined)."""
        return self.intervals[index] if index < len(self.intervals) else None

    def tied_of(self, name: str) -> bool | None:
        """Whether checkpoint ``name`` cannot be told apart from the best (None: unknown)."""
        if self.tied and self._names:  # read from the selection once, when the verdict was built
            i = self._names.get(name)
            return None if i is None else self.tied[i]
        if not self.available:
            return None
        entry = self.selection.entry(name)  # type: ignore[union-attr]
        return None if entry is None else entry.tied_best

    #: checkpoint name -> index into ``tied`` (set by the builder)
    _names: dict[str, int] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Chosen:
    """Which checkpoint is being shipped, and how that was established."""

    checkpoint: Checkpoint | None
    how: str | None
    matches: tuple[str, ...] = ()  #: every checkpoint the shipped weights match (several: ambiguous)
    given: str | None = None  #: what --chosen said (None: run.json chosen)
    provenance_metric: str | None = None  #: the metric a `pick` provenance file records
    problem: str | None = None  #: run.json 'chosen' names no checkpoint of the run (the report shows it)


@dataclass(frozen=True)
class Verdict:
    """Everything established about one run, computed once (see the module docstring)."""

    run: Run
    metrics: tuple[MetricVerdict, ...]
    scores: tuple[CheckpointScore, ...]  #: in checkpoint order: values, notes, unreadable
    resamples: int
    seed: int
    audit: RunAudit | None = None
    chosen: Chosen = Chosen(None, None)
    rules: tuple[Rule, ...] = ()
    policy: Policy | None = None
    problems: tuple[str, ...] = ()  #: prediction files that could not be read (exit 2)
    skipped: tuple[Skipped, ...] = ()
    #: why the run could not be audited (raised where its findings are needed)
    audit_error: Exception | None = field(default=None, compare=False)

    # ------------------------------------------------------------------ selection
    @property
    def checkpoints(self) -> tuple[Checkpoint, ...]:
        """The scored checkpoints, in epoch order."""
        return tuple(s.checkpoint for s in self.scores)

    @property
    def primary(self) -> MetricVerdict:
        """The first metric (the one that orders)."""
        return self.metrics[0]

    def index(self, name: str | None) -> int | None:
        """Position of checkpoint ``name`` in :attr:`checkpoints`, or None."""
        # NOTE: a dict made once, not a scan per call: rank --ci asks for every row
        # (issue 21: 20,000 checkpoints made it 4 x 10^8 comparisons, most of the verb's time)
        positions = self.__dict__.get("_positions")
        if positions is None:
            positions = {}
            for i, s in enumerate(self.scores):
                positions.setdefault(s.checkpoint.name, i)  # the first, as the scan found
            self.__dict__["_positions"] = positions
        return positions.get(name) if name is not None else None

    def metric(self, text: str) -> MetricVerdict:
        """The :class:`MetricVerdict` of metric spec ``text``."""
        for m in self.metrics:
            if m.text == text:
                return m
        raise KeyError(text)

    def winner(self, k: int = 0) -> str | None:
        """The best checkpoint under metric ``k`` (ties to the earlier epoch), or None."""
        m = self.metrics[k]
        sign = 1.0 if m.spec.maximize else -1.0
        best = None
        for i, v in enumerate(m.values):
            if v is not None and (best is None or sign * v > sign * m.values[best]):  # type: ignore[operator]
                best = i
        return None if best is None else self.scores[best].checkpoint.name

    @property
    def findings(self) -> tuple[Finding, ...]:
        """The audit's findings (most severe first), empty when the run was not audited."""
        return () if self.audit is None else tuple(self.audit.findings)

    @property
    def passed(self) -> bool | None:
        """Whether every gate rule passed (None: no policy, no rules)."""
        return None if not self.rules else all(r.passed for r in self.rules)

    # ------------------------------------------------------------------ output
    def as_dict(self) -> dict[str, Any]:
        """The JSON shape (see docs/report.md): run, task, chosen, metrics with a record per
        checkpoint (value, ci95, tied_best), each metric's winner estimate, findings, rules."""
        run = self.run
        metrics_out = []
        for k, m in enumerate(self.metrics):
            entries = []
            for i, s in enumerate(self.scores):
                interval = m.interval_of(i)
                entries.append(
                    {
                        "checkpoint": s.checkpoint.name,
                        "epoch": s.checkpoint.epoch,
                        "step": s.checkpoint.step,
                        "value": _num(m.values[i]),
                        "ci95": None if interval is None else [_num(interval[0]), _num(interval[1])],
                        "tied_best": m.tied_of(s.checkpoint.name),
                    }
                )
            sel = m.selection
            est = m.estimate
            metrics_out.append(
                {
                    "metric": m.text,
                    "mode": m.spec.mode,
                    "winner": self.winner(k),
                    "tied_best": None if m.tied_best is None else list(m.tied_best),
                    "expected_on_new_data": None if est is None else _clean(est.as_dict()),
                    "method": None if sel is None or not sel.available else sel.method,
                    "correction": None if sel is None or not sel.available else sel.correction,
                    "note": None if sel is None else sel.note,
                    "detectable_difference": _num(detectable_difference(sel)),
                    "checkpoints": entries,
                }
            )
        chosen = self.chosen
        return {
            "run": run.name,
            "path": shown(run.path),  # NOTE: a remote run's URL, not its local copy
            "task": run.task,
            "resamples": self.resamples,
            "seed": self.seed,
            "selected_by": None
            if run.selected_by is None
            else {"metric": run.selected_by.metric, "mode": getattr(run.selected_by, "mode", None)},
            "recorded_chosen": run.chosen,
            "chosen": {
                "checkpoint": None if chosen.checkpoint is None else chosen.checkpoint.name,
                "how": chosen.how,
                "matches": list(chosen.matches),
            },
            "metrics": metrics_out,
            "findings": [f.as_dict() for f in self.findings],
            "rules": [r.as_dict() for r in self.rules],
            "passed": self.passed,
            "notes": {s.checkpoint.name: list(s.notes) for s in self.scores if s.notes},
            "problems": list(self.problems),
        }

    def to_json(self, **kwargs: Any) -> str:
        """:meth:`as_dict` as a JSON text (NaN and infinity written as null)."""
        return json.dumps(self.as_dict(), allow_nan=False, **kwargs)

    def to_frame(self) -> pd.DataFrame:
        """One row per checkpoint and metric: value, ci95 bounds, tied_best."""
        import pandas as pd

        rows = []
        for m in self.metrics:
            for i, s in enumerate(self.scores):
                interval = m.interval_of(i)
                rows.append(
                    {
                        "run": self.run.name,
                        "checkpoint": s.checkpoint.name,
                        "epoch": s.checkpoint.epoch,
                        "metric": m.text,
                        "value": m.values[i],
                        "ci95_low": None if interval is None else interval[0],
                        "ci95_high": None if interval is None else interval[1],
                        "tied_best": m.tied_of(s.checkpoint.name),
                    }
                )
        return pd.DataFrame(rows)


#: names under which the statistics may give the tie set's power: the smallest difference
#: from the best the validation set could have detected (read where present)
def detectable_difference(selection: Any) -> float | None:
    """The smallest difference from the best that the run's validation set could have told
    apart (so "cannot be told apart" is not read as "equal"), when the statistics measure
    it; None otherwise. The one place every view reads it from."""
    return getattr(selection, "detectable_difference", None)


def _num(v: Any) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _clean(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, float):
            out[k] = _num(v)
        elif isinstance(v, (list, tuple)):
            out[k] = [_num(x) if isinstance(x, float) else x for x in v]
        else:
            out[k] = v
    return out
