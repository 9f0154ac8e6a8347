"""Compatibility: the findings moved to :mod:`ckptaudit.auditing.finding` (the data and
``explain``) and :mod:`ckptaudit.auditing.rules` (``CODES``, one module per code)."""

from __future__ import annotations

from .auditing.finding import SEVERITIES, CodeInfo, Finding, check_codes, explain, severity_rank
from .auditing.rules import CODES

__all__ = ["CODES", "SEVERITIES", "CodeInfo", "Finding", "check_codes", "explain", "severity_rank"]
