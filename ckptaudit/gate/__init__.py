"""``check``: the CI gate that rejects a checkpoint chosen by the wrong metric.

Four named rules, each reported on its own (docs/check.md), one module each under
:mod:`ckptaudit.gate.rules`: ``chosen-is-best``, ``selected-by-matches``, ``min-value``,
``no-audit-findings``. They read the run's :class:`~ckptaudit.verdict.Verdict` (computed
once, under the policy) and compute nothing of their own; :mod:`ckptaudit.gate.engine`
iterates them; the policy is :class:`~ckptaudit.config.Policy` (docs/check.md).

The chosen checkpoint may be named, given as a folder, a provenance file written by
``pick``, or a weights file copied out of the run (identified by sha256,
:mod:`ckptaudit.store.identity`).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..config import Policy
from ..verdict.model import Rule
from .result import GateResult


def check(path: str | Path, policy: Policy, chosen: str | None = None) -> GateResult:
    """Run the gate on the run at ``path`` under ``policy``.

    ``path`` may also be one checkpoint folder of a run: the gate then judges that
    checkpoint within its whole run (as ``--chosen`` it), never against itself alone.
    """
    from ..errors import RunFormatError, UsageError
    from ..store.identity import identify
    from ..store.reader import discover, is_in_progress
    from ..verdict.build import evaluate

    path, chosen = _local(path, chosen)
    if _checkpoint_folder(path):
        if is_in_progress(path.name):
            raise RunFormatError("checkpoint is still being written (in-progress name)", path)
        named = str(path)
        path = path.parent.parent
        if chosen is not None:
            run = discover([path])[0]
            first, second = identify(run, named), identify(run, chosen)
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
    policy = _shipped_threshold(policy, chosen)
    from .engine import judge

    return GateResult.of(evaluate(runs[0], policy=policy, chosen=chosen, judge=judge))


def _local(path: str | Path, chosen: str | None) -> tuple[Path, str | None]:
    """The run (and a ``--chosen`` file) as local paths: a URL is read through a local copy
    (:mod:`ckptaudit.store.mirror`), with the weights when ``--chosen`` is a weights file."""
    from ..store.mirror import localize
    from ..store.remote import url_scheme

    if chosen is not None and url_scheme(chosen):
        chosen = localize(chosen)
    if isinstance(path, str) and url_scheme(path):
        weights = chosen is not None and os.path.isfile(chosen) and not chosen.endswith(".json")
        path = localize(path, weights=weights)
    return Path(path), chosen


def _shipped_threshold(policy: Policy, chosen: str | None) -> Policy:
    """The policy with the threshold a ``pick`` provenance file ships beside its checkpoint, when
    the metric is an operating point and no threshold was given (``--threshold`` wins): the
    gate then verifies the pair serving code reads, not a pair retyped by hand."""
    from dataclasses import replace

    from ..metrics.spec import MetricError, parse_metric
    from ..store.identity import provenance_threshold

    if policy.threshold is not None or policy.metric is None:
        return policy
    shipped = provenance_threshold(chosen)
    if shipped is None:
        return policy
    try:
        operating = parse_metric(policy.metric).operating
    except MetricError:
        return policy  # the verdict's own pass reports the bad spec
    return policy if operating is None else replace(policy, threshold=shipped)


def _checkpoint_folder(path: Path) -> bool:
    """Whether ``path`` is one checkpoint folder of a run (not the run itself)."""
    from ..store.reader import CHECKPOINTS_DIR, RUN_FILE

    return (
        path.is_dir()
        and not (path / RUN_FILE).is_file()
        and path.parent.name == CHECKPOINTS_DIR
        and (path.parent.parent / RUN_FILE).is_file()
    )


__all__ = ["GateResult", "Policy", "Rule", "check"]
