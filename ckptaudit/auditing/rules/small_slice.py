"""The ``small-slice`` finding."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from ..common import Rule, _r
from ..finding import CodeInfo, Finding
from ._slices import slices_of

if TYPE_CHECKING:
    from ..engine import AuditOptions, RunAudit

INFO = CodeInfo(
    "small-slice",
    "warning",
    "A slice of the validation set is too small for any claim about it.",
    "For a proportion metric (accuracy, recall, ...): the 95% interval of the judged checkpoint's value on the "
    "slice is wider than +-0.05, so no difference of 5 points or less can be claimed; the message gives the "
    "rows the slice would need. For other metrics: fewer than --min-rows rows.",
    "A worst-group value, or a slice regression, on a few dozen rows is mostly noise.",
    "A slice that is rare by nature and judged elsewhere.",
    "Validate on more rows of the slice (the message says how many), or merge it with a neighbour.",
)


def detect(ra: RunAudit, o: AuditOptions) -> Iterator[Finding]:
    from ...stats.slicecompare import CLAIM_HALF_WIDTH, half_width, rows_needed
    from ...stats.weighted import weighted_values

    sl = slices_of(ra, o)
    if sl is None:
        return
    proportion = sl.rows.kind == "confusion"
    small = []
    for g, name in enumerate(sl.names):
        mask = (sl.codes == g).astype(np.float32)
        n = int(mask.sum())
        value = float(weighted_values(sl.rows, mask[None, :], ra.spec, ra.run.task)[0, sl.focus_row])
        if proportion and np.isfinite(value):
            if half_width(value, n) > CLAIM_HALF_WIDTH:
                small.append((name, n, value, rows_needed(value)))
        elif n < o.min_rows:
            small.append((name, n, value, o.min_rows))
    if not small:
        return
    name, n, value, need = min(small, key=lambda s: s[1])
    precision = f"+-{CLAIM_HALF_WIDTH:g}" if proportion else f"{o.min_rows} rows"
    yield Finding(
        "small-slice",
        "warning",
        ra.run.name,
        sl.focus,
        f"{len(small)} slice(s) too small for a claim at {precision}: {name!r} has {n} rows and would need {need} "
        f"({ra.spec.text} {value:.4f} on it)",
        {
            "metric": ra.spec.text,
            "group_column": sl.column,
            "slices": [{"group": s[0], "rows": s[1], "value": _r(s[2], 6), "rows_needed": s[3]} for s in small],
            "half_width": CLAIM_HALF_WIDTH if proportion else None,
            "min_rows": None if proportion else o.min_rows,
        },
    )


RULE = Rule(INFO, detect, order=210)
