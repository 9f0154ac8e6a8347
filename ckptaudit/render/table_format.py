"""Plain-text table for the terminal (tabulate's "simple" layout); control characters in
cells show as visible escapes."""

from __future__ import annotations

from . import Document, cell, printable


def render(doc: Document) -> str:
    """A table with the title's summary lines below it."""
    from tabulate import tabulate

    body = (
        tabulate(
            [[cell(v) for v in row] for row in doc.rows],
            headers=[printable(c) for c in doc.columns],
            tablefmt="simple",
            disable_numparse=True,
        )
        if doc.rows
        else "(nothing to show)"
    )
    return "\n".join([body, *(printable(f) for f in doc.footer)]) + "\n"
