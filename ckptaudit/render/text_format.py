"""One line per check: ``PASS name: message`` (the gate's default); other documents
fall back to the table layout."""

from __future__ import annotations

from . import Document, table_format


def render(doc: Document) -> str:
    """PASS/FAIL lines for verdicts, a table for everything else."""
    if not doc.checks:
        return table_format.render(doc)
    lines = [f"{'PASS' if c.ok else 'FAIL'} {c.name}: {c.message}" for c in doc.checks]
    return "\n".join([*lines, *doc.footer]) + "\n"
