"""``shipped-threshold`` (issue 20): under an operating-point policy metric with a shipped
threshold (``check --threshold T`` or the policy's ``threshold``), the chosen checkpoint at
that threshold must meet the constraint on the validation rows. The rates come from the
scoring pass (the typed shipped-threshold note of :mod:`ckptaudit.metrics.operating`); whether a
better pair exists beyond noise is ``chosen-is-best``'s question (the pair's model
confidence set). Reported only for operating-point metrics (:func:`applies`)."""

from __future__ import annotations

from typing import Any

from ...verdict.model import Rule

NAME = "shipped-threshold"


def applies(spec: Any) -> bool:
    """Whether this rule is judged under ``spec``: an operating point with a shipped threshold."""
    return getattr(spec, "operating", None) is not None and spec.threshold is not None


def judge(verdict: Any, context: Any) -> Rule:
    """The rule on ``verdict`` (``context``: the engine's :class:`~ckptaudit.gate.engine.Context`)."""
    from ...metrics.operating import SHIPPED, SHIPPED_NOTE, operating_note, tuned_threshold

    spec = context.spec
    chosen = verdict.chosen.checkpoint
    details: dict[str, Any] = {"metric": spec.text, "shipped_threshold": spec.threshold}
    if chosen is None:
        return Rule(NAME, False, "no chosen checkpoint to judge the shipped threshold on", details)
    score = next((s for s in verdict.scores if s.checkpoint is chosen), None)
    details["chosen"] = chosen.name
    if score is None or score.values[0] is None:
        reason = "" if score is None else "; ".join(score.notes)
        return Rule(NAME, False, f"{chosen.name}: no threshold meets the constraint ({reason})", details)
    found = operating_note(score.notes, spec.text, SHIPPED)
    best_t = tuned_threshold(score.notes, spec.text)
    details["tuned_threshold"] = best_t
    if found is None:
        return Rule(NAME, False, f"{chosen.name}: the shipped threshold could not be scored", details)
    shown = found[len(f"{spec.text}: {SHIPPED_NOTE}") :]  # the text after the spec, as every view prints it
    details["at_shipped"] = shown
    cost = spec.operating.is_cost
    passed = cost or bool(found.meets)
    verb = "is scored" if cost else ("meets" if passed else "misses")
    return Rule(
        NAME,
        passed,
        f"{chosen.name} at the shipped threshold {shown}"
        + ("" if passed else f"; {chosen.name}'s tuned threshold for {spec.operating.describe()} is {best_t!r}"),
        {**details, "result": verb},
    )
