"""Findings: what the audit reports, and the stable codes that name them.

A :class:`Finding` is plain data (code, severity, run, checkpoint, message, evidence); the
codes (:data:`ckptaudit.auditing.rules.CODES`, one module per code) are a contract that `audit --select/--ignore`, the `check` gate and CI
configurations rely on, so a code is never renamed. ``ckptaudit explain CODE`` prints each
code's entry: what it means, why it matters, its benign causes and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError

SEVERITIES = ("info", "warning", "error")


def severity_rank(severity: str) -> int:
    """0 info, 1 warning, 2 error."""
    return SEVERITIES.index(severity)


@dataclass(frozen=True)
class Finding:
    """One audit result with the numbers behind it."""

    code: str
    severity: str
    run: str
    checkpoint: str | None
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape: code, severity, run, checkpoint, message, evidence."""
        return {
            "code": self.code,
            "severity": self.severity,
            "run": self.run,
            "checkpoint": self.checkpoint,
            "message": self.message,
            "evidence": self.evidence,
        }


@dataclass(frozen=True)
class CodeInfo:
    """The documentation of one finding code."""

    code: str
    severity: str
    summary: str
    meaning: str
    why: str
    benign: str
    action: str


def check_codes(codes: list[str] | None, option: str) -> list[str]:
    """Validate a --select/--ignore list (comma-separated values allowed)."""
    from .rules import CODES  # NOTE: the rules import this module: CODES is read at call time

    if not codes:
        return []
    flat = [c.strip() for item in codes for c in item.split(",") if c.strip()]
    unknown = [c for c in flat if c not in CODES]
    if unknown:
        raise UsageError(f"{option}: unknown finding code {', '.join(unknown)} (known: {', '.join(CODES)})")
    return flat


def explain(code: str) -> str:
    """The text `ckptaudit explain CODE` prints."""
    from .rules import CODES

    info = CODES.get(code)
    if info is None:
        import difflib

        close = difflib.get_close_matches(code, list(CODES), n=2)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known codes: {', '.join(CODES)}"
        raise UsageError(f"unknown finding code {code!r}{hint}")
    return (
        f"{info.code} ({info.severity})\n  {info.summary}\n\n"
        f"What it means:\n  {info.meaning}\n\nWhy it matters:\n  {info.why}\n\n"
        f"Benign causes:\n  {info.benign}\n\nWhat to do:\n  {info.action}\n"
    )
