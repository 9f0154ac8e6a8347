"""Markdown: a heading, a pipe table and the summary, for job summaries and PRs."""

from __future__ import annotations

from . import Document, cell


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(doc: Document) -> str:
    """GitHub-flavoured Markdown."""
    lines = [f"### {doc.title}", ""]
    if doc.checks:
        lines += ["| result | check | details |", "| --- | --- | --- |"]
        lines += [f"| {'✅ PASS' if c.ok else '❌ FAIL'} | {_escape(c.name)} | {_escape(c.message)} |" for c in doc.checks]
    elif doc.rows:
        lines.append("| " + " | ".join(_escape(str(c)) for c in doc.columns) + " |")
        lines.append("|" + "|".join(" --- " for _ in doc.columns) + "|")
        lines += ["| " + " | ".join(_escape(cell(v)) for v in row) + " |" for row in doc.rows]
    else:
        lines.append("_nothing to show_")
    if doc.footer:
        lines += ["", *doc.footer]
    return "\n".join(lines) + "\n"
