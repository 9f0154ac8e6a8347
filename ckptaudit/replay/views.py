"""The documents ``ckptaudit replay`` renders (one row per rule and run; one per rule with --sweep).

A view only selects and formats: every number comes from :class:`~.engine.RuleResult`
(the verdict and :mod:`ckptaudit.stats.regret`) or :mod:`.sweep`.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..render import Document
from .engine import ReplayReport
from .sweep import RuleSummary


def _ci(ci: tuple[float, float] | None) -> str | None:
    return None if ci is None else f"[{ci[0]:.4f}, {ci[1]:.4f}]"


def replay_document(report: ReplayReport) -> Document:
    """Columns: run, rule, stop epoch, kept, deleted, shipped, metric value, regret with its
    95% interval, within noise, epochs saved, seconds saved."""
    rows = []
    for r in report.results:
        rows.append(
            [
                r.run,
                r.rule,
                r.stop_epoch if r.stopped else f"{r.stop_epoch} (end)",
                len(r.kept),
                len(r.deleted),
                r.shipped,
                r.shipped_value,
                r.regret,
                _ci(r.regret_ci95),
                {True: "yes", False: "no", None: None}[r.within_noise],
                r.epochs_saved,
                r.seconds_saved,
            ]
        )
    best = {
        r.run: f"{r.run}: post-hoc best {r.best} ({report.metric} {r.best_value:.4f})"
        for r in report.results
        if r.best_value is not None
    }
    return Document(
        title=f"ckptaudit replay ({report.metric})",
        columns=[
            "run",
            "rule",
            "stop epoch",
            "kept",
            "deleted",
            "shipped",
            report.metric,
            "regret",
            "regret ci95",
            "within noise",
            "epochs saved",
            "seconds saved",
        ],
        rows=rows,
        records={"metric": report.metric, "rules": list(report.rules), "results": [r.as_dict() for r in report.results]},
        footer=tuple(best.values()) + tuple(dict.fromkeys(f"{r.run}: {r.rule}: {r.note}" for r in report.results if r.note)),
    )


def sweep_document(report: ReplayReport, summaries: Sequence[RuleSummary]) -> Document:
    """Columns: rank, rule, runs, mean regret with its 95% interval over runs, p_best,
    mean epochs saved, runs stopped early."""
    rows = [
        [s.rank, s.rule, s.runs, s.mean_regret, _ci(s.regret_ci95), s.p_best, s.mean_epochs_saved, s.stopped_runs]
        for s in summaries
    ]
    records = {
        "metric": report.metric,
        "rules": [{**s.__dict__, "regret_ci95": None if s.regret_ci95 is None else list(s.regret_ci95)} for s in summaries],
        "results": [r.as_dict() for r in report.results],
    }
    return Document(
        title=f"ckptaudit replay --sweep ({report.metric})",
        columns=["rank", "rule", "runs", "mean regret", "ci95 (over runs)", "p_best", "epochs saved", "stopped"],
        rows=rows,
        records=records,
    )
