"""``check``: the CI gate that rejects a checkpoint chosen by the wrong metric.

Four named rules, each reported on its own (docs/check.md):

1. ``chosen-is-best``: the chosen checkpoint is the best under the policy metric, within
   the tolerance, or cannot be told apart from the best (it is in the run's 95% model
   confidence set, :mod:`ckptaudit.stats.selection`; ``require_best`` turns that off); otherwise the
   gate names the better checkpoint and by how much.
2. ``selected-by-matches``: run.json ``selected_by`` is the policy metric.
3. ``min-value``: the chosen value meets ``min_value`` / ``max_value``.
4. ``no-audit-findings``: no audit finding at or above the fail level.

The chosen checkpoint may be named, given as a folder, a provenance file written by
``pick``, or a weights file copied out of the run (identified by sha256).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .auditing import AuditOptions, RunAudit, audit_collected, audit_pass, audit_run
from .auditing.finding import severity_rank
from .config import Policy
from .errors import RunFormatError, UsageError
from .metrics import kernels as metrics
from .metrics.evaluation import CheckpointScore, RunScorer, iter_scores, observers, parse_metrics, prepare_predictions
from .metrics.spec import MetricSpec, base_name
from .ranking import order_scores
from .stats import bootstrap
from .stats.selection import EvaluationBuilder, select
from .store.identity import identify, provenance_metric
from .store.reader import (
    CHECKPOINTS_DIR,
    RUN_FILE,
    Checkpoint,
    Run,
    Skipped,
    discover,
    is_in_progress,
    read_predictions,
)


@dataclass(frozen=True)
class Rule:
    """One gate rule's verdict."""

    name: str
    passed: bool
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    skipped: bool = False

    def as_dict(self) -> dict[str, Any]:
        """JSON shape: name, passed, skipped, message, details."""
        return {
            "name": self.name,
            "passed": self.passed,
            "skipped": self.skipped,
            "message": self.message,
            "details": self.details,
        }


@dataclass(frozen=True)
class GateResult:
    """The verdict of ``check`` on one run."""

    run: Run
    metric: str
    chosen: Checkpoint | None
    chosen_how: str | None
    rules: tuple[Rule, ...]
    policy: Policy
    matches: tuple[str, ...] = ()  #: every checkpoint the shipped weights match (several: ambiguous)
    #: folders under checkpoints/ that are not checkpoints (no meta.json), left out with a note
    skipped: tuple[Skipped, ...] = ()

    @property
    def passed(self) -> bool:
        """All rules passed (skipped rules pass)."""
        return all(r.passed for r in self.rules)

    def as_dict(self) -> dict[str, Any]:
        """JSON shape: run, metric, chosen, chosen_how, matches, passed, policy_source, rules."""
        return {
            "run": self.run.name,
            "metric": self.metric,
            "chosen": None if self.chosen is None else self.chosen.name,
            "chosen_how": self.chosen_how,
            "matches": list(self.matches),
            "passed": self.passed,
            "policy_source": self.policy.source,
            "rules": [r.as_dict() for r in self.rules],
            "skipped": [s.as_dict() for s in self.skipped],
        }


# --------------------------------------------------------------------------- rules


def _spec_value(scores, spec_index: int, ckpt: Checkpoint) -> float | None:
    return next((s.values[spec_index] for s in scores if s.checkpoint is ckpt), None)


def _prepared(run: Run, ckpt: Checkpoint) -> metrics.Prepared:
    return prepare_predictions(run, read_predictions(run, ckpt))


def _rule_best(run: Run, spec: MetricSpec, scores, chosen: Checkpoint | None, policy: Policy, sel: Any = None) -> Rule:
    """``sel``: the run's selection statistics under ``spec`` (None: not supported)."""
    ordered = [s for s in order_scores(scores, spec) if s.values[0] is not None]
    if not ordered:
        return Rule("chosen-is-best", False, f"no checkpoint could be scored by {spec.text}")
    best = ordered[0]
    if chosen is None:
        # NOTE: a gate that checked nothing must not pass: only --allow-unchosen skips this.
        return Rule(
            "chosen-is-best",
            policy.allow_unchosen,
            "no chosen checkpoint: give --chosen or set run.json 'chosen'"
            + ("" if policy.allow_unchosen else " (or --allow-unchosen to check the run alone)")
            + f"; the best by {spec.text} is {best.checkpoint.name} ({best.values[0]:.4f})",
            {"best": best.checkpoint.name, "best_value": best.values[0]},
            skipped=policy.allow_unchosen,
        )
    value = _spec_value(scores, 0, chosen)
    if value is None:
        return Rule(
            "chosen-is-best",
            False,
            f"{chosen.name} cannot be scored by {spec.text}",
            {"chosen": chosen.name, "best": best.checkpoint.name},
        )
    gap = (best.values[0] - value) if spec.maximize else (value - best.values[0])  # type: ignore[operator]
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
    if sel is not None and sel.available:
        tied = sel.is_tied_best(chosen.name)
        details.update(
            tied_best=list(sel.tied_best),
            chosen_in_tied_best=tied,
            selection_method=sel.method,
        )
        entry = sel.entry(chosen.name)
        if entry is not None and entry.interval is not None:
            details["chosen_ci95"] = list(entry.interval)
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
        return Rule("chosen-is-best", True, f"{chosen.name} {spec.text} {value:.4f} is the best{suffix}{expected}", details)
    set_size = 0 if sel is None else len(sel.tied_best)
    if tied and not policy.require_best:
        return Rule(
            "chosen-is-best",
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
        "chosen-is-best",
        False,
        f"{chosen.name} {spec.text} {value:.4f}; {best.checkpoint.name} should have been chosen: "
        f"{spec.text} {best.values[0]:.4f}, better by {gap:.4f}{why}",
        details,
    )


def _rule_selected_by(run: Run, spec: MetricSpec, chosen: Checkpoint | None, provenance_metric: str | None) -> Rule:
    """What selected the shipped checkpoint must be the policy metric: the provenance's
    metric for a `pick` output, training's selected_by for the run's own choice."""
    if provenance_metric is not None:
        used, who = provenance_metric, "ckptaudit pick"
    elif chosen is not None and chosen.name != run.chosen:
        return Rule(
            "selected-by-matches",
            True,
            f"{chosen.name} is not the checkpoint training chose, so training's selected_by does not apply",
            {"policy_metric": spec.text, "selected_by": None},
            skipped=True,
        )
    elif run.selected_by is None:
        return Rule(
            "selected-by-matches",
            True,
            "run.json records no selected_by; nothing to compare",
            {"policy_metric": spec.text, "selected_by": None},
            skipped=True,
        )
    else:
        used, who = run.selected_by.metric, "training"
    want = spec.name if spec.source == "builtin" else spec.text
    ok = base_name(used) == base_name(want)
    details = {"selected_by": used, "selected_by_whom": who, "policy_metric": spec.text}
    if ok:
        return Rule("selected-by-matches", True, f"{who} selected by {used}, the policy metric", details)
    return Rule(
        "selected-by-matches",
        False,
        f"{who} selected by {used}, but the policy metric is {spec.text}: a checkpoint chosen by another "
        f"metric fails even when it happens to pick well",
        details,
    )


def _rule_min_value(spec: MetricSpec, value: float | None, who: str, policy: Policy) -> Rule:
    bounds = {"min_value": policy.min_value, "max_value": policy.max_value}
    if policy.min_value is None and policy.max_value is None:
        return Rule("min-value", True, "no min_value or max_value set", bounds, skipped=True)
    if value is None:
        return Rule("min-value", False, f"{who} has no {spec.text} value", bounds)
    problems = []
    if policy.min_value is not None and value < policy.min_value:
        problems.append(f"below min_value {policy.min_value:g}")
    if policy.max_value is not None and value > policy.max_value:
        problems.append(f"above max_value {policy.max_value:g}")
    details = {**bounds, "value": value, "checkpoint": who}
    if problems:
        return Rule("min-value", False, f"{who} {spec.text} {value:.4f} is {' and '.join(problems)}", details)
    return Rule("min-value", True, f"{who} {spec.text} {value:.4f} meets the bound", details)


def _audit_options(spec_text: str, policy: Policy, chosen: Checkpoint | None = None) -> AuditOptions:
    return AuditOptions(
        metric=spec_text,
        mode=policy.mode,
        resamples=policy.resamples,
        seed=policy.seed,
        focus=None if chosen is None else chosen.name,
    )


def _rule_findings(
    run: Run, spec_text: str, policy: Policy, chosen: Checkpoint | None, collected: RunAudit | None = None, sel: Any = None
) -> Rule:
    """``collected``: the audit's statistics from the gate's own pass (else the audit reads
    the run); ``sel``: the selection statistics already computed from that pass."""
    options = _audit_options(spec_text, policy, chosen)
    audited = audit_run(run, options) if collected is None else audit_collected(collected, options, selected=sel)
    if audited.problems:
        # NOTE: the audit could not read some input (a corrupt train.npz): exit 2, as `audit` does.
        more = f" (and {len(audited.problems) - 1} more)" if len(audited.problems) > 1 else ""
        raise RunFormatError(f"the gate's audit cannot read every file: {audited.problems[0]}{more}", run.name)
    findings = audited.findings
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
        return Rule("no-audit-findings", False, f"{len(failing)} finding(s) at or above {policy.fail_on}: {listed}", details)
    return Rule(
        "no-audit-findings",
        True,
        f"no audit finding at or above {policy.fail_on}" + (f" ({len(findings)} below it)" if findings else ""),
        details,
    )


def _checkpoint_folder(path: Path) -> bool:
    """Whether ``path`` is one checkpoint folder of a run (not the run itself)."""
    return (
        path.is_dir()
        and not (path / RUN_FILE).is_file()
        and path.parent.name == CHECKPOINTS_DIR
        and (path.parent.parent / RUN_FILE).is_file()
    )


def _judged(candidates: tuple[Checkpoint, ...], run: Run, scores: list[CheckpointScore], spec: MetricSpec) -> Checkpoint:
    """The candidate the gate judges when the shipped weights match several checkpoints
    (docs/check.md): the worst under the policy metric (an unscorable one is worst), then
    run.json ``chosen``, then the earliest epoch, as in `rank`'s ties."""
    if len(candidates) == 1:
        return candidates[0]
    sign = 1.0 if spec.maximize else -1.0

    def key(ckpt: Checkpoint) -> tuple:
        value = _spec_value(scores, 0, ckpt)
        return (value is not None, 0.0 if value is None else sign * value, ckpt.name != run.chosen, ckpt.order_key)

    return min(candidates, key=key)


def _unreadable(run: Run, scores: list[CheckpointScore]) -> None:
    """An unreadable prediction file stops the gate (exit 2), as it does `rank`: a gate
    never passes a run it could not read in full."""
    bad = [s for s in scores if s.unreadable]
    if bad:
        more = f" (and {len(bad) - 1} more checkpoint(s))" if len(bad) > 1 else ""
        raise RunFormatError(
            f"the gate judges every checkpoint, and {bad[0].checkpoint.name} cannot be read: {bad[0].notes[0]}{more}", run.name
        )


def _missing_values(spec: MetricSpec, scores: list[CheckpointScore], rule: Rule) -> Rule:
    """A checkpoint without a value of a logged policy metric might have been the best, so
    chosen-is-best cannot pass; checkpoints that cannot be scored for other reasons
    (non-finite outputs: a diverged model) are named in the message, never silently left out."""
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
    return Rule(rule.name, rule.passed, f"{rule.message}; not candidates, cannot be scored: {listed}", details, rule.skipped)


def check(path: str | Path, policy: Policy, chosen: str | None = None) -> GateResult:
    """Run the gate on the run at ``path`` under ``policy``.

    ``path`` may also be one checkpoint folder of a run: the gate then judges that
    checkpoint within its whole run (as ``--chosen`` it), never against itself alone.
    """
    path = Path(path)
    if _checkpoint_folder(path):
        if is_in_progress(path.name):
            raise RunFormatError("checkpoint is still being written (in-progress name)", path)
        named = str(path)
        path = path.parent.parent
        if chosen is not None:
            runs = discover([path])
            first, second = identify(runs[0], named), identify(runs[0], chosen)
            if (
                first is not None
                and second is not None
                and {c.name for c in first.candidates} != {c.name for c in second.candidates}
            ):
                raise UsageError(f"the path names checkpoint {first.candidates[0].name}, but --chosen {chosen!r} another one")
        else:
            chosen = named
    runs = discover([path])
    if len(runs) != 1:
        raise UsageError(f"check gates one run at a time; {len(runs)} runs found (name one run)", path)
    run = runs[0]
    spec_text = policy.metric_spec()
    spec = parse_metrics([spec_text], runs, policy.mode)[0]
    identified = identify(run, chosen)
    bound_spec = RunScorer(run, [spec]).specs[0]
    # NOTE: one pass reads each val.npz once: the scores, the audit's statistics (the audit
    # reads train.npz itself, once) and the per-row data of the selection statistics.
    collector = audit_pass(run, _audit_options(spec_text, policy))
    builder = None if collector.bound == bound_spec else EvaluationBuilder(run, bound_spec)
    scores = list(iter_scores(run, [spec], observe=observers(collector, None if builder is None else builder.observe)))
    _unreadable(run, scores)
    collected = collector.finish()
    evaluation = collected.evaluation if builder is None else builder.finish()
    supported = evaluation is not None and bootstrap.supports(bound_spec)
    sel = select(evaluation, resamples=policy.resamples, seed=policy.seed) if supported else None  # type: ignore[arg-type]
    ckpt = None if identified is None else _judged(identified.candidates, run, scores, bound_spec)
    how = None if identified is None else identified.how
    if identified is not None and len(identified.candidates) > 1:
        assert ckpt is not None
        how = f"{how}; judged {ckpt.name} (the worst of them by {spec_text}, then the earliest)"
    best_rule = _missing_values(bound_spec, scores, _rule_best(run, bound_spec, scores, ckpt, policy, sel))
    target = ckpt
    if target is None and best_rule.details.get("best"):
        target = run.checkpoint(best_rule.details["best"])
    value = None if target is None else _spec_value(scores, 0, target)
    rules = (
        best_rule,
        _rule_selected_by(run, bound_spec, ckpt, provenance_metric(chosen)),
        _rule_min_value(bound_spec, value, target.name if target else "-", policy),
        _rule_findings(run, spec_text, policy, ckpt, collected, sel if builder is None else None),
    )
    return GateResult(
        run=run,
        metric=spec_text,
        chosen=ckpt,
        chosen_how=how,
        rules=rules,
        policy=policy,
        skipped=run.skipped,
        matches=() if identified is None else tuple(c.name for c in identified.candidates),
    )
