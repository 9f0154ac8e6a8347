"""How each command's result becomes a :class:`~ckptaudit.render.Document`.

The library returns plain data (rankings, findings, plans, verdicts); these functions
choose the columns people read in a terminal and the records scripts parse from JSON.
"""

from __future__ import annotations

from typing import Sequence

from .findings import Finding
from .ranking import Ranking
from .render import Check, Document


def ranking_document(ranking: Ranking, *, show_ci: bool = False) -> Document:
    """Columns: rank, run (for a sweep), checkpoint, epoch, each metric, ci95, flags, notes."""
    many_runs = len({r.run for r in ranking.rows}) > 1 or len(ranking.runs) > 1
    columns = ["rank"] + (["run"] if many_runs else []) + ["checkpoint", "epoch"] + ranking.metric_names
    if show_ci:
        columns.append("ci95")
    columns += ["flags", "notes"]
    rows = []
    for r in ranking.rows:
        row: list[object] = [r.rank if r.rank is not None else "-"]
        if many_runs:
            row.append(r.run)
        row += [r.checkpoint, r.epoch]
        row += [r.values.get(m) for m in ranking.metric_names]
        if show_ci:
            row.append(f"[{r.interval[0]:.4f}, {r.interval[1]:.4f}]" if r.interval else None)
        row += [",".join(r.flags), "; ".join(r.notes)]
        rows.append(row)
    spec = ranking.specs[0]
    footer = [f"ordered by {spec.text} ({spec.mode}); ties go to the earlier epoch"]
    return Document(
        title=f"ckptaudit rank: {spec.text}",
        columns=columns,
        rows=rows,
        records=[r.as_dict(ranking.specs) for r in ranking.rows],
        footer=footer,
    )


def findings_document(findings: Sequence[Finding], problems: Sequence[str] = ()) -> Document:
    """Columns: severity, code, run, checkpoint, message; JSON: the list of findings."""
    rows = [[f.severity, f.code, f.run, f.checkpoint or "-", f.message] for f in findings]
    counts = {s: sum(f.severity == s for f in findings) for s in ("error", "warning", "info")}
    footer = [f"{len(findings)} finding(s): {counts['error']} error, {counts['warning']} warning, {counts['info']} info"]
    checks = [Check(name=f"{f.code} {f.run}" + (f" {f.checkpoint}" if f.checkpoint else ""), ok=False,
                    message=f.message, severity=f.severity, file=f.run) for f in findings]
    return Document(
        title="ckptaudit audit",
        columns=["severity", "code", "run", "checkpoint", "message"],
        rows=rows,
        records=[f.as_dict() for f in findings],
        checks=checks,
        footer=footer + [f"unreadable: {p}" for p in problems],
    )
