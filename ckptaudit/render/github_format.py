"""GitHub Actions workflow commands: one ``::error``/``::warning``/``::notice`` line per
failed check, so failures show as annotations on the run and the pull request."""

from __future__ import annotations

from . import Document


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


LEVELS = {"error": "error", "warning": "warning", "info": "notice"}


def render(doc: Document) -> str:
    """Annotations for failures, ``::notice`` lines for passes, and the summary."""
    lines = []
    for c in doc.checks:
        level = LEVELS.get(c.severity, "error") if not c.ok else "notice"
        props = [f"title={_escape_property(('FAIL ' if not c.ok else 'PASS ') + c.name)}"]
        if c.file:
            props.insert(0, f"file={_escape_property(c.file)}")
        lines.append(f"::{level} {','.join(props)}::{_escape_data(c.message)}")
    if not doc.checks:
        lines += [
            f"::notice title={_escape_property(doc.title)}::{_escape_data(' '.join(str(v) for v in row))}" for row in doc.rows
        ]
    lines += list(doc.footer)
    return "\n".join(lines) + "\n"
