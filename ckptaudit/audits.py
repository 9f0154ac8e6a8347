"""``audit``: the findings of each run's verdict, for a run or a sweep.

Each run is judged once (:mod:`ckptaudit.verdict`: one evaluation pass feeds the audit's
statistics and, with ``noise``, the selection statistics its ``winner-within-noise`` check
reads); this view gathers the findings, what could not be read and what was left out. The
findings themselves are the audit engine's (:mod:`ckptaudit.auditing`), one module per code.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .auditing.engine import AuditOptions, AuditReport, audit_spec
from .errors import CkptauditError, MetricError
from .metrics.spec import parse_metric
from .store.reader import Run, Skipped


def audit_verdict(run: Run, options: AuditOptions) -> object:
    """The verdict of ``run`` under the audit's metric and ``options`` (the run is shown even
    when its validation set changed: the audit flags that, it does not stop)."""
    from .verdict.build import Options, evaluate_run

    spec = audit_spec(run, options)
    judged = Options(
        statistics=options.noise,
        all_metrics=False,
        audit=True,
        resamples=options.resamples,
        seed=options.seed,
        mode=options.mode,
        guard=False,
        audit_options=options,
    )
    return evaluate_run(run, [spec], judged)


def audit_paths(paths: Sequence[str | Path], options: AuditOptions = AuditOptions()) -> AuditReport:
    """Audit every run under ``paths``; findings grouped by run, most severe first.

    A run that cannot be audited (unreadable, no checkpoint yet, a metric that does not
    apply to it) is left out with the reason (``AuditReport.skipped``); the others are
    audited. When every run is left out, :class:`~ckptaudit.sweep.NothingLeftError`.
    """
    from .store.reader import discover_sweep
    from .sweep import NothingLeftError, problems_of

    runs, skipped = discover_sweep(paths)
    if runs and options.metric is not None:
        # NOTE: a misspelt metric is one error for the whole command, not one per run.
        from .metrics.evaluation import selected_modes

        logged = sorted({n for r in runs for n in r.logged_names()})
        parse_metric(options.metric, mode=options.mode, logged=logged, logged_modes=selected_modes(runs))
    audits = []
    for run in runs:
        try:
            verdict = audit_verdict(run, options)
            if verdict.audit_error is not None:  # type: ignore[attr-defined]
                raise verdict.audit_error  # type: ignore[attr-defined]
            audits.append(verdict.audit)  # type: ignore[attr-defined]
        except MetricError as exc:
            kind = "skipped" if exc.path in (None, run.name) else "error"  # a custom metric that raised is an error
            skipped.append(Skipped(run.name, exc.path or run.name, exc.problem, kind))
        except CkptauditError as exc:
            skipped.append(Skipped(run.name, exc.path or run.name, exc.problem, "error"))
    if not audits:
        raise NothingLeftError(skipped)
    return AuditReport(
        findings=tuple(f for ra in audits for f in ra.findings),
        problems=tuple(p for ra in audits for p in ra.problems) + problems_of(skipped),
        runs=tuple(audits),
        skipped=tuple(skipped),
    )
