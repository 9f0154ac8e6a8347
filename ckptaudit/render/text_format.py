"""One line per check: ``PASS name: message`` (the gate's default); other documents
fall back to the table layout. Control characters show as visible escapes, so a name
holding a newline cannot forge a line."""

from __future__ import annotations

from . import Document, printable, table_format


def render(doc: Document) -> str:
    """PASS/FAIL lines for verdicts, a table for everything else."""
    if not doc.checks:
        return table_format.render(doc)
    lines = [f"{c.shown} {printable(c.name)}: {printable(c.message)}" for c in doc.checks]
    return "\n".join([*lines, *(printable(f) for f in doc.footer)]) + "\n"
