"""The report's combination panel: what ``combine`` decided for a run, as it recorded it.

One table per combined checkpoint: each candidate's value on the validation rows, its naive
and selection-corrected gain over the best single checkpoint with the 95% interval, the
members, and the decision. The numbers are read from the combined checkpoint's meta.json
(``combine`` wrote them); nothing is computed here.
"""

from __future__ import annotations

from html import escape
from typing import Any


def _num(x: Any, signed: bool = False) -> str:
    if not isinstance(x, (int, float)):
        return "-"
    return f"{x:+.4g}" if signed else f"{x:.4g}"


def combined_panel(run: Any) -> str:
    """HTML of the panel, or "" when the run has no combined checkpoint."""
    from ...combining.marks import combination_records

    records = combination_records(run.checkpoints)
    if not records:
        return ""
    parts = ["<h3>Combinations</h3>"]
    for r in records:
        members = ", ".join(
            escape(str(m.get("checkpoint"))) + ("" if m.get("count", 1) == 1 else f" x{m.get('count')}") for m in r["members"]
        )
        rows = []
        for c in r.get("candidates") or []:
            iv = c.get("interval") or [None, None]
            mark = " ◀" if c.get("label") == r.get("chosen") else ""
            rows.append(
                f"<tr><td>{escape(str(c.get('label')))}{mark}</td><td>{_num(c.get('value'))}</td>"
                f"<td>{_num(c.get('naive_gain'), True)}</td><td>{_num(c.get('corrected_gain'), True)}</td>"
                f"<td>[{_num(iv[0], True)}, {_num(iv[1], True)}]</td></tr>"
            )
        head = "<tr><th>candidate</th><th>value</th><th>naive gain</th><th>corrected gain</th><th>95% interval</th></tr>"
        status = "adopted" if r.get("adopted") else "written on request (not adopted)"
        parts.append(
            f"<p><b>{escape(r['checkpoint'])}</b> ({escape(str(r.get('kind')))}, {status}) under "
            f"{escape(str(r.get('metric')))}; best single checkpoint {escape(str(r.get('best_single')))} = "
            f"{_num(r.get('best_single_value'))}. Members: {members}.</p>"
            f'<table class="decision"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'
            f'<p class="muted">{escape(str(r.get("decision", "")))}</p>'
        )
    return "".join(parts)
