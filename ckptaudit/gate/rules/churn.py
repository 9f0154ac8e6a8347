"""``churn``: the candidate breaks few answers the deployed (baseline) model got right.

Set by ``check --baseline PATH`` (policy key ``baseline``) with ``max_negative_flip_rate``
(the most rows, as a share, the baseline got right and the candidate gets wrong: overall
and on every slice) and ``max_slice_regression`` (the most any slice's accuracy may drop
from the baseline's). The candidate is the chosen checkpoint (else the best under the
policy metric). The evidence comes from :func:`ckptaudit.churn.compare`; this rule only
compares it with the policy (docs/slices.md).
"""

from __future__ import annotations

from typing import Any

from ...verdict.model import Rule

NAME = "churn"


def judge(verdict: Any, context: Any) -> Rule:
    """The rule on ``verdict``."""
    from ...churn import compare

    policy = context.policy
    bounds = {"max_negative_flip_rate": policy.max_negative_flip_rate, "max_slice_regression": policy.max_slice_regression}
    limited = policy.max_negative_flip_rate is not None or policy.max_slice_regression is not None
    if policy.baseline is None:
        if limited:
            return Rule(NAME, False, "max_negative_flip_rate / max_slice_regression are set but no --baseline was given", bounds)
        return Rule(NAME, True, "no --baseline given", bounds, skipped=True)
    target = verdict.chosen.checkpoint
    if target is None:
        ordered = [s for s in context.ordered if s.values[0] is not None]
        target = ordered[0].checkpoint if ordered else None
    if target is None:
        return Rule(NAME, False, "no checkpoint to compare with the baseline", bounds)
    churn = compare(verdict.run, target, policy.baseline, threshold=policy.threshold)
    details = {**bounds, **churn.as_dict()}
    problems = []
    limit = policy.max_negative_flip_rate
    overall = churn.overall
    if limit is not None:
        for s in (overall, *churn.slices):
            if s.negative_flip_rate > limit:
                where = "overall" if s.group is None else f"on slice {s.group!r}"
                problems.append(
                    f"negative-flip rate {s.negative_flip_rate:.2%} {where} ({s.negative_flips} of {s.rows} rows) "
                    f"> max_negative_flip_rate {limit:g}"
                )
    drop = policy.max_slice_regression
    if drop is not None:
        for s in (overall, *churn.slices):
            if s.regression > drop:
                where = "overall" if s.group is None else f"slice {s.group!r}"
                problems.append(
                    f"{where} accuracy {s.candidate_accuracy:.4f} is {s.regression:.4f} below the baseline's "
                    f"{s.baseline_accuracy:.4f} (McNemar p={s.mcnemar_p:.3g}) > max_slice_regression {drop:g}"
                )
    summary = (
        f"{target.name} vs baseline {churn.baseline}: {overall.negative_flips} negative and {overall.positive_flips} "
        f"positive flips of {overall.rows} rows (negative-flip rate {overall.negative_flip_rate:.2%}, "
        f"McNemar p={overall.mcnemar_p:.3g})"
    )
    if problems:
        return Rule(NAME, False, f"{summary}; " + "; ".join(problems), details)
    if not limited:
        return Rule(NAME, True, f"{summary} (no limit set)", details)
    return Rule(NAME, True, summary, details)


def lines(details: dict[str, Any]) -> list[str]:
    """The per-slice table and the first flips, as lines for human formats."""
    if not details.get("slices") and not details.get("flips"):
        return []
    out = ["churn per slice: group, rows, negative flips (rate), positive flips, baseline acc, candidate acc, McNemar p"]
    for s in [details["overall"], *details.get("slices", [])]:
        out.append(
            f"  {s['group'] if s['group'] is not None else '(all)'}: {s['rows']}, {s['negative_flips']} "
            f"({s['negative_flip_rate']:.2%}), {s['positive_flips']}, {s['baseline_accuracy']:.4f}, "
            f"{s['candidate_accuracy']:.4f}, {s['mcnemar_p']:.3g}"
        )
    if details.get("flips"):
        out.append("negative flips (first rows): " + ", ".join(details["flips"]))
    return out
