"""``chosen-is-best``: the chosen checkpoint is the best under the policy metric, within
the tolerance, or cannot be told apart from the best (it is in the run's 95% model
confidence set; ``require_best`` turns that off); otherwise the rule names the better
checkpoint and by how much. A checkpoint without a value of a logged policy metric might
have been the best, so the rule cannot pass then; others that cannot be scored are named."""

from __future__ import annotations

from typing import Any

from ...verdict.model import Rule, detectable_difference

NAME = "chosen-is-best"


def judge(verdict: Any, context: Any) -> Rule:
    """The rule on ``verdict`` (``context``: the engine's :class:`~ckptaudit.gate.engine.Context`)."""
    return _missing_values(verdict, context, _best(verdict, context))


def _best(verdict: Any, context: Any) -> Rule:
    policy, spec, m = context.policy, context.spec, verdict.primary
    ordered = [s for s in context.ordered if s.values[0] is not None]
    if not ordered:
        return Rule(NAME, False, f"no checkpoint could be scored by {spec.text}")
    best = ordered[0]
    chosen = verdict.chosen.checkpoint
    if chosen is None:
        # NOTE: a gate that checked nothing must not pass: only --allow-unchosen skips this.
        return Rule(
            NAME,
            policy.allow_unchosen,
            "no chosen checkpoint: give --chosen or set run.json 'chosen'"
            + ("" if policy.allow_unchosen else " (or --allow-unchosen to check the run alone)")
            + f"; the best by {spec.text} is {best.checkpoint.name} ({best.values[0]:.4f})",
            {"best": best.checkpoint.name, "best_value": best.values[0]},
            skipped=policy.allow_unchosen,
        )
    value = context.value_of(chosen)
    if value is None:
        return Rule(
            NAME, False, f"{chosen.name} cannot be scored by {spec.text}", {"chosen": chosen.name, "best": best.checkpoint.name}
        )
    gap = (best.values[0] - value) if spec.maximize else (value - best.values[0])
    details: dict[str, Any] = {
        "chosen": chosen.name,
        "chosen_value": value,
        "best": best.checkpoint.name,
        "best_value": best.values[0],
        "gap": gap,
        "tolerance": policy.tolerance,
        "require_best": policy.require_best,
    }
    tied: bool | None = None
    expected = ""
    sel = m.selection
    if m.available:
        tied = sel.is_tied_best(chosen.name)
        details.update(tied_best=list(sel.tied_best), chosen_in_tied_best=tied, selection_method=sel.method)
        interval = m.interval_of(verdict.index(chosen.name))
        if interval is not None:
            details["chosen_ci95"] = list(interval)
        power = detectable_difference(sel)
        if power is not None:
            details["detectable_difference"] = power
        if sel.estimate is not None and sel.winner == chosen.name:
            details["expected_on_new_data"] = sel.estimate.as_dict()
            e = sel.estimate
            expected = (
                f"; expected on new data {e.expected:.4f} [{e.interval[0]:.4f}, {e.interval[1]:.4f}] (optimism {e.optimism:+.4f})"
            )
    elif sel is not None:
        details["selection_note"] = sel.note
    if best.checkpoint is chosen or gap <= policy.tolerance:
        suffix = (
            ""
            if best.checkpoint is chosen
            else f" (best {best.checkpoint.name} {best.values[0]:.4f}, within tolerance {policy.tolerance:g})"
        )
        return Rule(NAME, True, f"{chosen.name} {spec.text} {value:.4f} is the best{suffix}{expected}", details)
    set_size = 0 if sel is None else len(sel.tied_best)
    if tied and not policy.require_best:
        return Rule(
            NAME,
            True,
            f"{chosen.name} {spec.text} {value:.4f} cannot be told apart from the best, {best.checkpoint.name} "
            f"{best.values[0]:.4f} (better by {gap:.4f}): both are among the {set_size} checkpoints of the run's 95% "
            f"model confidence set (--require-best to require the best)",
            details,
        )
    if tied:
        why = (
            f"; --require-best: only the best or a checkpoint within tolerance {policy.tolerance:g} passes "
            f"(it is one of {set_size} checkpoints that cannot be told apart from the best)"
        )
    elif tied is False:
        why = (
            f"; the validation set tells them apart: {chosen.name} is not among the {set_size} checkpoint(s) "
            f"that cannot be told apart from the best (95% model confidence set)"
        )
    else:
        why = "; no selection statistics for this metric, so the tolerance alone decides"
    return Rule(
        NAME,
        False,
        f"{chosen.name} {spec.text} {value:.4f}; {best.checkpoint.name} should have been chosen: "
        f"{spec.text} {best.values[0]:.4f}, better by {gap:.4f}{why}",
        details,
    )


def _missing_values(verdict: Any, context: Any, rule: Rule) -> Rule:
    spec = context.spec
    scores = verdict.scores
    unscored = {s.checkpoint.name: "; ".join(s.notes) or "no value" for s in scores if s.values[0] is None}
    if not unscored:
        return rule
    details = {**rule.details, "unscored": unscored}
    listed = ", ".join(f"{name} ({why})" for name, why in unscored.items())
    missing = [s.checkpoint.name for s in scores if spec.source == "logged" and spec.name not in s.checkpoint.logged]
    if missing and rule.passed and not rule.skipped:
        return Rule(
            rule.name,
            False,
            f"cannot tell whether the chosen checkpoint is the best: {len(missing)} checkpoint(s) have no "
            f"{spec.text} value: {listed}",
            details,
        )
    # NOTE: "the best" is the best of those with predictions: say how many that was, so a
    # gate over one saved checkpoint of many logged epochs (save_top_k=1) is read for what it is
    scored = len(scores) - len(unscored)
    details["candidates"] = scored
    return Rule(
        rule.name,
        rule.passed,
        f"{rule.message}; {scored} of {len(scores)} checkpoints had predictions and were candidates; "
        f"not candidates, cannot be scored: {listed}",
        details,
        rule.skipped,
    )
