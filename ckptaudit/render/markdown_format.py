"""Markdown: a heading, a pipe table and the summary, for job summaries and PRs.

Every name and message is escaped: HTML characters as entities, Markdown syntax and the
table's pipes with backslashes, control characters as visible escapes, so a checkpoint
name cannot break the table, add a link or inject HTML."""

from __future__ import annotations

import re

from . import Document, cell, printable

_MARKDOWN = re.compile(r"([\\`*_\[\]|~#!(){}])")
ICONS = {"PASS": "✅", "FAIL": "❌", "WARNING": "⚠️", "INFO": "ℹ️", "ERROR": "❗"}


def _escape(text: str) -> str:
    text = printable(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MARKDOWN.sub(r"\\\1", text)


def render(doc: Document) -> str:
    """GitHub-flavoured Markdown."""
    lines = [f"### {_escape(doc.title)}", ""]
    if doc.checks:
        lines += ["| result | check | details |", "| --- | --- | --- |"]
        for c in doc.checks:
            icon = ICONS.get(c.shown)
            result = f"{icon} {c.shown}" if icon else _escape(c.shown)
            lines.append(f"| {result} | {_escape(c.name)} | {_escape(c.message)} |")
    elif doc.rows:
        lines.append("| " + " | ".join(_escape(str(c)) for c in doc.columns) + " |")
        lines.append("|" + "|".join(" --- " for _ in doc.columns) + "|")
        lines += ["| " + " | ".join(_escape(cell(v)) for v in row) + " |" for row in doc.rows]
    else:
        lines.append("_nothing to show_")
    if doc.footer:
        lines += ["", *(_escape(f) for f in doc.footer)]
    return "\n".join(lines) + "\n"
