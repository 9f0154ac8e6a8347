"""``min-value``: the chosen value (or the best's, when nothing is chosen) meets
``min_value`` / ``max_value``."""

from __future__ import annotations

from typing import Any

from ...verdict.model import Rule

NAME = "min-value"


def judge(verdict: Any, context: Any) -> Rule:
    """The rule on ``verdict``."""
    policy, spec = context.policy, context.spec
    bounds = {"min_value": policy.min_value, "max_value": policy.max_value}
    if policy.min_value is None and policy.max_value is None:
        return Rule(NAME, True, "no min_value or max_value set", bounds, skipped=True)
    target = verdict.chosen.checkpoint
    if target is None:
        ordered = [s for s in context.ordered if s.values[0] is not None]
        target = ordered[0].checkpoint if ordered else None
    who = target.name if target is not None else "-"
    value = None if target is None else context.value_of(target)
    if value is None:
        return Rule(NAME, False, f"{who} has no {spec.text} value", bounds)
    problems = []
    if policy.min_value is not None and value < policy.min_value:
        problems.append(f"below min_value {policy.min_value:g}")
    if policy.max_value is not None and value > policy.max_value:
        problems.append(f"above max_value {policy.max_value:g}")
    details = {**bounds, "value": value, "checkpoint": who}
    if problems:
        return Rule(NAME, False, f"{who} {spec.text} {value:.4f} is {' and '.join(problems)}", details)
    return Rule(NAME, True, f"{who} {spec.text} {value:.4f} meets the bound", details)
