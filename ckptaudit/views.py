"""How each command's result becomes a :class:`~ckptaudit.render.Document`.

The library returns plain data (rankings, findings, plans, verdicts); these functions
choose the columns people read in a terminal and the records scripts parse from JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .render import Check, Document
from .store.runformat import COMBINED_PREFIX

if TYPE_CHECKING:
    # NOTE: types only: `rank` must not import the audit, the gate, pick or prune to start.
    from .auditing.finding import Finding
    from .gate import GateResult
    from .picking import Pick
    from .pruning import PrunePlan
    from .ranking import Ranking


def ranking_document(ranking: Ranking, *, show_ci: bool = False, show_flags: bool = False) -> Document:
    """Columns: rank, run (for a sweep), checkpoint, epoch, each metric, ci95 and flags (when
    asked for) and notes (when any row has one). JSON rows always carry flags and notes."""
    many_runs = len({r.run for r in ranking.rows}) > 1 or len(ranking.runs) > 1
    show_notes = any(r.notes for r in ranking.rows)
    columns = ["rank"] + (["run"] if many_runs else []) + ["checkpoint", "epoch"] + ranking.metric_names
    if show_ci:
        columns += ["ci95", "tied best"]
    columns += (["flags"] if show_flags else []) + (["notes"] if show_notes else [])
    # combine (issue 22): a column marking combined checkpoints and their members, when any
    # (the combining package is imported only then: a plain rank's start-up, 6 ms)
    combined: dict[Any, str] = {}  # (run name, checkpoint) -> its mark
    if any(c.name.startswith(COMBINED_PREFIX) for run in ranking.runs for c in run.checkpoints):
        from .combining.marks import combination_marks

        combined = combination_marks(ranking.runs)
    columns += ["combined"] if combined else []
    rows = []
    for r in ranking.rows:
        row: list[object] = [r.rank if r.rank is not None else "-"]
        if many_runs:
            row.append(r.run)
        row += [r.checkpoint, r.epoch]
        row += [r.values.get(m) for m in ranking.metric_names]
        if show_ci:
            row.append(f"[{r.interval[0]:.4f}, {r.interval[1]:.4f}]" if r.interval else None)
            row.append(None if r.tied_best is None else ("yes" if r.tied_best else "no"))
        if show_flags:
            row.append(",".join(r.flags))
        if show_notes:
            row.append("; ".join(r.notes))
        if combined:
            row.append(combined.get((r.run, r.checkpoint), ""))
        rows.append(row)
    spec = ranking.specs[0]
    footer = [f"ordered by {spec.text} ({spec.mode}); ties go to the earlier epoch"]
    if show_ci:
        footer += selection_lines(ranking.selections.values())
    return Document(
        title=f"ckptaudit rank: {spec.text}",
        columns=columns,
        rows=rows,
        records=[
            {**r.as_dict(ranking.specs), **({"combined": combined.get((r.run, r.checkpoint))} if combined else {})}
            for r in ranking.rows
        ],
        footer=footer,
    )


def selection_lines(selections) -> list[str]:
    """One line per run: the winner's value expected on new data and how many checkpoints
    cannot be told apart from the best (ckptaudit.selection.RunSelection)."""
    lines = []
    for sel in selections:
        if sel.estimate is None:
            if sel.note:
                lines.append(f"{sel.run}: no selection statistics ({sel.note})")
            continue
        e = sel.estimate
        lines.append(
            f"{sel.run}: winner {e.checkpoint} {sel.metric} {e.raw:.4f}; expected on new data {e.expected:.4f} "
            f"[{e.interval[0]:.4f}, {e.interval[1]:.4f}] (optimism {e.optimism:+.4f}); "
            f"{len(sel.tied_best)} of {sum(c.value is not None for c in sel.checkpoints)} checkpoints cannot be told apart "
            f"from the best (95% model confidence set, {sel.resamples} resamples)" + _power(sel) + _few_positives(e)
        )
    return lines


def _few_positives(estimate) -> str:
    """Say when the winner estimate rests on too few positives to be calibrated, and when
    resamples were skipped for having none (they are not scored 0)."""
    text = ""
    if getattr(estimate, "too_few_positives", False):
        need = getattr(estimate, "positives_needed", None)
        text += f"; too few positives ({estimate.positives}" + (f"; about {need} needed" if need else "") + ")"
    skipped = getattr(estimate, "skipped_draws", 0)
    if skipped:
        text += f"; {skipped} resamples without a positive row were skipped"
    return text


def _power(sel) -> str:
    """The tie set's power, when the statistics give it (low power is not equivalence)."""
    from .verdict.model import detectable_difference

    mdd = detectable_difference(sel)
    return "" if mdd is None else f"; the validation set could detect a difference of {mdd:.4f} or more"


def findings_document(findings: Sequence[Finding], problems: Sequence[str] = (), fail_on: str = "error") -> Document:
    """Columns: severity, code, run, checkpoint, message; JSON: the list of findings.

    As checks (junit, github, markdown), a finding at or above ``fail_on`` is a FAIL; one
    below it is labelled by its severity (WARNING, INFO) and does not fail, as the exit
    code says."""
    from .auditing.finding import severity_rank

    rows = [[f.severity, f.code, f.run, f.checkpoint or "-", f.message] for f in findings]
    counts = {s: sum(f.severity == s for f in findings) for s in ("error", "warning", "info")}
    footer = [f"{len(findings)} finding(s): {counts['error']} error, {counts['warning']} warning, {counts['info']} info"]
    checks = []
    for f in findings:
        failing = fail_on != "never" and severity_rank(f.severity) >= severity_rank(fail_on)
        checks.append(
            Check(
                name=f"{f.code} {f.run}" + (f" {f.checkpoint}" if f.checkpoint else ""),
                ok=not failing,
                message=f.message,
                severity=f.severity,
                file=f.run,
                label=None if failing else f.severity.upper(),
            )
        )
    return Document(
        title="ckptaudit audit",
        columns=["severity", "code", "run", "checkpoint", "message"],
        rows=rows,
        records=[f.as_dict() for f in findings],
        checks=checks,
        footer=footer + [f"unreadable: {p}" for p in problems],
    )


def _mb(size: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def _operating_metric(p: Pick) -> str:
    """The metric cell of a pick: an operating point's threshold and how likely its
    constraint holds on new data (issue 20), read from the pick."""
    if p.threshold is None:
        return p.metric
    holds = p.constraint_holds
    return p.metric + f" at threshold {p.threshold!r}" + ("" if holds is None else f" (constraint holds {holds:.0%})")


def picks_document(picks: Sequence[Pick]) -> Document:
    """Columns: run, checkpoint, epoch, metric, value, ci95, expected on new data (with its
    interval), optimism, tied best (how many checkpoints cannot be told apart from the
    best), findings, placed at."""
    rows = []
    for p in picks:
        ci = f"[{p.interval[0]:.4f}, {p.interval[1]:.4f}]" if p.interval else None
        est = None if p.selection is None else p.selection.estimate
        expected = None if est is None else f"{est.expected:.4f} [{est.interval[0]:.4f}, {est.interval[1]:.4f}]"
        rows.append(
            [
                p.run.name,
                p.checkpoint.name,
                p.checkpoint.epoch,
                _operating_metric(p),
                p.value,
                ci,
                expected,
                None if est is None else f"{est.optimism:+.4f}",
                None if p.selection is None else len(p.selection.tied_best),
                ",".join(sorted({f["code"] for f in p.findings})),
                str(p.dest) if p.dest else "-",
            ]
        )
    return Document(
        title="ckptaudit pick",
        columns=[
            "run",
            "checkpoint",
            "epoch",
            "metric",
            "value",
            "ci95",
            "expected on new data",
            "optimism",
            "tied best",
            "findings",
            "placed at",
        ],
        rows=rows,
        records=[{**p.as_dict(), "provenance": None if p.provenance is None else str(p.provenance)} for p in picks],
        footer=[f"provenance written to {p.provenance}" for p in picks if p.provenance]
        + [_across_line(p) for p in picks if p.across],
    )


def _across_line(p: Pick) -> str:
    """What ``pick --across`` compared, and what its estimate corrects for."""
    a = p.across
    params = p.run.raw.get("params")
    head = f"picked among {a.checkpoints} checkpoints of {a.runs} runs"
    if isinstance(params, dict) and params:  # a sweep's trial (import raytune/optuna): what won
        head += " (the winner's params: " + ", ".join(f"{k}={v}" for k, v in params.items()) + ")"
    if a.note is None:
        return f"{head}; expected on new data and tied best are across the whole sweep"
    return f"{head}; {a.note}"


def prune_document(plans: Sequence[PrunePlan]) -> Document:
    """Columns: run, checkpoint, epoch, action, kept by (and why), size; a footer with the space reclaimed."""
    rows = []
    for p in plans:
        for e in p.entries:
            moved = f"move to {e.trash}" if e.trash else ""
            action = {
                "keep": "keep",
                "delete": (f"MOVE to {e.trash}" if moved else "DELETE") if not p.executed else ("moved" if moved else "deleted"),
                "finish": f"finish (interrupted prune{', ' + moved if moved else ''})" if not p.executed else "finished",
                "alias": "alias (untouched)",
            }[e.action]
            why = ", ".join(e.kept_by) or "-"
            if e.note:
                why = f"{why} ({e.note})" if e.kept_by else e.note
            rows.append([p.run.name, e.checkpoint, e.epoch if e.epoch is not None else "-", action, why, _mb(e.size)])
    total = sum(p.reclaimed for p in plans)
    n = sum(1 for p in plans for e in p.entries if e.action in ("delete", "finish"))
    executed = any(p.executed for p in plans)
    footer = [f"{'reclaimed' if executed else 'would reclaim'} {_mb(total)} from {n} checkpoint(s)"]
    footer += [f"{p.run.name}: only {', '.join(p.scope)} considered (rules judged on the whole run)" for p in plans if p.scope]
    footer += [line for p in plans for line in p.notes]  # both sizes; whether the statistics change
    if not executed:
        footer.append("dry run: nothing was deleted; add --yes to delete")
    return Document(
        title="ckptaudit prune",
        columns=["run", "checkpoint", "epoch", "action", "kept by", "size"],
        rows=rows,
        records=[p.as_dict() for p in plans],
        footer=footer,
    )


def gate_document(result: GateResult) -> Document:
    """One check per rule (PASS/FAIL lines, junit testcases, github annotations)."""
    checks = [
        Check(
            name=r.name,
            ok=r.passed,
            message=("(skipped) " if r.skipped else "") + r.message,
            severity="error",
            file=result.run.name,
        )
        for r in result.rules
    ]
    chosen = "none" if result.chosen is None else f"{result.chosen.name} ({result.chosen_how})"
    verdict = "PASSED" if result.passed else "FAILED"
    footer = [
        f"{verdict}: {result.run.name}, chosen {chosen}, metric {result.metric}"
        + (f", policy from {result.policy.source}" if result.policy.source else "")
    ]
    from .gate.rules import churn  # slices (issue 24): the per-slice churn table and the flips

    footer += [line for r in result.rules if r.name == churn.NAME for line in churn.lines(r.details)]
    return Document(
        title=f"ckptaudit check: {verdict.lower()}",
        columns=["result", "rule", "details"],
        rows=[["PASS" if r.passed else "FAIL", r.name, r.message] for r in result.rules],
        records=result.as_dict(),
        checks=checks,
        footer=footer,
    )
