"""The report's slices panel (issue 24): each checkpoint's first metric on every group, and
the churn gate's flips per slice when a baseline was given.

The table is the run's ``rank --by group`` rows (:attr:`RunReport.slices`, read from
:func:`ckptaudit.slices.slice_rows`); the flips are the ``churn`` rule's details. Each cell
carries its value and interval at full precision (``data-v``, ``data-lo``, ``data-hi``) for
scripts reading the page; nothing is computed here.
"""

from __future__ import annotations

from html import escape
from typing import Any

from .svg import fmt


def _cell(row: Any) -> str:
    if row is None:
        return "<td class='num'>–</td>"
    attrs = f' data-group="{escape(row.group)}" data-ck="{escape(row.checkpoint)}"'
    if row.value is not None:
        attrs += f' data-v="{row.value!r}"'
    ci = ""
    if row.interval is not None:
        attrs += f' data-lo="{row.interval[0]!r}" data-hi="{row.interval[1]!r}"'
        ci = f' <span class="ci">[{fmt(row.interval[0])}, {fmt(row.interval[1])}]</span>'
    tied = " class='num tied'" if row.tied_best else " class='num'"
    title = " title='cannot be told apart from the best on this slice'" if row.tied_best else ""
    return f"<td{tied}{title}{attrs}>{fmt(row.value)}{ci}</td>"


def slices_panel(run: Any) -> str:
    """HTML of the per-slice table, or "" when the run has no group column."""
    rows = run.slices
    if not rows:
        return ""
    groups = list(dict.fromkeys(r.group for r in rows))
    sizes = {r.group: r.rows for r in rows}
    by = {(r.checkpoint, r.group): r for r in rows}
    metric = escape(run.metrics[0]) if run.metrics else ""
    head = "".join(
        f"<th>{escape(g)}" + (f" <span class='muted'>({sizes[g]} rows)</span>" if sizes[g] is not None else "") + "</th>"
        for g in groups
    )
    body = []
    for ckpt in dict.fromkeys(r.checkpoint for r in rows):
        marks = [m for m, n in (("chosen", run.chosen), ("best", run.winner)) if n == ckpt]
        tag = f" <span class='muted'>({', '.join(marks)})</span>" if marks else ""
        cells = "".join(_cell(by.get((ckpt, g))) for g in groups)
        body.append(f"<tr><td>{escape(ckpt)}{tag}</td>{cells}</tr>")
    table = (
        f'<table class="decision slices"><thead><tr><th>checkpoint</th>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    )
    note = (
        f'<p class="muted small">{metric} on each group\'s rows with its 95% interval (resampling stratified by group); '
        f"(worst) is worst_group({metric}); highlighted: cannot be told apart from the best checkpoint on that slice. "
        "The same rows as <code>ckptaudit rank --by group</code>.</p>"
    )
    return f"<h3>Slices: {metric} per group</h3>{table}{note}{_churn(run)}"


def _churn(run: Any) -> str:
    details = None if run.gate is None else run.gate.churn
    if not details:
        return ""
    body = []
    for s in [details["overall"], *details.get("slices", [])]:
        group = "(all)" if s["group"] is None else str(s["group"])
        body.append(
            f"<tr><td>{escape(group)}</td><td class='num'>{s['rows']}</td>"
            f"<td class='num'>{s['negative_flips']} ({s['negative_flip_rate']:.2%})</td><td class='num'>{s['positive_flips']}</td>"
            f"<td class='num'>{fmt(s['baseline_accuracy'])}</td><td class='num'>{fmt(s['candidate_accuracy'])}</td>"
            f"<td class='num'>{s['mcnemar_p']:.3g}</td></tr>"
        )
    head = (
        "<tr><th>slice</th><th>rows</th><th>negative flips</th><th>positive flips</th>"
        "<th>baseline acc</th><th>candidate acc</th><th>McNemar p</th></tr>"
    )
    flips = details.get("flips") or []
    listed = f"<p class='muted small'>Negative flips (first rows): {escape(', '.join(map(str, flips)))}</p>" if flips else ""
    return (
        f"<h3>Flips against the baseline <span class='muted'>{escape(str(details.get('baseline', '')))}</span></h3>"
        f'<table class="decision churn"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>{listed}'
    )
