"""The report's data: plain frozen records (charts, the selection, the decision table, the
gate, one :class:`RunReport` per run and the :class:`Report` with its JSON shape) that
:func:`ckptaudit.reporting.build_report` fills and every renderer reads; nothing here
computes or formats."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import __version__
from ..auditing.finding import Finding

# NOTE: the diagnostics moved to their own module; their names stay importable from here.
from ..diagnostics import MAX_CONFUSION_CLASSES as MAX_CONFUSION_CLASSES
from ..diagnostics import MAX_CURVE_POINTS as MAX_CURVE_POINTS
from ..diagnostics import MAX_RESIDUAL_POINTS as MAX_RESIDUAL_POINTS
from ..diagnostics import RELIABILITY_BINS as RELIABILITY_BINS
from ..diagnostics import Curve as Curve
from ..diagnostics import Diagnostics as Diagnostics
from ..diagnostics import Reliability as Reliability
from ..diagnostics import Residuals as Residuals
from ..diagnostics import diagnose as diagnose
from ..diagnostics import reliability_curve as reliability_curve
from ..diagnostics import roc_pr_curves as roc_pr_curves
from ..store.reader import Checkpoint


@dataclass(frozen=True)
class Series:
    """One line of a chart: a value per checkpoint of the run (None where missing)."""

    label: str
    split: str  #: "val" or "train": how the line is drawn
    values: tuple[float | None, ...]


@dataclass(frozen=True)
class Chart:
    """Curves over epochs of one metric (or one logged quantity, train and validation)."""

    key: str
    title: str
    metric: str | None  #: the metric spec for metric charts, None for logged charts
    maximize: bool | None
    series: tuple[Series, ...]
    primary: bool = False  #: the first metric's chart: the tied-best set and corrected estimate are drawn here


@dataclass(frozen=True)
class CorrectedEstimate:
    """The winner's value expected on new data, corrected for having been selected."""

    value: float
    low: float
    high: float
    raw: float  #: the winner's validation value, as measured
    method: str
    maximize: bool = True

    @property
    def optimism(self) -> float:
        """How much better the measured value looks than what to expect (positive: optimistic)."""
        return self.raw - self.value if self.maximize else self.value - self.raw


@dataclass(frozen=True)
class Selection:
    """Selection statistics of one run under the first metric (either part may be missing)."""

    tied_best: tuple[str, ...] | None  #: checkpoints that cannot be told apart from the best (the winner included)
    corrected: CorrectedEstimate | None
    method: str  #: how tied_best was decided, said on the page


@dataclass(frozen=True)
class DecisionRow:
    """The chosen checkpoint against the winner under one metric."""

    metric: str
    maximize: bool
    winner: str | None
    winner_epoch: int | None
    winner_value: float | None
    winner_interval: tuple[float, float] | None
    chosen_value: float | None
    chosen_interval: tuple[float, float] | None

    @property
    def gap(self) -> float | None:
        """How much better the winner is than the chosen (>= 0), when both are scored."""
        if self.winner_value is None or self.chosen_value is None:
            return None
        return self.winner_value - self.chosen_value if self.maximize else self.chosen_value - self.winner_value


@dataclass(frozen=True)
class Explanation:
    """A finding code's documentation, shown beside the finding."""

    summary: str
    why: str
    action: str


@dataclass(frozen=True)
class GateView:
    """The gate's verdict on the run under a policy."""

    passed: bool
    metric: str
    rules: tuple[tuple[str, bool, bool, str], ...]  #: (name, passed, skipped, message)
    #: slices (issue 24): the churn rule's details (flips per slice) when a baseline was given
    churn: dict[str, Any] | None = None


@dataclass(frozen=True)
class RunReport:
    """Everything the report shows about one run."""

    name: str
    task: str
    selected_by: str | None
    chosen: str | None
    checkpoints: tuple[Checkpoint, ...]
    x: tuple[float, ...]  #: where each checkpoint sits on the charts' x axis
    x_label: str
    metrics: tuple[str, ...]  #: metric specs scored on this run, the first orders
    charts: tuple[Chart, ...]
    winner: str | None  #: best under the first metric (ties to the earlier epoch)
    decision: tuple[DecisionRow, ...]
    selection: Selection
    findings: tuple[Finding, ...]
    explanations: dict[str, Explanation]
    diagnostics: tuple[Diagnostics, ...]
    n_val: int = 0
    gate: GateView | None = None
    problems: tuple[str, ...] = ()  #: input that could not be read (the CLI exits 2)
    notes: tuple[str, ...] = ()  #: e.g. a requested metric that does not apply to this run's task
    #: the run's verdict every number above was read from (None: the run could not be judged)
    verdict: Any = field(default=None, repr=False, compare=False)
    #: slices (issue 24): the rank --by group rows (ckptaudit.slices.SliceRow) when the run has a group column
    slices: tuple[Any, ...] = ()

    def index_of(self, name: str | None) -> int | None:
        """Position of a checkpoint on the x axis, or None."""
        return next((i for i, c in enumerate(self.checkpoints) if c.name == name), None)

    def first_values(self) -> tuple[float | None, ...]:
        """The first metric's validation values (empty when the run has none)."""
        primary = next((c for c in self.charts if c.primary), None)
        return primary.series[0].values if primary else ()


@dataclass(frozen=True)
class Report:
    """The whole report: one :class:`RunReport` per run, and what could not be read."""

    runs: tuple[RunReport, ...]
    metrics: tuple[str, ...]
    problems: tuple[str, ...] = ()
    version: str = __version__
    title: str = "ckptaudit report"
    options: dict[str, object] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON (``report -o report.json``): each run's verdict
        (:meth:`ckptaudit.verdict.Verdict.as_dict`), its notes and problems."""
        runs = []
        for r in self.runs:
            entry: dict[str, Any] = {"run": r.name, "problems": list(r.problems), "notes": list(r.notes)}
            if r.verdict is not None:
                entry["verdict"] = r.verdict.as_dict()
            if r.gate is not None:
                entry["gate"] = {"passed": r.gate.passed, "metric": r.gate.metric, "rules": [list(x) for x in r.gate.rules]}
            runs.append(entry)
        return {
            "ckptaudit": self.version,
            "title": self.title,
            "metrics": list(self.metrics),
            "options": self.options,
            "runs": runs,
            "problems": list(self.problems),
        }

    def to_json(self, **kwargs: Any) -> str:
        """:meth:`as_dict` as JSON text (NaN and infinity written as null)."""
        import json

        return json.dumps(self.as_dict(), allow_nan=False, **kwargs)
