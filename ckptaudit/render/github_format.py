"""GitHub Actions workflow commands: one ``::error``/``::warning``/``::notice`` line per
check, so failures show as annotations on the run and the pull request.

Every line this renderer prints is a workflow command whose fields are escaped as the
runner expects (``%``, CR and LF in data; also ``:`` and ``,`` in properties), so no name
or message, whatever it holds, can start a line of its own and inject a command."""

from __future__ import annotations

import re

from . import Check, Document

_OTHER_CONTROL = re.compile("[\x00-\x09\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")


def _escape_data(text: str) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return _OTHER_CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256 else f"\\u{ord(m.group()):04x}", text)


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


LEVELS = {"error": "error", "warning": "warning", "info": "notice"}
#: a finding below --fail-on is shown, but never as an error annotation
NOT_FAILING_LEVELS = {"error": "warning", "warning": "warning", "info": "notice"}


def _level(c: Check) -> str:
    if not c.ok:
        return LEVELS.get(c.severity, "error")
    if c.label:
        return NOT_FAILING_LEVELS.get(c.severity, "notice")
    return "notice"


def render(doc: Document) -> str:
    """Annotations for failures, ``::notice`` lines for passes, and the summary."""
    lines = []
    for c in doc.checks:
        props = [f"title={_escape_property(c.shown + ' ' + c.name)}"]
        if c.file:
            props.insert(0, f"file={_escape_property(c.file)}")
        lines.append(f"::{_level(c)} {','.join(props)}::{_escape_data(c.message)}")
    if not doc.checks:
        lines += [
            f"::notice title={_escape_property(doc.title)}::{_escape_data(' '.join(str(v) for v in row))}" for row in doc.rows
        ]
    # NOTE: the summary is a notice too: printed raw, a name holding a newline would start
    # a line of its own, which the runner reads as a command.
    lines += [f"::notice title={_escape_property(doc.title)}::{_escape_data(line)}" for line in doc.footer]
    return "\n".join(lines) + "\n"
