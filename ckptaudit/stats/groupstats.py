"""Selection statistics of grouped metrics (``worst_group(M)``, ``M:group=NAME``).

The compact per-row data of a grouped metric is that of ``M`` (:mod:`ckptaudit.stats.rows`)
with each row's group folded into its resampling stratum: ``strata = group * k + s`` where
``s`` is ``M``'s own stratum (0 for row-resampled metrics) and ``k = RowData.group_div``.
So the bootstrap draws every group's rows within that group (stratified by group: a
resample never loses a slice, and the worst group is the same slice's rows in every
resample), and the reorderings of the weight engine carry the groups along with the rows.

A weighted value is ``M`` under the row weights masked to each group's rows (the same
weighted sums as ``M``, so unit weights reproduce each group's displayed value); the worst
over groups is the minimum (maximised metrics) or maximum (losses), ignoring groups where
``M`` is undefined in that resample. Only sum-type forms are served (confusion counts and
per-row means); ROC AUC / average precision per group, ece and R2 have no grouped per-row
form here and their selection statistics are reported as unavailable, with the reason.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from ..metrics.spec import MetricSpec
from .rows import distinct_codes

#: per-row forms whose weighted value is a function of weighted sums over rows
GROUPED_KINDS = ("confusion", "mean")


def group_strata(base: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, int]:
    """The strata of grouped rows and the divisor that recovers each row's group."""
    k = int(base.max()) + 1 if base.size else 1
    return codes.astype(np.int64) * k + base, k


def codes_of(rows: Any) -> np.ndarray:
    """Each row's group code, from its stratum."""
    return rows.strata // rows.group_div


def grouped_values(rows: Any, w: np.ndarray, spec: MetricSpec, task: str) -> np.ndarray:
    """(k, N) weights -> (k, C) values of a grouped spec (see the module docstring)."""
    from .weighted import weighted_values

    inner = replace(rows, group_div=0)
    codes = codes_of(rows)
    if rows.group_pick >= 0:
        return weighted_values(inner, w * (codes == rows.group_pick).astype(w.dtype)[None, :], spec, task)
    worst: np.ndarray | None = None
    for g in distinct_codes(codes):
        values = weighted_values(inner, w * (codes == g).astype(w.dtype)[None, :], spec, task)
        if worst is None:
            worst = values
            continue
        with np.errstate(invalid="ignore"):
            # NOTE: fmin/fmax ignore NaN (a group where M is undefined in this resample)
            worst = np.fmin(worst, values) if spec.maximize else np.fmax(worst, values)
    assert worst is not None
    return worst


def paired_values(rows: Any, both: np.ndarray, spec: MetricSpec, task: str) -> np.ndarray:
    """:func:`grouped_values` of stacked in-bag and out-of-bag weights ``both`` (2k, N),
    where the out-of-bag value of ``worst_group(M)`` is ``M`` on the group that was worst
    *in bag* (per resample and checkpoint), not the worst group out of bag: the worst
    group is selected too, so it is scored on rows that did not select it. (The minimum of
    G noisy out-of-bag group values is biased low when groups are about equally hard: by
    2.2 points for 4 groups of 0.80 at n = 4,000; bench/simulate_slices.py.)"""
    if rows.group_pick >= 0:
        return grouped_values(rows, both, spec, task)
    from .weighted import weighted_values

    inner = replace(rows, group_div=0)
    codes = codes_of(rows)
    per = np.stack(
        [weighted_values(inner, both * (codes == g).astype(both.dtype)[None, :], spec, task) for g in distinct_codes(codes)]
    )
    k = both.shape[0] // 2
    sign = 1.0 if spec.maximize else -1.0
    oriented = np.where(np.isfinite(per[:, :k]), sign * per[:, :k], np.inf)
    worst = oriented.argmin(axis=0)  # (k, C): the in-bag worst group
    out = np.empty((both.shape[0], per.shape[2]))
    out[:k] = np.take_along_axis(per[:, :k], worst[None], axis=0)[0]
    out[:k][~np.isfinite(oriented).any(axis=0)] = np.nan
    out[k:] = np.take_along_axis(per[:, k:], worst[None], axis=0)[0]
    return out


def picked_rows(rows: Any) -> Any:
    """The rows of a ``group=NAME`` metric alone, as plain (ungrouped) row data; None for
    ``worst_group`` (no single set of rows)."""
    if rows.group_pick < 0:
        return None
    keep = codes_of(rows) == rows.group_pick
    classes = None if rows.classes is None else rows.classes[keep]
    y = rows.y[keep] if rows.y.shape[0] == keep.shape[0] else rows.y
    base = rows.strata[keep] % rows.group_div
    return replace(rows, y=y, data=rows.data[:, keep], strata=base, classes=classes, group_div=0, group_pick=-1)
