"""``report``: gather everything a person needs to see about a checkpoint choice, as plain data.

:func:`build_report` reads each run once through the existing verbs (scoring, audit, the
bootstrap and, when a policy is given, the gate) and returns a :class:`Report`: per run the
metric curves over epochs, the chosen checkpoint and the winner under the first metric, the
checkpoints that cannot be told apart from the best, the decision table with intervals, the
findings with their explanations, and diagnostics (confusion matrices, ROC, precision-recall,
reliability, residuals) of the chosen checkpoint and the winner. Renderers turn it into a
page (``ckptaudit.render.html``) or a static figure (``ckptaudit.plotting``); nothing here
formats anything.

Selection statistics (the set of checkpoints that cannot be told apart from the best, and the
winner's value expected on new data) come from :mod:`ckptaudit.stats.selection` through one
function, :func:`selection_evidence`, which reuses the audit's when it has them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__
from .auditing import DEFAULT_METRIC, AuditOptions, RunAudit, audit_run
from .auditing.finding import Finding
from .auditing.rules import CODES
from .errors import CkptauditError, MetricError, RunFormatError
from .metrics import kernels as metrics
from .metrics.evaluation import iter_scores, prepare_predictions
from .metrics.spec import MetricSpec, check_applies, parse_metric
from .stats import bootstrap
from .stats.selection import evaluate_selection
from .store.reader import Checkpoint, Run, discover, read_predictions

#: most points of a ROC or precision-recall curve kept for drawing (exact at the kept points)
MAX_CURVE_POINTS = 200
#: most rows of a residual scatter kept for drawing (an evenly spaced sample of the sorted rows)
MAX_RESIDUAL_POINTS = 400
#: more classes than this and the confusion matrix is left out (it would be unreadable)
MAX_CONFUSION_CLASSES = 30
RELIABILITY_BINS = 10
_SPLIT_PREFIX = re.compile(r"^(train|training|val|valid|validation|eval|test)[_/-]", re.IGNORECASE)


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
class Curve:
    """Points of a ROC (x fpr, y tpr) or precision-recall (x recall, y precision) curve."""

    x: tuple[float, ...]
    y: tuple[float, ...]
    area: float | None


@dataclass(frozen=True)
class Reliability:
    """A reliability (calibration) curve: per non-empty bin the mean predicted probability,
    the observed frequency, and the number of rows (bins as scikit-learn's
    ``calibration_curve(strategy="uniform")``)."""

    predicted: tuple[float, ...]
    observed: tuple[float, ...]
    counts: tuple[int, ...]
    what: str  #: "positive class" (binary), "top label" (multiclass), "all labels" (multilabel)


@dataclass(frozen=True)
class Residuals:
    """Regression residuals (target minus prediction) against the prediction, sampled for drawing."""

    predicted: tuple[float, ...]
    residual: tuple[float, ...]
    rows: int
    rmse: float


@dataclass(frozen=True)
class Diagnostics:
    """How one checkpoint errs on the validation set."""

    checkpoint: str
    epoch: int
    roles: tuple[str, ...]  #: "chosen", "winner" or both
    labels: tuple[str, ...] = ()
    confusion: tuple[tuple[int, ...], ...] | None = None
    roc: Curve | None = None
    pr: Curve | None = None
    reliability: Reliability | None = None
    residuals: Residuals | None = None


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


# --------------------------------------------------------------------------- selection


def selection_evidence(
    run: Run,
    spec: MetricSpec,
    audit: RunAudit | None,
    winner: str | None,
    *,
    resamples: int = bootstrap.DEFAULT_RESAMPLES,
    seed: int = bootstrap.DEFAULT_SEED,
) -> Selection:
    """The set of checkpoints that cannot be told apart from the best (a 95% model confidence
    set) and the winner's value expected on new data, under the first metric (``spec``, bound
    to the run), from :mod:`ckptaudit.stats.selection`. The audit's selection is reused when it
    was computed for the same metric; metrics without per-row statistics (logged, custom, ...)
    get neither, and the page says so."""
    if winner is None or not bootstrap.supports(spec):
        return Selection(tied_best=None, corrected=None, method="")
    if audit is not None and audit.selection is not None and audit.spec.text == spec.text:
        sel = audit.selection
    else:
        sel = evaluate_selection(run, spec, resamples=resamples, seed=seed)
    est = sel.estimate
    corrected = (
        None
        if est is None
        else CorrectedEstimate(est.expected, est.interval[0], est.interval[1], est.raw, sel.correction, spec.maximize)
    )
    return Selection(tied_best=tuple(sel.tied_best) or None, corrected=corrected, method=sel.method)


# --------------------------------------------------------------------------- diagnostics


def _thin(n: int, most: int) -> np.ndarray:
    """Indices of at most ``most`` evenly spaced points of ``n``, both ends kept."""
    if n <= most:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, most).round().astype(int))


def _round(values: np.ndarray, digits: int = 5) -> tuple[float, ...]:
    return tuple(float(v) for v in np.round(values.astype(np.float64), digits))


def roc_pr_curves(y: np.ndarray, score: np.ndarray) -> tuple[Curve, Curve] | None:
    """ROC and precision-recall curves at every distinct score (as scikit-learn's
    ``roc_curve(drop_intermediate=False)`` and ``precision_recall_curve``), thinned to
    :data:`MAX_CURVE_POINTS`; None when one class is absent."""
    pos = y.astype(bool)
    n_pos = int(pos.sum())
    n_neg = pos.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(-score.astype(np.float64), kind="mergesort")
    s = score[order]
    hit = pos[order]
    last = np.r_[np.flatnonzero(np.diff(s)), hit.size - 1]  # the last row of each distinct score
    tp = np.cumsum(hit)[last]
    fp = (last + 1) - tp
    fpr = np.r_[0.0, fp / n_neg]
    tpr = np.r_[0.0, tp / n_pos]
    precision = tp / (tp + fp)
    recall = tp / n_pos
    # NOTE: the precision-recall curve starts at recall 0, precision 1, as scikit-learn draws it.
    rec = np.r_[0.0, recall]
    prec = np.r_[1.0, precision]
    keep_roc = _thin(fpr.size, MAX_CURVE_POINTS)
    keep_pr = _thin(rec.size, MAX_CURVE_POINTS)
    prep = metrics.Prepared("binary", y.astype(np.int8), score, None, 2)
    auc = metrics.KERNELS["roc_auc"](prep, parse_metric("roc_auc"))
    ap = metrics.KERNELS["average_precision"](prep, parse_metric("average_precision"))
    return (
        Curve(_round(fpr[keep_roc]), _round(tpr[keep_roc]), float(auc)),
        Curve(_round(rec[keep_pr]), _round(prec[keep_pr]), float(ap)),
    )


def reliability_curve(observed: np.ndarray, predicted: np.ndarray, bins: int = RELIABILITY_BINS) -> tuple[np.ndarray, ...]:
    """Per non-empty bin of ``predicted`` (equal widths over [0, 1]): mean predicted, observed
    frequency and count, binned as scikit-learn's ``calibration_curve``."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    ids = np.searchsorted(edges[1:-1], predicted)
    count = np.bincount(ids, minlength=bins)
    sum_pred = np.bincount(ids, weights=predicted.astype(np.float64), minlength=bins)
    sum_obs = np.bincount(ids, weights=observed.astype(np.float64), minlength=bins)
    nz = count > 0
    return sum_pred[nz] / count[nz], sum_obs[nz] / count[nz], count[nz]


def _reliability(prep: metrics.Prepared) -> Reliability | None:
    if prep.proba is None:
        return None
    p = prep.proba64
    if prep.task == "binary":
        pred, obs, what = p, prep.y.astype(np.float64), "positive class"
    elif prep.task == "multiclass":
        top = p.argmax(axis=1)
        pred, obs, what = p.max(axis=1), (top == prep.y).astype(np.float64), "top label"
    else:
        pred, obs, what = p.ravel(), prep.y.ravel().astype(np.float64), "all labels"
    mean_pred, freq, count = reliability_curve(obs, np.clip(pred, 0.0, 1.0))
    return Reliability(_round(mean_pred), _round(freq), tuple(int(c) for c in count), what)


def diagnose(run: Run, checkpoint: Checkpoint, roles: tuple[str, ...], prep: metrics.Prepared) -> Diagnostics:
    """Confusion matrix, ROC, precision-recall, reliability or residuals of one checkpoint."""
    task = run.task
    if task == "regression":
        y = prep.y.reshape(prep.y.shape[0], -1)[:, 0]
        pred = prep.proba.reshape(prep.y.shape[0], -1)[:, 0]  # type: ignore[union-attr]
        resid = y - pred
        order = np.argsort(pred, kind="mergesort")
        keep = order[_thin(order.size, MAX_RESIDUAL_POINTS)]
        rmse = float(np.sqrt(np.mean(resid**2)))
        res = Residuals(_round(pred[keep], 4), _round(resid[keep], 4), int(y.size), rmse)
        return Diagnostics(checkpoint.name, checkpoint.epoch, roles, residuals=res)
    labels: tuple[str, ...] = ()
    confusion = None
    if task in ("binary", "multiclass"):
        cm = metrics.confusion(prep, None)
        names = run.classes or tuple(str(i) for i in range(cm.shape[0]))
        if task == "binary":
            # NOTE: the kernels' view codes 1 as the positive class; name rows in that order.
            pos = run.positive_class
            names = (names[1 - pos], names[pos]) if len(names) == 2 else ("negative", "positive")
        if cm.shape[0] <= MAX_CONFUSION_CLASSES:
            confusion = tuple(tuple(int(v) for v in row) for row in cm)
            labels = tuple(names[: cm.shape[0]]) + tuple(str(i) for i in range(len(names), cm.shape[0]))
    roc = pr = None
    if task == "binary" and prep.proba is not None:
        curves = roc_pr_curves(prep.y, prep.proba)
        if curves is not None:
            roc, pr = curves
    return Diagnostics(
        checkpoint.name,
        checkpoint.epoch,
        roles,
        labels=labels,
        confusion=confusion,
        roc=roc,
        pr=pr,
        reliability=_reliability(prep),
    )


# --------------------------------------------------------------------------- curves


def _logged_charts(run: Run) -> list[Chart]:
    """Logged quantities grouped by name without the split prefix: train_loss and val_loss
    share one chart."""
    groups: dict[str, list[str]] = {}
    for name in sorted(run.logged_names()):
        base = _SPLIT_PREFIX.sub("", name)
        groups.setdefault(base, []).append(name)
    charts = []
    for base, names in groups.items():
        series = []
        for name in sorted(names, key=lambda n: (0 if _SPLIT_PREFIX.match(n) and n.lower().startswith("train") else 1, n)):
            values = tuple(_finite(c.logged.get(name)) for c in run.checkpoints)
            split = "train" if name.lower().startswith("train") else "val"
            series.append(Series(name, split, values))
        charts.append(Chart(f"logged-{base}", f"{base} (logged)", None, None, tuple(series)))
    return charts


def _same(a: Sequence[float | None], b: Sequence[float | None]) -> bool:
    return len(a) == len(b) and all(
        (x is None and y is None) or (x is not None and y is not None and abs(x - y) <= 1e-9) for x, y in zip(a, b, strict=True)
    )


def _finite(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


def _x_axis(run: Run) -> tuple[tuple[float, ...], str]:
    epochs = [c.epoch for c in run.checkpoints]
    if len(set(epochs)) == len(epochs):
        return tuple(float(e) for e in epochs), "epoch"
    steps = [c.step for c in run.checkpoints]
    if all(s is not None for s in steps) and len(set(steps)) == len(steps):
        return tuple(float(s) for s in steps), "step"  # type: ignore[arg-type]
    return tuple(float(i) for i in range(len(epochs))), "checkpoint"


def _best(spec: MetricSpec, values: Sequence[float | None]) -> int | None:
    """Index of the best value; ties go to the earlier checkpoint (values are in epoch order)."""
    best = None
    for i, v in enumerate(values):
        if v is not None and (best is None or spec.better(v, values[best])):  # type: ignore[arg-type]
            best = i
    return best


# --------------------------------------------------------------------------- one run


def _applicable(run: Run, specs: Sequence[MetricSpec]) -> tuple[list[MetricSpec], list[str]]:
    ok, problems = [], []
    for spec in specs:
        try:
            check_applies(spec, run.task, run.output, run.name)
            spec.for_run(run.classes, run.task, run.positive_class)
        except MetricError as exc:
            problems.append(str(exc))
            continue
        if spec.source == "logged" and spec.name not in run.logged_names():
            problems.append(f"{run.name}: metric {spec.text!r} is not logged by this run")
            continue
        ok.append(spec)
    return ok, problems


def _interval(spec: MetricSpec, prep: metrics.Prepared | None, resamples: int, seed: int) -> tuple[float, float] | None:
    if prep is None or not bootstrap.supports(spec) or resamples <= 0:
        return None
    low, high = bootstrap.interval(spec, prep, resamples=resamples, seed=seed)
    return None if math.isnan(low) else (low, high)


def report_run(
    run: Run,
    specs: Sequence[MetricSpec],
    *,
    resamples: int = bootstrap.DEFAULT_RESAMPLES,
    seed: int = bootstrap.DEFAULT_SEED,
    diagnostics: bool = True,
    policy: object | None = None,
) -> RunReport:
    """Gather one run's report (curves, decision, selection, findings, diagnostics)."""
    problems: list[str] = []
    notes: list[str] = []
    if specs:
        specs, skipped = _applicable(run, specs)
        notes += skipped
    if not specs:
        specs = [parse_metric(DEFAULT_METRIC[run.task], logged=run.logged_names())]
        if notes:
            notes.append(f"shown by {specs[0].text}, the audit's default for a {run.task} run, instead")
    bound = [s.for_run(run.classes, run.task, run.positive_class) for s in specs]
    first = bound[0]

    # NOTE: the report shows a run whose validation set changed (the audit flags it)
    # instead of refusing it, so guard=False here.
    scores = list(iter_scores(run, bound, guard=False))
    for s in scores:
        problems += [note for note in s.notes if s.unreadable]
    columns = list(zip(*[s.values for s in scores], strict=True)) if scores else [() for _ in bound]

    audit: RunAudit | None = None
    try:
        audit = audit_run(run, AuditOptions(metric=first.text, resamples=max(resamples, 100), seed=seed))
        problems += audit.problems
    except CkptauditError as exc:
        problems.append(str(exc))

    names = [c.name for c in run.checkpoints]
    best_i = _best(first, columns[0]) if columns else None
    winner = names[best_i] if best_i is not None else None
    chosen = run.chosen if run.chosen in names else None
    if run.chosen is not None and chosen is None:
        problems.append(f"{run.name}: run.json 'chosen' names {run.chosen!r}, which is not a checkpoint of the run")

    charts: list[Chart] = []
    for k, spec in enumerate(bound):
        series = [Series("validation", "val", tuple(columns[k]))]
        if k == 0 and audit is not None and audit.spec.text == spec.text:
            train = tuple(st.train_value for st in audit.stats)
            if any(v is not None for v in train):
                series.append(Series("train", "train", train))
        charts.append(Chart(f"metric-{k}", spec.text, spec.text, spec.maximize, tuple(series), primary=k == 0))
    # NOTE: a logged quantity identical to a scored metric (val_accuracy = accuracy) is not drawn twice.
    drawn = [c.series[0].values for c in charts]
    charts += [c for c in _logged_charts(run) if not (len(c.series) == 1 and any(_same(c.series[0].values, d) for d in drawn))]

    # Predictions of the two checkpoints that matter, read once each.
    focus = [n for n in dict.fromkeys([chosen, winner]) if n is not None]
    prepared: dict[str, metrics.Prepared] = {}
    for name in focus:
        ckpt = run.checkpoint(name)
        if ckpt is None or not ckpt.has_split("val"):
            continue
        try:
            preds = read_predictions(run, ckpt, "val")
        except RunFormatError as exc:
            problems.append(str(exc))
            continue
        if preds.output.dtype.kind != "f" or np.isfinite(preds.output).all():
            prepared[name] = prepare_predictions(run, preds)

    decision = []
    for k, spec in enumerate(bound):
        i = _best(spec, columns[k])
        ci = chosen and names.index(chosen)
        decision.append(
            DecisionRow(
                metric=spec.text,
                maximize=spec.maximize,
                winner=None if i is None else names[i],
                winner_epoch=None if i is None else run.checkpoints[i].epoch,
                winner_value=None if i is None else columns[k][i],
                winner_interval=None if i is None else _interval(spec, _prep_for(run, names[i], prepared), resamples, seed),
                chosen_value=None if chosen is None else columns[k][ci],  # type: ignore[index]
                chosen_interval=None if chosen is None else _interval(spec, prepared.get(chosen), resamples, seed),
            )
        )

    diags: list[Diagnostics] = []
    if diagnostics:
        for name in focus:
            if name not in prepared:
                continue
            roles = tuple(r for r, n in (("chosen", chosen), ("winner", winner)) if n == name)
            diags.append(diagnose(run, run.checkpoint(name), roles, prepared[name]))  # type: ignore[arg-type]

    findings = tuple(audit.findings) if audit is not None else ()
    explanations = {
        f.code: Explanation(CODES[f.code].summary, CODES[f.code].why, CODES[f.code].action) for f in findings if f.code in CODES
    }
    x, x_label = _x_axis(run)
    return RunReport(
        name=run.name,
        task=run.task,
        selected_by=None if run.selected_by is None else run.selected_by.metric,
        chosen=chosen,
        checkpoints=run.checkpoints,
        x=x,
        x_label=x_label,
        metrics=tuple(s.text for s in bound),
        charts=tuple(charts),
        winner=winner,
        decision=tuple(decision),
        selection=selection_evidence(run, first, audit, winner, resamples=max(resamples, 100), seed=seed),
        findings=findings,
        explanations=explanations,
        diagnostics=tuple(diags),
        n_val=audit.n_val if audit is not None else 0,
        gate=_gate(run, policy) if policy is not None else None,
        problems=tuple(dict.fromkeys(problems)),  # the scores and the audit meet the same unreadable file
        notes=tuple(notes),
    )


def _prep_for(run: Run, name: str, prepared: dict[str, metrics.Prepared]) -> metrics.Prepared | None:
    """A winner under a later metric may be neither chosen nor first winner: read it then."""
    if name in prepared:
        return prepared[name]
    ckpt = run.checkpoint(name)
    if ckpt is None or not ckpt.has_split("val"):
        return None
    try:
        prepared[name] = prepare_predictions(run, read_predictions(run, ckpt, "val"))
    except RunFormatError:
        return None
    return prepared[name]


def _gate(run: Run, policy: object) -> GateView:
    from .gate import check

    result = check(run.path, policy, None)  # type: ignore[arg-type]
    return GateView(
        passed=result.passed,
        metric=result.metric,
        rules=tuple((r.name, r.passed, r.skipped, r.message) for r in result.rules),
    )


def build_report(
    paths: Sequence[str | Path],
    metrics: Sequence[str] = (),
    *,
    mode: str | None = None,
    resamples: int = bootstrap.DEFAULT_RESAMPLES,
    seed: int = bootstrap.DEFAULT_SEED,
    diagnostics: bool = True,
    policy: object | None = None,
    title: str | None = None,
) -> Report:
    """Gather the report of every run under ``paths``.

    ``metrics`` are metric specs (the first orders; default per task: the audit's metric).
    A metric that does not apply to some run of a sweep is noted for that run, and the run
    is still shown. ``policy`` (a :class:`~ckptaudit.config.Policy`) adds the gate's verdict.
    """
    from .limits import MAX_RESAMPLES, check_resamples

    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples > MAX_RESAMPLES:
        check_resamples(resamples)  # (fewer than 100, even 0, is the page's own business: it clamps)
    runs = discover(paths)
    logged = sorted({n for r in runs for n in r.logged_names()})
    specs = [parse_metric(t, mode=mode, logged=logged) for t in metrics]
    if len({s.text for s in specs}) != len(specs):
        raise MetricError("a metric is given twice")
    reports = []
    for run in runs:
        try:
            reports.append(report_run(run, specs, resamples=resamples, seed=seed, diagnostics=diagnostics, policy=policy))
        except CkptauditError as exc:
            # NOTE: one broken run is reported; the others still go on.
            reports.append(_broken(run, str(exc)))
    problems = tuple(p for r in reports for p in r.problems)
    return Report(
        runs=tuple(reports),
        metrics=tuple(s.text for s in specs),
        problems=problems,
        title=title or "ckptaudit report",
        options={"resamples": resamples, "seed": seed, "paths": [str(p) for p in paths]},
    )


def _broken(run: Run, problem: str) -> RunReport:
    x, x_label = _x_axis(run)
    return RunReport(
        name=run.name,
        task=run.task,
        selected_by=None if run.selected_by is None else run.selected_by.metric,
        chosen=run.chosen,
        checkpoints=run.checkpoints,
        x=x,
        x_label=x_label,
        metrics=(),
        charts=tuple(_logged_charts(run)),
        winner=None,
        decision=(),
        selection=Selection(None, None, ""),
        findings=(),
        explanations={},
        diagnostics=(),
        problems=(problem,),
    )
