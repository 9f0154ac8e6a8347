"""What the slice findings (``slice-regression``, ``small-slice``) share: the run's slices
and the checkpoint they judge."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..engine import AuditOptions, RunAudit


@dataclass(frozen=True)
class Slices:
    """The audit metric's per-row data without groups, each row's slice, and the focus."""

    rows: Any
    codes: np.ndarray
    names: tuple[str, ...]
    column: str
    focus: str  #: the checkpoint judged: --focus, else run.json chosen, else the winner
    focus_row: int  #: its row in ``rows.data``
    scored: dict[str, int]  #: checkpoint name -> row in ``rows.data``


def slices_of(ra: RunAudit, o: AuditOptions) -> Slices | None:
    """The run's slices under the audit metric, or None (no group column, no per-row data
    of a sum-type form, or the focus not scored)."""
    from ...stats.groupstats import GROUPED_KINDS, codes_of
    from ...store.groups import GROUP, group_codes, pick_column

    ev = ra.evaluation
    if ev is None or ev.rows is None or ev.rows.kind not in GROUPED_KINDS or ra.val_changed:
        return None
    rows = ev.rows
    if rows.group_div:  # the audit metric is itself grouped: its slices
        codes, names = codes_of(rows), rows.group_names
        column = ra.spec.group_column or GROUP
        rows = replace(rows, group_div=0, group_pick=-1, strata=np.zeros_like(rows.strata))
    elif ra.groups:
        try:
            column, values = pick_column(ra.groups, None, ra.run.name)
        except Exception:  # several columns and no default: the slice findings need one
            return None
        codes, names = group_codes(values)
        if codes.shape[0] != rows.data.shape[-1]:
            return None
    else:
        return None
    scored = {ev.checkpoints[i].name: j for j, i in enumerate(ev.scored)}
    focus = o.focus or ra.run.chosen or (ra.winner.name if ra.winner is not None else None)
    if focus is None or focus not in scored:
        return None
    return Slices(rows, codes, tuple(names), column, focus, scored[focus], scored)
