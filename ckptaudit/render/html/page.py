"""The HTML report page: one self-contained file (styles, script and data inlined).

:func:`render_report` turns a :class:`~ckptaudit.reporting.Report` into the page. The
layout, top to bottom: a header, the sweep view (one row per run, linking to its section)
when there are several runs, then per run a verdict line, the curves, the decision table
(and the gate's verdict), the findings with their explanations, and the diagnostics of the
chosen checkpoint and the winner. Hover data (checkpoint names and every value) lives once
per run in a JSON block that ``report.js`` reads; every chart is drawn server-side as SVG.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator
from datetime import datetime, timezone
from html import escape
from importlib import resources

from ...reporting import Diagnostics, Report, RunReport
from . import svg
from .svg import fmt

_SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def _num(v: float | None) -> float | None:
    """A value for the hover data: 5 significant digits (the page shows 4 decimals at most)."""
    if v is None or not math.isfinite(v):
        return None
    return float(f"{v:.5g}")


def _run_data(run: RunReport) -> dict[str, object]:
    cols = []
    seen = set()
    for chart in run.charts:
        for s in chart.series:
            label = s.label if chart.metric is None else (chart.title if s.split == "val" else f"{chart.title} (train)")
            if label in seen:
                continue
            seen.add(label)
            cols.append([label, [_num(v) for v in s.values]])
    return {
        "name": run.name,
        "names": [c.name for c in run.checkpoints],
        "epochs": [c.epoch for c in run.checkpoints],
        "x": list(run.x),
        "xlabel": run.x_label,
        "cols": cols,
        "chosen": run.chosen,
        "winner": run.winner,
        "metric": run.metrics[0] if run.metrics else None,
        "tied": list(run.selection.tied_best or []),
        # NOTE: the verdict's numbers at full precision (the CLI's, to the digit), for
        # scripts reading the page; the hover data above is rounded for display.
        "stats": None if run.verdict is None else _stats_data(run.verdict),
    }


def _stats_data(verdict: object) -> dict[str, object]:
    """Per metric: each checkpoint's ci95 and tie membership, and the winner estimate."""
    data = verdict.as_dict()  # type: ignore[attr-defined]
    return {
        m["metric"]: {
            "ci95": [c["ci95"] for c in m["checkpoints"]],
            "tied_best": m["tied_best"],
            "expected_on_new_data": m["expected_on_new_data"],
        }
        for m in data["metrics"]
    }


#: characters of embedded JSON that the HTML parser could read as markup: "</script" ends
#: the element early, "<!--" followed by "<script" puts the parser in the script data
#: double-escaped state (the block then swallows report.js); JSON's \\u escapes mean the same
#: string to JSON.parse and are not markup
_JSON_IN_HTML = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})


_SURROGATE = re.compile("[\ud800-\udfff]")


def embedded_json(value: object) -> str:
    """``value`` as JSON that is safe inside ``<script type="application/json">``: no ``<``,
    ``>`` or ``&`` (each written as its ``\\u`` escape, which JSON.parse reads back as the
    character)."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    return text.translate(_JSON_IN_HTML)


def _data_block(report: Report) -> str:
    safe = embedded_json({"runs": [_run_data(r) for r in report.runs]})
    return f'<script type="application/json" id="ckpt-data">{safe}</script>'


def _anchor(i: int) -> str:
    return f"run-{i}"


def _ckpt_link(i: int, name: str | None) -> str:
    if not name:
        return '<span class="muted">whole run</span>'
    return f'<a class="ck" href="#{_anchor(i)}-curves" data-run="{i}" data-ck="{escape(name)}">{escape(name)}</a>'


def _interval(iv: tuple[float, float] | None) -> str:
    return f'<span class="ci">[{fmt(iv[0])}, {fmt(iv[1])}]</span>' if iv else ""


def _direction(maximize: bool | None) -> str:
    if maximize is None:
        return ""
    return (
        '<span class="dir" title="higher is better">↑</span>'
        if maximize
        else '<span class="dir" title="lower is better">↓</span>'
    )


# --------------------------------------------------------------------------- sections


def _verdict(run: RunReport) -> str:
    """One sentence on whether the chosen checkpoint is the best under the first metric."""
    if not run.decision:
        return ""
    row = run.decision[0]
    metric = escape(row.metric)
    if row.winner is None:
        return f'<p class="verdict bad">No checkpoint could be scored by {metric}.</p>'
    best = f"<b>{escape(row.winner)}</b> (epoch {row.winner_epoch}, {metric} {fmt(row.winner_value)})"
    if run.chosen is None:
        return f'<p class="verdict neutral">No chosen checkpoint recorded (run.json <code>chosen</code>). Best by {metric}: {best}.</p>'
    picked = f" by {escape(run.selected_by)}" if run.selected_by else ""
    chosen = f"<b>{escape(run.chosen)}</b> (chosen{picked}, {metric} {fmt(row.chosen_value)})"
    if run.chosen == row.winner:
        return f'<p class="verdict good">The chosen checkpoint {chosen} is the best by {metric}.</p>'
    tied = run.selection.tied_best
    if tied is not None and run.chosen in tied:
        return (
            f'<p class="verdict warn">{chosen} is not the best by {metric}, but cannot be told apart from '
            f"{best}: the difference of {fmt(row.gap)} is within the noise of the validation set.</p>"
        )
    noise = " and the difference is beyond the noise" if tied is not None else ""
    return f'<p class="verdict bad">{chosen} is worse than {best} by {fmt(row.gap)}{noise}.</p>'


def _legend(run: RunReport) -> str:
    items = [
        '<span class="key val"><i></i>validation</span>',
        '<span class="key train"><i></i>train</span>' if any(s.split == "train" for c in run.charts for s in c.series) else "",
        '<span class="key chosen"><i></i>chosen</span>' if run.chosen else "",
        f'<span class="key winner"><i></i>best by {escape(run.metrics[0])}</span>' if run.winner and run.metrics else "",
    ]
    if run.selection.tied_best:
        items.append(
            f'<span class="key tied" title="{escape(run.selection.method)}"><i></i>cannot be told apart from the best '
            f"({len(run.selection.tied_best) - 1} other{'s' if len(run.selection.tied_best) != 2 else ''})</span>"
        )
    if run.selection.corrected is not None:
        items.append('<span class="key corrected"><i></i>expected on new data</span>')
    return '<div class="legend-row">' + "".join(items) + "</div>"


def _curves(run: RunReport, i: int) -> str:
    cards = []
    for chart in run.charts:
        title = escape(chart.title) + " " + _direction(chart.maximize)
        if chart.primary:
            drawn = svg.line_chart(run, i, chart, width=1140, height=290)
            cards.append(f'<figure class="card hero"><figcaption>{title}</figcaption>{drawn}</figure>')
        else:
            cards.append(f'<figure class="card"><figcaption>{title}</figcaption>{svg.line_chart(run, i, chart)}</figure>')
    return f'<section id="{_anchor(i)}-curves">{_legend(run)}<div class="charts">{"".join(cards)}</div></section>'


def _stats(run: RunReport) -> str:
    """The numbers that decide, as cards above the curves."""
    if not run.decision or run.decision[0].winner is None:
        return ""
    row = run.decision[0]
    metric = escape(row.metric)
    cards = []

    def card(cls: str, label: str, value: str, sub: str) -> None:
        cards.append(
            f'<div class="stat {cls}"><div class="label">{label}</div><div class="value">{value}</div><div class="sub">{sub}</div></div>'
        )

    def ci(iv: tuple[float, float] | None) -> str:
        return f"95% [{fmt(iv[0])}, {fmt(iv[1])}]" if iv else ""

    if run.chosen is not None:
        how = f" · selected by {escape(run.selected_by)}" if run.selected_by else ""
        card("chosen", f"chosen · {metric}", fmt(row.chosen_value), f"{escape(run.chosen)}{how}<br>{ci(row.chosen_interval)}")
    card(
        "winner",
        f"best · {metric}",
        fmt(row.winner_value),
        f"{escape(row.winner or '')} (epoch {row.winner_epoch})<br>{ci(row.winner_interval)}",
    )
    tied = run.selection.tied_best
    if row.gap is not None:
        within = tied is not None and run.chosen in tied
        cls = "good" if row.gap <= 0 else "warn" if within or tied is None else "bad"
        sub = (
            "the chosen is the best"
            if row.gap <= 0
            else "within the noise"
            if within
            else "beyond the noise"
            if tied is not None
            else ""
        )
        card(cls, "gap to the best", fmt(row.gap), sub)
    if tied is not None:
        card(
            "tied",
            "tied with the best",
            f"{len(tied) - 1} <span class='sub'>of {len(run.checkpoints) - 1} others</span>",
            "cannot be told apart from it",
        )
    c = run.selection.corrected
    if c is not None:
        card("corrected", "expected on new data", fmt(c.value), f"[{fmt(c.low)}, {fmt(c.high)}], optimism {fmt(c.optimism)}")
    sev = {s: sum(f.severity == s for f in run.findings) for s in ("error", "warning", "info")}
    counts = " · ".join(f"{n} {s}" for s, n in sev.items() if n) or "none"
    card("bad" if sev["error"] else "warn" if sev["warning"] else "", "findings", str(len(run.findings)), counts)
    return '<div class="stats">' + "".join(cards) + "</div>"


def _selection_note(run: RunReport) -> str:
    sel = run.selection
    parts = []
    if sel.tied_best:
        parts.append(
            f"<b>{len(sel.tied_best) - 1}</b> other checkpoint(s) cannot be told apart from the best by {escape(run.metrics[0])} "
            f'<span class="muted">({escape(sel.method)})</span>.'
        )
    if sel.corrected is not None:
        c = sel.corrected
        parts.append(
            f"Expected on new data (corrected for selecting the best of {len(run.checkpoints)}): <b>{fmt(c.value)}</b> "
            f"[{fmt(c.low)}, {fmt(c.high)}], measured {fmt(c.raw)} (optimism {fmt(c.optimism)}); {escape(c.method)}."
        )
    else:
        parts.append('<span class="muted">No selection-corrected estimate of the winner is available yet.</span>')
    return '<p class="note">' + " ".join(parts) + "</p>"


def _decision(run: RunReport, i: int) -> str:
    if not run.decision:
        return ""
    rows = []
    for d in run.decision:
        gap = d.gap
        cls = "" if gap is None or gap <= 0 else ' class="behind"'
        rows.append(
            f"<tr{cls}><td>{escape(d.metric)} {_direction(d.maximize)}</td>"
            f"<td class='num'>{fmt(d.chosen_value)} {_interval(d.chosen_interval)}</td>"
            f"<td>{_ckpt_link(i, d.winner)} <span class='muted'>epoch {d.winner_epoch}</span></td>"
            f"<td class='num'>{fmt(d.winner_value)} {_interval(d.winner_interval)}</td>"
            f"<td class='num'>{'–' if gap is None else fmt(gap)}</td></tr>"
        )
    chosen = _ckpt_link(i, run.chosen) if run.chosen else "none recorded"
    head = (
        f"<tr><th>metric</th><th>chosen {chosen}</th><th>best checkpoint</th><th>best value</th>"
        f"<th title='how much better the best is than the chosen'>gap</th></tr>"
    )
    table = f'<table class="decision"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'
    note = '<p class="muted small">Intervals: 95% bootstrap over validation rows.</p>'
    return f"<h3>The decision</h3>{table}{note}{_selection_note(run)}{_gate(run)}"


def _gate(run: RunReport) -> str:
    g = run.gate
    if g is None:
        return ""
    verdict = "PASSED" if g.passed else "FAILED"
    rows = "".join(
        f'<li class="{"pass" if ok else "fail"}"><b>{"skip" if skipped else "PASS" if ok else "FAIL"}</b> '
        f"<code>{escape(name)}</code> {escape(msg)}</li>"
        for name, ok, skipped, msg in g.rules
    )
    return (
        f'<div class="gate {"pass" if g.passed else "fail"}"><h4>Gate ({escape(g.metric)}): {verdict}</h4><ul>{rows}</ul></div>'
    )


def _findings(run: RunReport, i: int) -> str:
    if not run.findings:
        return '<h3>Findings</h3><p class="muted">No findings.</p>'
    items = []
    for f in sorted(run.findings, key=lambda f: _SEVERITY_ORDER.get(f.severity, 3)):
        ex = run.explanations.get(f.code)
        more = (
            f"<details><summary>{escape(ex.summary)}</summary><p><b>Why it matters.</b> {escape(ex.why)}</p>"
            f"<p><b>What to do.</b> {escape(ex.action)}</p><p class='muted'>More: <code>ckptaudit explain {escape(f.code)}</code></p></details>"
            if ex
            else ""
        )
        items.append(
            f'<li class="finding {escape(f.severity)}"><span class="sev">{escape(f.severity)}</span> '
            f"<code>{escape(f.code)}</code> · {_ckpt_link(i, f.checkpoint)}<p>{escape(f.message)}</p>{more}</li>"
        )
    return f'<h3>Findings <span class="muted">({len(run.findings)})</span></h3><ul class="findings">{"".join(items)}</ul>'


def _who(d: Diagnostics) -> tuple[str, str]:
    cls = "chosen" if "chosen" in d.roles else "winner"
    roles = " and ".join("best" if r == "winner" else r for r in d.roles)
    return cls, f"{d.checkpoint} ({roles})"


def _confusion(d: Diagnostics) -> str:
    if d.confusion is None:
        return ""
    cls, who = _who(d)
    head = "".join(f"<th>{escape(lbl)}</th>" for lbl in d.labels)
    rows = []
    for lbl, row in zip(d.labels, d.confusion, strict=True):
        total = sum(row) or 1
        cells = "".join(f'<td style="--a:{v / total:.3f}" title="{v} of {total} ({v / total:.1%})">{v}</td>' for v in row)
        rows.append(f"<tr><th>{escape(lbl)}</th>{cells}</tr>")
    return (
        f'<figure class="card cm {cls}"><figcaption>Confusion matrix: {escape(who)}</figcaption>'
        f'<table class="confusion"><thead><tr><th class="corner">true \\ predicted</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></figure>"
    )


def _diagnostics(run: RunReport) -> str:
    diags = run.diagnostics
    if not diags:
        return ""
    parts = []
    cms = "".join(_confusion(d) for d in diags)
    if cms:
        parts.append(f'<div class="row">{cms}</div>')
    named = [(*_who(d), d) for d in diags]
    plots = []

    def caption(title: str, entries: list[tuple[str, str, str]]) -> str:
        keys = "".join(f'<span class="key {c}"><i></i>{escape(w)}{escape(extra)}</span>' for c, w, extra in entries)
        return f'<figcaption>{title}</figcaption><div class="legend-row">{keys}</div>'

    # issue 20: each checkpoint's operating point and the constraint line
    marks = [(c, w, d.operating) for c, w, d in named if d.operating is not None]
    rocs = [(c, w, d.roc) for c, w, d in named if d.roc is not None]
    if rocs:
        entries = [(c, w, f" · AUC {fmt(r.area, 3)}") for c, w, r in rocs]  # type: ignore[union-attr]
        plots.append(f'<figure class="card">{caption("ROC", entries)}{svg.curve_chart("roc", rocs, points=marks)}</figure>')  # type: ignore[arg-type]
    prs = [(c, w, d.pr) for c, w, d in named if d.pr is not None]
    if prs:
        base = None
        if diags[0].confusion is not None:
            cm = diags[0].confusion
            base = sum(cm[1]) / max(sum(map(sum, cm)), 1)
        entries = [(c, w, f" · AP {fmt(r.area, 3)}") for c, w, r in prs]  # type: ignore[union-attr]
        plots.append(
            f'<figure class="card">{caption("Precision-recall", entries)}{svg.curve_chart("pr", prs, base, marks)}</figure>'  # type: ignore[arg-type]
        )
    rel = [(c, w, d.reliability) for c, w, d in named if d.reliability is not None]
    if rel:
        entries = [(c, w, "") for c, w, _ in rel]
        plots.append(f'<figure class="card">{caption("Reliability", entries)}{svg.reliability_chart(rel)}</figure>')  # type: ignore[arg-type]
    for c, w, d in named:
        if d.residuals is not None:
            r = d.residuals
            plots.append(
                f'<figure class="card"><figcaption>Residuals: <span class="who {c}">{escape(w)}</span> <span class="muted">RMSE {fmt(r.rmse)}, '
                f"{len(r.predicted)} of {r.rows} rows drawn</span></figcaption>{svg.residual_chart(c, w, r)}</figure>"
            )
    if plots:
        parts.append(f'<div class="diags">{"".join(plots)}</div>')
    return "<h3>Diagnostics of the chosen and the best</h3>" + "".join(parts)


def _run_section(run: RunReport, i: int) -> str:
    badges = [escape(run.task or "not predicted yet"), f"{len(run.checkpoints)} checkpoints"]
    if run.n_val:
        badges.append(f"{run.n_val} validation rows")
    if run.selected_by:
        badges.append(f"selected by {escape(run.selected_by)}")
    problems = "".join(f'<p class="problem">⚠ {escape(p)}</p>' for p in run.problems)
    problems += "".join(f'<p class="muted">Note: {escape(n)}</p>' for n in run.notes)
    table = (
        f'<details class="all" data-run="{i}"><summary>All {len(run.checkpoints)} checkpoints</summary>'
        f'<div class="tablewrap"></div></details>'
    )
    return (
        f'<section class="run" id="{_anchor(i)}"><h2><a href="#{_anchor(i)}">#</a> {escape(run.name)}</h2>'
        f'<div class="badges">{"".join(f"<span>{b}</span>" for b in badges)}</div>{problems}'
        f"{_verdict(run)}{_stats(run)}{_curves(run, i)}{_decision(run, i)}{_combined(run)}{_slices(run)}{_findings(run, i)}{_diagnostics(run)}{table}</section>"
    )


def _combined(run: RunReport) -> str:
    # combine (issue 22): the panel of combined checkpoints, when the run has any
    from .combined import combined_panel

    return combined_panel(run)


def _slices(run: RunReport) -> str:
    # slices (issue 24): the per-slice table and the churn flips, when the run has them
    from .slices import slices_panel

    return slices_panel(run)


def _short_names(names: list[str]) -> tuple[str, list[str]]:
    """The folder every run lies under, and each run's name relative to it."""
    try:
        common = os.path.commonpath(names) if len(names) > 1 else ""
    except ValueError:  # absolute and relative names mixed
        common = ""
    if not common or common in names:
        return "", names
    return common, [n[len(common) :].lstrip("/\\") for n in names]


def _sweep(report: Report) -> str:
    rows = []
    common, short = _short_names([r.name for r in report.runs])
    for i, run in enumerate(report.runs):
        d = run.decision[0] if run.decision else None
        sev = {s: sum(f.severity == s for f in run.findings) for s in ("error", "warning", "info")}
        counts = "".join(f'<span class="count {s}" title="{n} {s}">{n}</span>' for s, n in sev.items() if n)
        behind = d is not None and d.gap is not None and d.gap > 0
        tied = run.selection.tied_best is not None and run.chosen in (run.selection.tied_best or ())
        status = "" if d is None or run.chosen is None else ("tied" if behind and tied else "behind" if behind else "best")
        rows.append(
            f'<tr class="{status}"><td><a href="#{_anchor(i)}" title="{escape(run.name)}">{escape(short[i])}</a></td><td>{escape(run.task or "-")}</td>'
            f"<td class='num'>{len(run.checkpoints)}</td><td>{escape(d.metric) if d else '–'}</td>"
            f"<td class='num'>{fmt(d.winner_value) if d else '–'} <span class='muted'>{escape(d.winner or '') if d else ''}</span></td>"
            f"<td class='num'>{fmt(d.chosen_value) if d else '–'} <span class='muted'>{escape(run.chosen or '')}</span></td>"
            f"<td class='num'>{fmt(d.gap) if d and d.gap is not None else '–'}</td>"
            f"<td>{counts or '<span class=muted>0</span>'}</td><td>{svg.sparkline(run)}</td></tr>"
        )
    head = "<tr><th>run</th><th>task</th><th>ckpts</th><th>metric</th><th>best</th><th>chosen</th><th>gap</th><th>findings</th><th>curve</th></tr>"
    under = f' <span class="muted">under {escape(common)}</span>' if common else ""
    return f'<section class="sweep"><h2>Sweep: {len(report.runs)} runs{under}</h2><table class="sweep-table"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table></section>'


def render_parts(report: Report) -> Iterator[str]:
    """The page of :func:`render_report` in pieces (the head, each section, the tail), so
    that a writer holds one run's section at a time, not a sweep's page several times over."""
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    metrics = ", ".join(report.metrics) or "the audit's default per task"
    problems = "".join(f"<li>{escape(p)}</li>" for p in report.problems)
    yield (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(report.title)}</title><style>{_asset('style.css')}</style></head>"
        "<body><main>"
        f'<header><h1>{escape(report.title)}</h1><p class="muted">{len(report.runs)} run(s) · metrics: {escape(metrics)} · '
        f"ckptaudit {escape(report.version)} · {created}</p></header>"
    )
    if problems:
        yield f'<section class="problems"><h2>Could not read</h2><ul>{problems}</ul></section>'
    if len(report.runs) > 1:
        yield _sweep(report)
    for i, run in enumerate(report.runs):
        yield _run_section(run, i)
    yield (
        '</main><div id="tip" role="tooltip" hidden></div>'
        f"{_data_block(report)}<script>{_asset('report.js')}</script></body></html>\n"
    )


def render_report(report: Report) -> str:
    """The report as one self-contained HTML page (no external resources)."""
    return printable("".join(render_parts(report)))


def printable(text: str) -> str:
    """``text`` writable as UTF-8: a lone surrogate becomes U+FFFD (one character at a time,
    so pieces of a page give the page's result)."""
    # NOTE: a name holding a lone surrogate (a "\udcff" escape in run.json, a folder name
    # that is not UTF-8) cannot be written as UTF-8; it shows as U+FFFD, the same in the
    # page's text and in its data (embedded_json keeps it as a character, not an escape).
    return _SURROGATE.sub("\ufffd", text)
