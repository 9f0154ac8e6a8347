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

    thresholds: np.ndarray  #: +inf, then the candidate scores, descending (from ``lo`` on)
    segments: Any  #: sparse (candidates, rows): 1 at the first candidate that flags the row
    pos_segments: Any  #: ``segments`` of the positive rows only
    lo: int = 0  #: the index of ``thresholds[0]`` among all of the column's thresholds


def place(s: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(candidates ascending, each row's place): a row is flagged from the first (descending)
    candidate at or below its score, threshold index ``place + 1`` (+inf being 0); rows below
    every candidate have the last place."""
    cand = np.unique(s[pos])
    return cand, cand.shape[0] - np.searchsorted(cand, s, "right")


def full_counts(cand: np.ndarray, seg: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, ...]:
    """(tp, fp, P, N) on all rows, one row of counts per threshold (as :func:`weighted_counts`)."""
    m = cand.shape[0]
    tp = np.r_[0.0, np.cumsum(np.bincount(seg[pos], minlength=m + 1)[:m])][None].astype(np.float64)
    fl = np.r_[0.0, np.cumsum(np.bincount(seg, minlength=m + 1)[:m])][None].astype(np.float64)
    p = float(np.count_nonzero(pos))
    return tp, fl - tp, np.array([[p]]), np.array([[pos.shape[0] - p]])


def make_column(
    cand: np.ndarray,
    seg: np.ndarray,
    pos: np.ndarray,
    window: tuple[int, int] | None = None,
    rows: np.ndarray | None = None,
    dtype: Any = np.float64,
) -> Column:
    """The column of one checkpoint (:func:`place`'s candidates and places) on targets
    ``pos``. ``window`` (lo, hi): only thresholds lo..hi (indices among all, +inf being 0)
    are kept: the rows above ``lo`` are summed as one, those below ``hi`` left out of the
    products (the large-sample path, :mod:`ckptaudit.stats.operating_draws`); ``rows``: the
    rows the resample weights cover (the candidates still come from every positive)."""
    from scipy import sparse

    m = cand.shape[0]
    lo, hi = (0, m) if window is None else (max(0, window[0]), min(window[1], m))
    sub = seg if rows is None else seg[rows]
    sub_pos = pos if rows is None else pos[rows]
    # the row's place in the window: 0 when a threshold above the window flags it
    at = np.maximum(sub + 1 - lo, 0)
    inside = np.flatnonzero(at <= hi - lo)
    shape = (hi - lo + 1, sub.shape[0])
    onehot = sparse.csr_matrix((np.ones(inside.shape[0], dtype), (at[inside], inside)), shape=shape)
    on_pos = inside[sub_pos[inside]]
    pos_onehot = sparse.csr_matrix((np.ones(on_pos.shape[0], dtype), (at[on_pos], on_pos)), shape=shape)
    thresholds = np.r_[np.inf, cand[::-1].astype(np.float64)][lo : hi + 1]
    return Column(thresholds, onehot, pos_onehot, lo)


def weighted_counts(wt: np.ndarray, col: Column, totals: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, ...]:
    """(tp, fp, P, N) per resample and candidate threshold; ``wt``: the rows' weights, one
    column per resample (C order: each product reads it in one pass); ``totals``: the
    resampled positive and negative counts (:func:`totals`)."""
    # NOTE: float32 weights (the large-sample path) sum whole counts exactly below 2^24 (the
    # caller's bound), so the cumulative sums run in float32 too (a float64 accumulator over
    # float32 input was 3x slower) and only then become float64, for the rates
    fl = np.cumsum(col.segments @ wt, axis=0).astype(np.float64, copy=False).T
    tp = np.cumsum(col.pos_segments @ wt, axis=0).astype(np.float64, copy=False).T
    return tp, fl - tp, totals[0], totals[1]


def totals(wt: np.ndarray, pos: np.ndarray, extra: tuple[Any, Any] = (0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """(P, N) per resample, shape (resamples, 1): the weighted rows' positives and negatives
    (``pos``: bool over them) plus ``extra``, those outside the weighted rows."""
    p = (pos.astype(wt.dtype) @ wt).astype(np.float64)[:, None]
    n = wt.sum(axis=0, dtype=np.float64)[:, None] - p
    return p + extra[0], n + extra[1]


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
