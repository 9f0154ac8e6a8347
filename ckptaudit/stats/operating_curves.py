"""One checkpoint's operating-point curve under resampled row weights (issue 20).

Each checkpoint's column is sorted once into candidate thresholds (:class:`Column`); a
resample is a weight vector over the rows, so its curve is one product with the column's
segment matrix and a cumulative sum in that order (no sort per resample). :func:`choose`
applies the kernel's conventions (ties, "nothing meets the constraint") to every resample
at once; :func:`at` reads a resample's rates at a given candidate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..metrics.operating import OperatingPoint


@dataclass(frozen=True)
class Column:
    """One checkpoint's candidate thresholds and each row's place among them.

    Only the distinct scores that some positive row has are candidates (with +inf, "flag
    nothing"): for a given number of true positives, the threshold at the lowest flagged
    positive has the fewest false positives, so every optimum of every operating point (and
    the kernel's tie rule) lies there; the kernel's value and threshold are unchanged
    (tests/test_operating_point_stats.py) and a resample's curve has as many points as
    positives, not rows."""

    thresholds: np.ndarray  #: +inf, then the candidate scores, descending
    segments: Any  #: sparse (rows, candidates + 1): 1 at the first candidate that flags the row
    pos_idx: np.ndarray  #: the positive rows
    pos_segments: Any  #: ``segments`` of the positive rows


def make_column(s: np.ndarray, pos: np.ndarray, keep: int | None = None, rows: np.ndarray | None = None) -> Column:
    """The column of scores ``s`` on targets ``pos``; ``keep``: only the first (highest)
    ``keep`` candidates (the rows below them are left out of the products: the large-sample
    path, :mod:`ckptaudit.stats.operating_draws`); ``rows``: the rows the resample weights
    cover (the candidates still come from every positive)."""
    from scipy import sparse

    cand = np.unique(s[pos])  # ascending
    m = cand.shape[0] if keep is None else min(keep, cand.shape[0])
    sub = s if rows is None else s[rows]
    sub_pos = pos if rows is None else pos[rows]
    # a row is flagged from the first (descending) candidate at or below its score
    seg = cand.shape[0] - np.searchsorted(cand, sub, "right")
    inside = np.flatnonzero(seg < m)
    onehot = sparse.csr_matrix((np.ones(inside.shape[0]), (inside, seg[inside])), shape=(sub.shape[0], m + 1))
    pos_idx = np.flatnonzero(sub_pos)
    return Column(np.r_[np.inf, cand[::-1][:m].astype(np.float64)], onehot, pos_idx, onehot[pos_idx])


def weighted_counts(w: np.ndarray, col: Column, extra: tuple[Any, Any] = (0.0, 0.0)) -> tuple[np.ndarray, ...]:
    """(tp, fp, P, N) per resample (rows of the weights ``w``) and candidate threshold;
    ``extra``: the resampled positives and negatives outside the weighted rows."""
    zero = np.zeros((w.shape[0], 1))
    w_pos = w[:, col.pos_idx]
    flagged = np.asarray(w @ col.segments)[:, :-1]
    tp_seg = np.asarray(w_pos @ col.pos_segments)[:, :-1]
    tp = np.concatenate([zero, np.cumsum(tp_seg, axis=1)], axis=1)
    fl = np.concatenate([zero, np.cumsum(flagged, axis=1)], axis=1)
    p = w_pos.sum(axis=1, keepdims=True)
    n = w.sum(axis=1, keepdims=True) - p + extra[1]
    return tp, fl - tp, p + extra[0], n


def rate(name: str, tp, fp, p, n) -> np.ndarray:
    """One rate per resample and candidate (NaN where undefined)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if name == "recall":
            return np.where(p > 0, tp / p, np.nan)
        if name == "precision":
            fl = tp + fp
            return np.where(fl > 0, tp / np.where(fl > 0, fl, 1), np.nan)
        return np.where(n > 0, 1.0 - fp / n, np.nan)


def rates(tp, fp, p, n) -> dict[str, np.ndarray]:
    return {name: rate(name, tp, fp, p, n) for name in ("recall", "precision", "specificity")}


def choose(tp, fp, p, n, point: OperatingPoint, pair: tuple[np.ndarray, np.ndarray] | None = None):
    """Per resample: (value, chosen index), with the conventions of the kernel (NaN, -1:
    none); ``pair`` (target, constraint rates) when the caller already has them."""
    rows = np.arange(tp.shape[0])
    if point.is_cost:
        cost = (point.fn_cost * (p - tp) + point.fp_cost * fp) / (p + n)  # type: ignore[operator]
        i = cost.argmin(axis=1)
        return cost[rows, i], i
    if pair is None:
        pair = (rate(point.target, tp, fp, p, n), rate(point.constraint, tp, fp, p, n))  # type: ignore[arg-type]
    target, con = pair
    ok = np.isfinite(target) & (con >= point.bound - 1e-12)  # type: ignore[operator]  # NaN compares False
    t = np.where(ok, target, -np.inf)
    best = t.max(axis=1, keepdims=True)
    cand = ok & (t == best)
    c = np.where(cand, con, -np.inf)
    cand &= c == c.max(axis=1, keepdims=True)
    i = cand.argmax(axis=1)
    value = np.where(ok.any(axis=1), target[rows, i], np.nan)
    return value, np.where(ok.any(axis=1), i, -1)


def at(tp, fp, p, n, i: np.ndarray, point: OperatingPoint) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(value, constraint, the constraint's denominator count) of each resample at index
    ``i`` (NaN where ``i`` is -1)."""
    rows = np.arange(tp.shape[0])
    j = np.maximum(i, 0)
    sub = (tp[rows, j][:, None], fp[rows, j][:, None], p, n)
    if point.is_cost:
        value = ((point.fn_cost * (p - sub[0]) + point.fp_cost * sub[1]) / (p + n))[:, 0]  # type: ignore[operator]
        return np.where(i >= 0, value, np.nan), None, None
    r = rates(*sub)
    value = np.where(i >= 0, r[point.target][:, 0], np.nan)
    con = np.where(i >= 0, r[point.constraint][:, 0], np.nan)  # type: ignore[index]
    den = {"precision": sub[0] + sub[1], "recall": p, "specificity": n}[point.constraint][:, 0]  # type: ignore[index]
    return value, con, den
