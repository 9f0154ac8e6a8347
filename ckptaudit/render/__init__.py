"""Output formats as small interchangeable renderers.

Every command builds one :class:`Document` (plain data: column titles, display rows,
JSON records and, for verdicts, pass/fail checks) and hands it to the renderer the user
picked with ``--format``. A renderer is a module with ``render(doc) -> str``; the
:class:`Format` enum maps each ``--format`` choice to its module, and a test loops over
every value.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ..errors import one_line


@dataclass(frozen=True)
class Check:
    """One pass/fail verdict (a gate rule or a finding), for junit and github output."""

    name: str
    ok: bool
    message: str
    severity: str = "error"  #: error, warning or info; a failed check's annotation level
    file: str | None = None
    #: what the check is labelled (default PASS/FAIL); an audit finding below --fail-on is
    #: labelled by its severity (WARNING, INFO), because it does not fail the command
    label: str | None = None

    @property
    def shown(self) -> str:
        """The label shown: ``label``, else PASS or FAIL."""
        return self.label or ("PASS" if self.ok else "FAIL")


@dataclass(frozen=True)
class Document:
    """What a command has to say, before it is formatted."""

    title: str
    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]
    records: Any  #: the JSON document (a list of objects, or an object)
    checks: Sequence[Check] = field(default_factory=tuple)
    footer: Sequence[str] = field(default_factory=tuple)  #: summary lines for human formats


class Format(str, Enum):
    """The ``--format`` choices and the module that renders each."""

    table = "table"
    text = "text"
    json = "json"
    csv = "csv"
    markdown = "markdown"
    junit = "junit"
    github = "github"


def render(doc: Document, fmt: Format | str) -> str:
    """Format ``doc`` with the renderer named by ``fmt``."""
    module = importlib.import_module(f"{__name__}.{Format(fmt).value}_format")
    return module.render(doc)


def cell(value: Any, digits: int = 4) -> str:
    """How a number or missing value shows in human formats."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, (list, tuple)):
        return printable(",".join(str(v) for v in value))
    return printable(value)


# NOTE: names and messages come from folder names and files a user (or an attacker) chose:
# a newline could forge a PASS line or a CI workflow command, an escape sequence could
# rewrite the terminal. Every human format shows control characters as visible escapes,
# by the same rule as the CLI's messages on stderr (one definition: errors.one_line).


def printable(text: Any) -> str:
    """``text`` on one line, with every control character as a visible escape (``\\n``,
    ``\\x1b``): safe for terminals, line-oriented CI logs and table cells."""
    return one_line(text)
