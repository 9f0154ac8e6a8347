"""``selected-by-matches``: what selected the shipped checkpoint is the policy metric: the
provenance's metric for a `pick` output, training's ``selected_by`` for the run's own choice."""

from __future__ import annotations

from typing import Any

from ...metrics.spec import base_name
from ...verdict.model import Rule

NAME = "selected-by-matches"


def judge(verdict: Any, context: Any) -> Rule:
    """The rule on ``verdict``."""
    run, spec, chosen = verdict.run, context.spec, verdict.chosen
    ckpt = chosen.checkpoint
    if chosen.provenance_metric is not None:
        used, who = chosen.provenance_metric, "ckptaudit pick"
    elif ckpt is not None and ckpt.name != run.chosen:
        return Rule(
            NAME,
            True,
            f"{ckpt.name} is not the checkpoint training chose, so training's selected_by does not apply",
            {"policy_metric": spec.text, "selected_by": None},
            skipped=True,
        )
    elif run.selected_by is None:
        return Rule(
            NAME,
            True,
            "run.json records no selected_by; nothing to compare",
            {"policy_metric": spec.text, "selected_by": None},
            skipped=True,
        )
    else:
        used, who = run.selected_by.metric, "training"
    want = spec.name if spec.source == "builtin" else spec.text
    details = {"selected_by": used, "selected_by_whom": who, "policy_metric": spec.text}
    if base_name(used) == base_name(want):
        return Rule(NAME, True, f"{who} selected by {used}, the policy metric", details)
    return Rule(
        NAME,
        False,
        f"{who} selected by {used}, but the policy metric is {spec.text}: a checkpoint chosen by another "
        f"metric fails even when it happens to pick well",
        details,
    )
