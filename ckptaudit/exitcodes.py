"""The process exit codes, named once.

CI pipelines must tell "the gate failed" from "the tool could not read its input",
so the two never share a code.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of every ckptaudit command."""

    OK = 0  #: nothing failed
    FAILED = 1  #: a gate rule or an audit finding at or above the fail level failed
    ERROR = 2  #: usage error or unreadable input
    INTERRUPTED = 130  #: stopped by SIGINT (Ctrl-C); prune says what is left and how to resume
    BROKEN_PIPE = 141  #: standard output was closed early (``| head``): quiet, as when SIGPIPE ends a tool
