"""The ``slice-regression`` finding."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..common import Rule, _r
from ..finding import CodeInfo, Finding
from ._slices import slices_of

if TYPE_CHECKING:
    from ..engine import AuditOptions, RunAudit

INFO = CodeInfo(
    "slice-regression",
    "warning",
    "The chosen checkpoint is worse on a slice than another checkpoint that is as good overall.",
    "The checkpoint judged (--focus, else run.json chosen, else the best overall) is compared on every slice "
    "of the validation set's group column (docs/slices.md) with each other checkpoint that cannot be told "
    "apart from the best overall (the 95% model confidence set). A slice is reported when the other "
    "checkpoint is better on it beyond noise: a paired bootstrap within each slice, one-sided, Bonferroni "
    "over slices x compared checkpoints (family-wise error <= 5%). The message names the slice, the other "
    "checkpoint and the size of the loss.",
    "Averages hide slices: which checkpoint is kept changes worst-group accuracy by 10-40 points on the "
    "standard benchmarks (Sagawa et al. 2020), at no cost overall here.",
    "A slice nobody serves; a deliberate trade of one slice for another.",
    "Select by `worst_group(METRIC)` (`pick --metric 'worst_group(accuracy)'`), or look at `rank --by group`.",
)

#: the family-wise error rate of the slice comparisons
ALPHA = 0.05


def detect(ra: RunAudit, o: AuditOptions) -> Iterator[Finding]:
    from ...stats.slicecompare import slice_losses

    sl = slices_of(ra, o)
    sel = ra.selection
    if sl is None or sel is None or sel.estimate is None or len(sl.names) < 2:
        return
    others = [name for name in sel.tied_best if name != sl.focus and name in sl.scored]
    if not others:
        return
    losses = slice_losses(
        sl.rows,
        ra.spec,
        ra.run.task,
        sl.codes,
        sl.names,
        sl.focus_row,
        [sl.scored[n] for n in others],
        [sl.focus, *others],
        resamples=o.resamples,
        seed=o.seed,
    )
    found = [s for s in losses if s.loss > 0 and s.p_adjusted < ALPHA]
    if not found:
        return
    worst: dict[str, object] = {}
    for s in sorted(found, key=lambda s: -s.loss):
        worst.setdefault(s.group, s)
    top = max(found, key=lambda s: s.loss)
    metric = ra.spec.text
    yield Finding(
        "slice-regression",
        "warning",
        ra.run.name,
        sl.focus,
        f"{sl.focus} is worse on slice {top.group!r} ({top.rows} rows) than {top.other}, which cannot be told apart "
        f"from the best overall: {metric} {top.focus_value:.4f} vs {top.other_value:.4f} (a loss of {top.loss:.4f}, "
        f"p={top.p_adjusted:.2g} family-wise over {len(sl.names)} slices x {len(others)} checkpoints); "
        f"{len(worst)} slice(s) regress",
        {
            "metric": metric,
            "checkpoint": sl.focus,
            "group_column": sl.column,
            "slices": [
                {
                    "group": s.group,  # type: ignore[attr-defined]
                    "rows": s.rows,  # type: ignore[attr-defined]
                    "better_checkpoint": s.other,  # type: ignore[attr-defined]
                    "value": _r(s.focus_value, 6),  # type: ignore[attr-defined]
                    "better_value": _r(s.other_value, 6),  # type: ignore[attr-defined]
                    "loss": _r(s.loss, 6),  # type: ignore[attr-defined]
                    "p_adjusted": _r(s.p_adjusted, 6),  # type: ignore[attr-defined]
                }
                for s in worst.values()
            ],
            "compared": others,
            "comparisons": top.comparisons,
            "alpha": ALPHA,
            "resamples": o.resamples,
            "seed": o.seed,
        },
    )


RULE = Rule(INFO, detect, order=200)
