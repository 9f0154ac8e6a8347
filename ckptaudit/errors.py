"""Exceptions that library code raises and the CLI turns into one-line messages.

Every error carries the file (or run) it concerns and the problem, so the CLI edge
can print ``path: problem`` and exit with code 2 without a traceback.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

#: what a message must not carry to a terminal: C0 and C1 control characters (a newline
#: breaks the one-line promise, ESC starts a command such as "set the window title"),
#: line and paragraph separators, bidirectional overrides (which reorder what is shown)
#: and lone surrogates (which cannot be encoded)
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def one_line(text: object) -> str:
    """``text`` safe to print as one line of a terminal: control characters, bidirectional
    overrides and lone surrogates are written as Python escapes (``\\n``, ``\\x1b``,
    ``\\u202e``), so that no file or folder name, and no file's content echoed in a
    message, can split it into several lines, forge a line of its own or send commands
    to the terminal. Every message the CLI prints goes through here."""
    return _UNSAFE.sub(_escaped, str(text))


class CkptauditError(Exception):
    """Base class: an input or usage problem that the user can fix (exit code 2)."""

    def __init__(self, problem: str, path: str | Path | None = None) -> None:
        self.problem = problem
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class RunFormatError(CkptauditError):
    """A run folder, run.json, meta.json or prediction file is missing or malformed."""


class ValSetChangedError(RunFormatError):
    """Validation targets or ids differ between checkpoints of one run."""


class MetricError(CkptauditError):
    """A metric spec is unknown, malformed or does not apply to a run's task."""


class UsageError(CkptauditError):
    """Options that contradict each other or name something that does not exist."""


class LockedError(CkptauditError):
    """Another process holds a run's lock (for example a concurrent prune)."""


class ConfigError(CkptauditError):
    """A ckptaudit.toml or [tool.ckptaudit] table is malformed."""


class PruneInterrupted(CkptauditError):
    """A prune was interrupted (SIGINT); the message says what is left and how to resume (exit 130)."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'epoch-0011'?)`` for the choice closest to ``word``, or ``""``.

    Numbers compare by value, so ``epoch-11`` finds ``epoch-0011``; otherwise the closest
    spelling (difflib) when it is close enough to be a typo."""
    import difflib

    def key(text: str) -> str:
        return re.sub(r"[0-9]+", lambda m: str(int(m.group())), text.lower())

    names = list(choices)
    same = [name for name in names if key(name) == key(word)]
    close = same or difflib.get_close_matches(word, names, n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""
