"""``check``: the CI gate that rejects a checkpoint chosen by the wrong metric.

Four named rules, each reported on its own (docs/check.md):

1. ``chosen-is-best``: the chosen checkpoint is the best under the policy metric, within
   the tolerance; otherwise the gate names the better checkpoint, by how much, and
   whether the difference is within the noise (paired bootstrap).
2. ``selected-by-matches``: run.json ``selected_by`` is the policy metric.
3. ``min-value``: the chosen value meets ``min_value`` / ``max_value``.
4. ``no-audit-findings``: no audit finding at or above the fail level.

The chosen checkpoint may be named, given as a folder, a provenance file written by
``pick``, or a weights file copied out of the run (identified by sha256).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import bootstrap, metrics
from .auditing import AuditOptions, audit_run
from .config import Policy
from .errors import UsageError
from .findings import severity_rank
from .metricspec import MetricSpec, base_name
from .picking import PROVENANCE_SUFFIX, sha256_file, weight_files, weight_hashes
from .ranking import order_scores
from .runs import META_FILE, Checkpoint, Run, Skipped, discover, read_predictions
from .scoring import RunScorer, iter_scores, parse_metrics, prepare_predictions


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
    #: folders under checkpoints/ that are not checkpoints (no meta.json), left out with a note
    skipped: tuple[Skipped, ...] = ()

    @property
    def passed(self) -> bool:
        """All rules passed (skipped rules pass)."""
        return all(r.passed for r in self.rules)

    def as_dict(self) -> dict[str, Any]:
        """JSON shape: run, metric, chosen, chosen_how, passed, policy_source, rules."""
        return {
            "run": self.run.name,
            "metric": self.metric,
            "chosen": None if self.chosen is None else self.chosen.name,
            "chosen_how": self.chosen_how,
            "passed": self.passed,
            "policy_source": self.policy.source,
            "rules": [r.as_dict() for r in self.rules],
            "skipped": [s.as_dict() for s in self.skipped],
        }


# --------------------------------------------------------------------------- chosen


def _by_hash(run: Run, digest: str) -> tuple[Checkpoint, str] | None:
    for ckpt in run.checkpoints:
        for path in weight_files(ckpt.path):
            if sha256_file(path) == digest:
                return ckpt, str(path.relative_to(ckpt.path))
    return None


def identify_chosen(run: Run, chosen: str | None) -> tuple[Checkpoint | None, str | None]:
    """Find the checkpoint ``--chosen`` names, and say how it was identified."""
    if chosen is None:
        if run.chosen is None:
            return None, None
        ckpt = run.checkpoint(run.chosen)
        if ckpt is None:
            raise UsageError(f"run.json 'chosen' names {run.chosen!r}, which is not a checkpoint of the run", run.path)
        return ckpt, "run.json chosen"
    by_name = run.checkpoint(chosen)
    path = Path(chosen)
    if by_name is not None and not (path.exists() and path.is_file()):
        return by_name, "by name"
    if not path.exists():
        raise UsageError(f"--chosen {chosen!r} is neither a checkpoint of the run nor an existing file or folder")
    if path.is_file() and path.name.endswith(PROVENANCE_SUFFIX):
        try:
            prov = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(f"unreadable provenance file: {exc}", path) from None
        name = prov.get("checkpoint") if isinstance(prov, dict) else None
        ckpt = run.checkpoint(name) if isinstance(name, str) else None
        if ckpt is None:
            raise UsageError(f"provenance names checkpoint {name!r}, which is not in run {run.name}", path)
        if Path(str(prov.get("run", ""))).resolve() != run.path.resolve():
            raise UsageError(f"provenance is for run {prov.get('run')}, not {run.path.resolve()}", path)
        current = weight_hashes(ckpt.path)
        if prov.get("files") and prov["files"] != current:
            raise UsageError(f"the weights of {ckpt.name} changed since the provenance was written", path)
        dest = path.with_name(path.name[: -len(PROVENANCE_SUFFIX)])
        if dest.exists() and prov.get("files") and weight_hashes(dest) != prov["files"]:
            raise UsageError("the placed copy does not match its provenance hashes", dest)
        return ckpt, f"provenance {path.name}"
    if path.is_dir():
        resolved = path.resolve()
        for ckpt in run.checkpoints:
            if ckpt.path.resolve() == resolved:
                return ckpt, "by folder"
        hashes = weight_hashes(path)
        if not hashes:
            raise UsageError("folder holds no weights files to identify it by", path)
        for ckpt in run.checkpoints:
            if weight_hashes(ckpt.path) == hashes:
                return ckpt, f"folder matches {ckpt.name} by sha256"
        raise UsageError(f"folder matches no checkpoint of {run.name} (compared sha256 of {len(hashes)} files)", path)
    if path.name == META_FILE:
        return identify_chosen(run, str(path.parent))
    digest = sha256_file(path)
    found = _by_hash(run, digest)
    if found is None:
        raise UsageError(f"sha256 {digest[:12]}… matches no weights file of {run.name}", path)
    ckpt, rel = found
    return ckpt, f"sha256 matches {ckpt.name}/{rel}"


def provenance_metric(chosen: str | None) -> str | None:
    """The metric a provenance file says its checkpoint was picked by, if ``chosen`` is one."""
    if chosen is None or not chosen.endswith(PROVENANCE_SUFFIX) or not Path(chosen).is_file():
        return None
    try:
        data = json.loads(Path(chosen).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data.get("metric") if isinstance(data, dict) else None


# --------------------------------------------------------------------------- rules


def _spec_value(scores, spec_index: int, ckpt: Checkpoint) -> float | None:
    return next((s.values[spec_index] for s in scores if s.checkpoint is ckpt), None)


def _prepared(run: Run, ckpt: Checkpoint) -> metrics.Prepared:
    return prepare_predictions(run, read_predictions(run, ckpt))


def _rule_best(run: Run, spec: MetricSpec, scores, chosen: Checkpoint | None, policy: Policy) -> Rule:
    ordered = [s for s in order_scores(scores, spec) if s.values[0] is not None]
    if not ordered:
        return Rule("chosen-is-best", False, f"no checkpoint could be scored by {spec.text}")
    best = ordered[0]
    if chosen is None:
        return Rule(
            "chosen-is-best",
            True,
            f"no chosen checkpoint (give --chosen or set run.json 'chosen'); "
            f"the best by {spec.text} is {best.checkpoint.name} ({best.values[0]:.4f})",
            {"best": best.checkpoint.name, "best_value": best.values[0]},
            skipped=True,
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
    }
    if best.checkpoint is chosen or gap <= policy.tolerance:
        suffix = (
            ""
            if best.checkpoint is chosen
            else f" (best {best.checkpoint.name} {best.values[0]:.4f}, within tolerance {policy.tolerance:g})"
        )
        return Rule("chosen-is-best", True, f"{chosen.name} {spec.text} {value:.4f} is the best{suffix}", details)
    noise = ""
    if bootstrap.supports(spec):
        a, b = (_prepared(run, c) for c in (best.checkpoint, chosen))
        cmp = bootstrap.compare(spec, a, b, resamples=policy.resamples, seed=policy.seed)
        details.update(ci95=[cmp.low, cmp.high], within_noise=cmp.tied)
        noise = f"; 95% interval of the difference [{cmp.low:+.4f}, {cmp.high:+.4f}]: " + (
            "within the noise of this validation set" if cmp.tied else "significant"
        )
    return Rule(
        "chosen-is-best",
        False,
        f"{chosen.name} {spec.text} {value:.4f}; {best.checkpoint.name} should have been chosen: "
        f"{spec.text} {best.values[0]:.4f}, better by {gap:.4f}{noise}",
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


def _rule_findings(run: Run, spec_text: str, policy: Policy, chosen: Checkpoint | None) -> Rule:
    options = AuditOptions(
        metric=spec_text,
        mode=policy.mode,
        resamples=policy.resamples,
        seed=policy.seed,
        focus=None if chosen is None else chosen.name,
    )
    findings = audit_run(run, options).findings
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


def check(path: str | Path, policy: Policy, chosen: str | None = None) -> GateResult:
    """Run the gate on the run at ``path`` under ``policy``."""
    runs = discover([path])
    if len(runs) != 1:
        raise UsageError(f"check gates one run at a time; {len(runs)} runs found (name one run)", path)
    run = runs[0]
    spec_text = policy.metric_spec()
    spec = parse_metrics([spec_text], runs, policy.mode)[0]
    scores = list(iter_scores(run, [spec]))
    ckpt, how = identify_chosen(run, chosen)
    bound_spec = RunScorer(run, [spec]).specs[0]
    best_rule = _rule_best(run, bound_spec, scores, ckpt, policy)
    target = ckpt
    if target is None and best_rule.details.get("best"):
        target = run.checkpoint(best_rule.details["best"])
    value = None if target is None else _spec_value(scores, 0, target)
    rules = (
        best_rule,
        _rule_selected_by(run, bound_spec, ckpt, provenance_metric(chosen)),
        _rule_min_value(bound_spec, value, target.name if target else "-", policy),
        _rule_findings(run, spec_text, policy, ckpt),
    )
    return GateResult(run=run, metric=spec_text, chosen=ckpt, chosen_how=how, rules=rules, policy=policy, skipped=run.skipped)
