"""``report``: gather everything a person needs to see about a checkpoint choice, as plain data.

:func:`build_report` judges each run once (:mod:`ckptaudit.verdict`: one evaluation pass
feeds every metric's values and intervals, the selection statistics, the audit and, with a
policy, the gate) and returns a :class:`Report`: per run the metric curves over epochs, the
chosen checkpoint and the winner under the first metric, the checkpoints that cannot be told
apart from the best, the decision table with intervals, the findings with their
explanations, and diagnostics (:mod:`ckptaudit.diagnostics`) of the chosen checkpoint and the
winner. Every number is read from the verdict, so the page's numbers are the CLI's.
Renderers turn it into a page (``ckptaudit.render.html``), JSON
(``ckptaudit.render.report_json``) or a static figure (``ckptaudit.plotting``); nothing here
formats anything. The records themselves are in :mod:`.model` (re-exported here).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..auditing import DEFAULT_METRIC, RunAudit
from ..auditing.rules import CODES

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
from ..errors import CkptauditError, MetricError, RunFormatError
from ..metrics.evaluation import _nonfinite, prepare_predictions, selected_modes
from ..metrics.spec import MetricSpec, check_applies, parse_metric
from ..stats import bootstrap
from ..store.reader import Run, discover, read_predictions
from ..store.runformat import NO_TASK_YET
from .focus import COPY_LIMIT, FocusWatch
from .model import Chart as Chart
from .model import CorrectedEstimate as CorrectedEstimate
from .model import DecisionRow as DecisionRow
from .model import Explanation as Explanation
from .model import GateView as GateView
from .model import Report as Report
from .model import RunReport as RunReport
from .model import Selection as Selection
from .model import Series as Series

_SPLIT_PREFIX = re.compile(r"^(train|training|val|valid|validation|eval|test)[_/-]", re.IGNORECASE)


# --------------------------------------------------------------------------- selection


def selection_of(m: Any) -> Selection:
    """The report's view of a metric's selection statistics (a
    :class:`~ckptaudit.verdict.MetricVerdict`): the set of checkpoints that cannot be told
    apart from the best (a 95% model confidence set) and the winner's value expected on new
    data; metrics without per-row statistics (logged, custom, ...) get neither, and the page
    says so."""
    sel = m.selection
    if sel is None:
        return Selection(tied_best=None, corrected=None, method="")
    est = sel.estimate
    corrected = (
        None
        if est is None
        else CorrectedEstimate(est.expected, est.interval[0], est.interval[1], est.raw, sel.correction, m.spec.maximize)
    )
    return Selection(tied_best=tuple(sel.tied_best) or None, corrected=corrected, method=sel.method)


def selection_evidence(
    run: Run,
    spec: MetricSpec,
    audit: RunAudit | None,
    winner: str | None,
    *,
    resamples: int = bootstrap.DEFAULT_RESAMPLES,
    seed: int = bootstrap.DEFAULT_SEED,
) -> Selection:
    """:func:`selection_of` the verdict of ``run`` under ``spec`` (kept for callers of the
    library; the report reads the verdict it already has)."""
    if winner is None or not bootstrap.supports(spec):
        return Selection(tied_best=None, corrected=None, method="")
    from ..verdict.build import Options, evaluate_run

    verdict = evaluate_run(run, [spec], Options(audit=False, resamples=resamples, seed=seed, guard=False))
    return selection_of(verdict.primary)


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


def _run_options(first: MetricSpec, resamples: int, seed: int, policy: object | None) -> Any:
    """What the run's verdict is asked for: statistics of every metric and the audit; the
    gate's rules in the same verdict when the policy judges the report's first metric with
    the report's resamples and seed (else the gate is a verdict of its own, :func:`_gate`)."""
    from ..verdict.build import Options

    same = (
        policy is not None
        and policy.metric_spec() == first.text  # type: ignore[attr-defined]
        and (policy.resamples, policy.seed) == (resamples, seed)  # type: ignore[attr-defined]
    )
    # NOTE: the report shows a run whose validation set changed (the audit flags it)
    # instead of refusing it, so guard=False here.
    if not same:
        return Options(resamples=resamples, seed=seed, guard=False)
    from ..gate.engine import judge

    return Options(resamples=resamples, seed=seed, guard=False, policy=policy, judge=judge)  # type: ignore[arg-type]


def report_run(
    run: Run,
    specs: Sequence[MetricSpec],
    *,
    resamples: int = bootstrap.DEFAULT_RESAMPLES,
    seed: int = bootstrap.DEFAULT_SEED,
    diagnostics: bool = True,
    policy: object | None = None,
) -> RunReport:
    """Gather one run's report (curves, decision, selection, findings, diagnostics), every
    number read from the run's verdict (:mod:`ckptaudit.verdict`)."""
    scanned = _scan(run, specs, resamples=resamples, seed=seed, policy=policy)
    return _report(run, scanned, resamples=resamples, seed=seed, diagnostics=diagnostics, policy=policy)


def _scan(run: Run, specs: Sequence[MetricSpec], *, resamples: int, seed: int, policy: object | None) -> tuple[Any, ...]:
    """A run's one pass for :func:`report_run`: (its pass, scores, watch, notes)."""
    from ..verdict.build import scan_run

    notes: list[str] = []
    if specs:
        specs, skipped = _applicable(run, specs)
        notes += skipped
    if not specs and not run.task:  # an imported run not yet predicted: what training selected by
        if run.selected_by is None:
            raise MetricError(f"give --metric: {NO_TASK_YET}", run.name)
        specs = [parse_metric(run.selected_by.metric, logged=run.logged_names(), logged_modes=selected_modes([run]))]
    if not specs:
        specs = [parse_metric(DEFAULT_METRIC[run.task], logged=run.logged_names())]
        if notes:
            notes.append(f"shown by {specs[0].text}, the audit's default for a {run.task} run, instead")
    options = _run_options(specs[0], resamples, seed, policy)
    watch = _watch(run, specs[0])
    gather, scores = scan_run(run, specs, options, observe=watch)
    return gather, scores, watch, notes


def _report(
    run: Run, scanned: tuple[Any, ...], *, resamples: int, seed: int, diagnostics: bool, policy: object | None
) -> RunReport:
    """:func:`report_run` from the run's pass (:func:`_scan`)."""
    gather, scores, watch, notes = scanned
    problems: list[str] = []
    verdict = gather.finish(scores, run.skipped)
    bound = [m.spec for m in verdict.metrics]
    problems += verdict.problems
    audit = verdict.audit
    if verdict.audit_error is not None:
        problems.append(str(verdict.audit_error))
    elif audit is not None:
        problems += audit.problems
    if verdict.chosen.problem:
        problems.append(verdict.chosen.problem)

    names = [c.name for c in verdict.checkpoints]
    winner = verdict.winner(0)
    chosen = None if verdict.chosen.checkpoint is None else verdict.chosen.checkpoint.name

    charts: list[Chart] = []
    for k, m in enumerate(verdict.metrics):
        spec = m.spec
        series = [Series("validation", "val", m.values)]
        if k == 0 and audit is not None and audit.spec.text == spec.text:
            train = tuple(st.train_value for st in audit.stats)
            if any(v is not None for v in train):
                series.append(Series("train", "train", train))
        charts.append(Chart(f"metric-{k}", spec.text, spec.text, spec.maximize, tuple(series), primary=k == 0))
    # NOTE: a logged quantity identical to a scored metric (val_accuracy = accuracy) is not drawn twice.
    drawn = [c.series[0].values for c in charts]
    charts += [c for c in _logged_charts(run) if not (len(c.series) == 1 and any(_same(c.series[0].values, d) for d in drawn))]

    decision = []
    for k, m in enumerate(verdict.metrics):
        w = verdict.index(verdict.winner(k))
        c = verdict.index(chosen)
        decision.append(
            DecisionRow(
                metric=m.text,
                maximize=m.spec.maximize,
                winner=None if w is None else names[w],
                winner_epoch=None if w is None else verdict.checkpoints[w].epoch,
                winner_value=None if w is None else m.values[w],
                winner_interval=None if w is None else m.interval_of(w),
                chosen_value=None if c is None else m.values[c],
                chosen_interval=None if c is None else m.interval_of(c),
            )
        )

    diags: list[Diagnostics] = []
    if diagnostics:
        diags = _diagnostics(
            run,
            [n for n in dict.fromkeys([chosen, winner]) if n is not None],
            chosen,
            winner,
            problems,
            bound[0] if bound else None,
            watch,
        )

    findings = verdict.findings
    explanations = {
        f.code: Explanation(CODES[f.code].summary, CODES[f.code].why, CODES[f.code].action) for f in findings if f.code in CODES
    }
    x, x_label = _x_axis(run)
    # slices (issue 24): the per-slice table, the rank --by group rows
    from .slices import slice_table

    slices = slice_table(run, verdict, resamples=resamples, seed=seed, notes=notes, seen=watch)
    if watch is not None:
        watch.release()
    gate = None
    if verdict.rules:
        gate = _gate_view(verdict.primary.text, verdict.rules)
    elif policy is not None:
        gate = _gate(run, policy)
    return RunReport(
        name=run.name,
        task=run.task,
        selected_by=None if run.selected_by is None else run.selected_by.metric,
        chosen=chosen,
        checkpoints=verdict.checkpoints,
        x=x,
        x_label=x_label,
        metrics=tuple(s.text for s in bound),
        charts=tuple(charts),
        winner=winner,
        decision=tuple(decision),
        selection=selection_of(verdict.primary) if winner is not None else Selection(None, None, ""),
        findings=findings,
        explanations=explanations,
        diagnostics=tuple(diags),
        n_val=audit.n_val if audit is not None else 0,
        gate=gate,
        problems=tuple(dict.fromkeys(problems)),  # the scores and the audit meet the same unreadable file
        notes=tuple(notes),
        verdict=verdict,
        slices=slices,
    )


def _watch(run: Run, first: MetricSpec) -> FocusWatch | None:
    """The report's observer of the run's pass (:mod:`.focus`), None when the first metric
    does not bind to the run (the pass then says why)."""
    try:
        bound = first.for_run(run.classes, run.task, run.positive_class, run.num_classes)
    except CkptauditError:
        return None
    return FocusWatch(run, bound, run.chosen)


def _diagnostics(
    run: Run,
    focus: list[str],
    chosen: str | None,
    winner: str | None,
    problems: list[str],
    spec: Any = None,
    watch: FocusWatch | None = None,
) -> list[Diagnostics]:
    """Diagnostics of the two checkpoints that matter, drawn from the pass's predictions
    (``watch``); a checkpoint the pass did not read is read here."""
    out = []
    for name in focus:
        roles = tuple(r for r, n in (("chosen", chosen), ("winner", winner)) if n == name)
        found, drawn = (False, None) if watch is None else watch.diagnostics(name, roles)
        if found:
            if drawn is not None:
                out.append(drawn)
            continue
        ckpt = run.checkpoint(name)
        if ckpt is None or not ckpt.has_split("val"):
            continue
        try:
            preds = read_predictions(run, ckpt, "val")
        except RunFormatError as exc:
            problems.append(str(exc))
            continue
        if _nonfinite(preds.output):
            continue
        out.append(diagnose(run, ckpt, roles, prepare_predictions(run, preds), spec))
    return out


def _gate_view(metric: str, rules: Sequence[Any]) -> GateView:
    return GateView(
        passed=all(r.passed for r in rules),
        metric=metric,
        rules=tuple((r.name, r.passed, r.skipped, r.message) for r in rules),
        churn=_churn_details(rules),  # slices (issue 24)
    )


def _churn_details(rules: Sequence[Any]) -> dict[str, Any] | None:
    from .slices import churn_details

    return churn_details(rules)


def _gate(run: Run, policy: object) -> GateView:
    """The gate's verdict under a policy that judges another metric (or other resamples)
    than the report's first: a verdict of its own."""
    from ..gate import check

    result = check(run.path, policy, None)  # type: ignore[arg-type]
    return _gate_view(result.metric, result.rules)


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
    from ..limits import MAX_RESAMPLES, check_resamples

    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples > MAX_RESAMPLES:
        check_resamples(resamples)  # (fewer than 100, even 0, is the page's own business: it clamps)
    runs = discover(paths)
    logged = sorted({n for r in runs for n in r.logged_names()})
    specs = [parse_metric(t, mode=mode, logged=logged, logged_modes=selected_modes(runs)) for t in metrics]
    if len({s.text for s in specs}) != len(specs):
        raise MetricError("a metric is given twice")
    from ..verdict.build import WINDOW, batchable, batched_selections

    reports = []
    # NOTE: in windows of runs: each run's pass, the window's selections batched where the runs
    # resample alike (issue 21), then each run's report, in the runs' order
    pending = list(runs)
    while pending:
        scanned: list[tuple[Run, Any]] = []  # (run, its pass, or the problem that broke it)
        held = 0  # bytes of the best predictions the window's watches keep (a window stops at COPY_LIMIT)
        while pending and len(scanned) < WINDOW and held <= COPY_LIMIT:
            run = pending.pop(0)
            try:
                done = _scan(run, specs, resamples=resamples, seed=seed, policy=policy)
            except CkptauditError as exc:
                scanned.append((run, str(exc)))
                continue
            if not batchable(done[0]):  # (judged at once: holding it would only cost memory)
                scanned.append((run, _report_or_broken(run, done, resamples, seed, diagnostics, policy)))
                continue
            scanned.append((run, done))
            held += 0 if done[2] is None else done[2].held_bytes()
        with batched_selections([done[0] for _, done in scanned if isinstance(done, tuple)]):
            for run, done in scanned:
                if isinstance(done, str):
                    reports.append(_broken(run, done))
                elif isinstance(done, tuple):
                    reports.append(_report_or_broken(run, done, resamples, seed, diagnostics, policy))
                else:
                    reports.append(done)
    problems = tuple(p for r in reports for p in r.problems)
    return Report(
        runs=tuple(reports),
        metrics=tuple(s.text for s in specs),
        problems=problems,
        title=title or "ckptaudit report",
        options={"resamples": resamples, "seed": seed, "paths": [str(p) for p in paths]},
    )


def _report_or_broken(
    run: Run, scanned: tuple[Any, ...], resamples: int, seed: int, diagnostics: bool, policy: object | None
) -> RunReport:
    """:func:`_report`, or a broken run's report: one broken run is reported, the others go on."""
    try:
        return _report(run, scanned, resamples=resamples, seed=seed, diagnostics=diagnostics, policy=policy)
    except CkptauditError as exc:
        return _broken(run, str(exc))


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
