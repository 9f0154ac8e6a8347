"""The gate's rules, one module each (docs/check.md), in the order they are reported.

A rule is a small unit, like an audit finding: a module with ``NAME`` and
``judge(verdict, context) -> Rule`` that reads the run's :class:`~ckptaudit.verdict.Verdict`
and computes nothing statistical of its own. :mod:`ckptaudit.gate.engine` only iterates
:data:`RULES`.
"""

from . import chosen_is_best, churn, min_value, no_audit_findings, selected_by_matches

RULES = (chosen_is_best, selected_by_matches, min_value, no_audit_findings, churn)
NAMES = tuple(r.NAME for r in RULES)

__all__ = ["NAMES", "RULES"]
