"""``audit``: find the patterns that make a checkpoint choice dishonest, with the numbers.

The engine (:mod:`ckptaudit.auditing.engine`) streams each run once and collects what the
checks need; each finding lives in one module under :mod:`ckptaudit.auditing.rules` (its
detector beside its ``explain`` text); :mod:`ckptaudit.auditing.finding` holds the
:class:`Finding` data and the code helpers.
"""

from __future__ import annotations

from .engine import (
    DEFAULT_METRIC,
    AuditOptions,
    AuditReport,
    RunAudit,
    audit_collected,
    audit_pass,
    audit_run,
    audit_spec,
)

__all__ = [
    "DEFAULT_METRIC",
    "AuditOptions",
    "AuditReport",
    "RunAudit",
    "audit_collected",
    "audit_pass",
    "audit_run",
    "audit_spec",
]
