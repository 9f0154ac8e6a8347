"""``no-audit-findings``: no audit finding at or above the policy's fail level (only the
``fail_codes`` when given). An audit that could not read some input stops the gate (exit 2)."""

from __future__ import annotations

from typing import Any

from ...auditing.finding import severity_rank
from ...errors import RunFormatError
from ...verdict.model import Rule

NAME = "no-audit-findings"


def judge(verdict: Any, context: Any) -> Rule:
    """The rule on ``verdict`` (its findings, audited with the chosen checkpoint in focus)."""
    policy, audit = context.policy, verdict.audit
    if audit is not None and audit.problems:
        # NOTE: the audit could not read some input (a corrupt train.npz): exit 2, as `audit` does.
        more = f" (and {len(audit.problems) - 1} more)" if len(audit.problems) > 1 else ""
        raise RunFormatError(f"the gate's audit cannot read every file: {audit.problems[0]}{more}", verdict.run.name)
    findings = verdict.findings
    if policy.fail_on == "never":
        failing = []
    else:
        failing = [
            f
            for f in findings
            if severity_rank(f.severity) >= severity_rank(policy.fail_on)
            and (policy.fail_codes is None or f.code in policy.fail_codes)
        ]
    details = {
        "fail_on": policy.fail_on,
        "fail_codes": list(policy.fail_codes) if policy.fail_codes else None,
        "failing": [f.as_dict() for f in failing],
        "all_codes": [f.code for f in findings],
    }
    if failing:
        listed = "; ".join(f"{f.code}: {f.message}" for f in failing)
        return Rule(NAME, False, f"{len(failing)} finding(s) at or above {policy.fail_on}: {listed}", details)
    return Rule(
        NAME,
        True,
        f"no audit finding at or above {policy.fail_on}" + (f" ({len(findings)} below it)" if findings else ""),
        details,
    )
