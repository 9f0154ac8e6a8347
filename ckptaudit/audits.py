"""``audit``: the findings of each run's verdict, for a run or a sweep.

Each run is judged once (:mod:`ckptaudit.verdict`: one evaluation pass feeds the audit's
statistics and, with ``noise``, the selection statistics its ``winner-within-noise`` check
reads); this view gathers the findings, what could not be read and what was left out. The
findings themselves are the audit engine's (:mod:`ckptaudit.auditing`), one module per code.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .auditing.engine import AuditOptions, AuditReport, audit_spec
from .errors import CkptauditError, MetricError
from .metrics.spec import parse_metric
from .store.reader import Run, Skipped


def audit_verdict(run: Run, options: AuditOptions) -> object:
    """The verdict of ``run`` under the audit's metric and ``options`` (the run is shown even
    when its validation set changed: the audit flags that, it does not stop)."""
    from .verdict.build import evaluate_run

    return evaluate_run(run, [audit_spec(run, options)], _judged(options))


def _judged(options: AuditOptions) -> Any:
    """The verdict options of an audit."""
    from .verdict.build import Options

    return Options(
        statistics=options.noise,
        all_metrics=False,
        audit=True,
        resamples=options.resamples,
        seed=options.seed,
        mode=options.mode,
        guard=False,
        audit_options=options,
    )


def _audit_of(run: Run, done: tuple[Any, Any], left: list[Skipped]) -> Any:
    """The audit of a run from its pass (None: left out, the reason in ``left``)."""
    with _skipping(run, left):
        verdict = done[0].finish(done[1], run.skipped)
        if verdict.audit_error is not None:
            raise verdict.audit_error
        return verdict.audit
    return None


@contextmanager
def _skipping(run: Run, skipped: list[Skipped]) -> Iterator[None]:
    """Record a run that cannot be audited as left out, with the reason, and go on."""
    try:
        yield
    except MetricError as exc:
        kind = "skipped" if exc.path in (None, run.name) else "error"  # a custom metric that raised is an error
        skipped.append(Skipped(run.name, exc.path or run.name, exc.problem, kind))
    except CkptauditError as exc:
        skipped.append(Skipped(run.name, exc.path or run.name, exc.problem, "error"))


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
    from .verdict.build import WINDOW, batchable, batched_selections, scan_run

    judged = _judged(options)
    audits = []
    # NOTE: in windows of runs: each run's pass, then the window's selections batched where
    # the runs resample alike, then each verdict (issue 21: one wide product, not one a run);
    # a run that cannot be batched is judged at once, not held (its row data is memory)
    for first in range(0, len(runs), WINDOW):
        scanned: list[tuple[Run, Any, list[Skipped]]] = []  # (run, its pass or its audit, why it was left out)
        for run in runs[first : first + WINDOW]:
            left: list[Skipped] = []
            entry: Any = None
            with _skipping(run, left):
                done = scan_run(run, [audit_spec(run, options)], judged)
                entry = done if batchable(done[0]) else _audit_of(run, done, left)
            scanned.append((run, entry, left))
        with batched_selections([done[0] for _, done, _ in scanned if isinstance(done, tuple)]):
            for run, done, left in scanned:  # (in the runs' order, as one run at a time)
                if isinstance(done, tuple):
                    done = _audit_of(run, done, left)
                if done is not None:
                    audits.append(done)
                skipped.extend(left)
    if not audits:
        raise NothingLeftError(skipped)
    return AuditReport(
        findings=tuple(f for ra in audits for f in ra.findings),
        problems=tuple(p for ra in audits for p in ra.problems) + problems_of(skipped),
        runs=tuple(audits),
        skipped=tuple(skipped),
    )
