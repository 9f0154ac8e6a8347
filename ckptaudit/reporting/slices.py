"""The report's slices (issue 24): each checkpoint's first metric on every group of the
run's group column, and the churn gate's flips when the gate compared with a baseline.

The per-slice rows are :func:`ckptaudit.slices.slice_rows`, the function behind
``rank --by group`` (so the page's numbers are that command's, to the digit); the flips are
the ``churn`` rule's details as the gate recorded them. Nothing here computes a statistic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import CkptauditError, MetricError
from ..store.reader import Run


def slice_table(run: Run, verdict: Any, *, resamples: int, seed: int, notes: list[str], seen: Any = None) -> tuple[Any, ...]:
    """The ``rank --by group`` rows of ``run`` under the verdict's first metric, or () when
    the run has no group column or the metric is not a plain built-in one (a grouped spec,
    a logged value); a slice that cannot be scored is a note, not a failure of the page.
    ``seen`` (a :class:`~ckptaudit.reporting.focus.FocusWatch` of the run's pass) holds the
    group columns of the first file the pass read, so a run without any is not read again."""
    from ..slices import run_groups, slice_rows
    from ..store.groups import pick_column
    from .focus import UNSEEN

    if verdict is None or not verdict.metrics:
        return ()
    spec = verdict.metrics[0].spec
    if spec.source != "builtin" or spec.group_agg is not None or spec.group_name is not None:
        return ()
    try:
        # NOTE: the first file the pass read is the first readable one run_groups would read
        first = UNSEEN if seen is None else seen.first_groups
        if first is UNSEEN:
            run_groups(run, spec.group_column)
        else:
            pick_column(first, spec.group_column, run.name)
    except MetricError:
        return ()  # no group column: nothing to show
    try:
        return tuple(slice_rows(run, spec, resamples=resamples, seed=seed))
    except CkptauditError as exc:
        notes.append(f"per-slice table left out: {exc}")
        return ()


def churn_details(rules: Sequence[Any]) -> dict[str, Any] | None:
    """The ``churn`` rule's details (per-slice flips, McNemar, the first flipped rows) when
    the gate compared the run with a baseline, else None."""
    for rule in rules:
        if rule.name == "churn" and not rule.skipped and isinstance(rule.details, dict) and "overall" in rule.details:
            return rule.details
    return None
