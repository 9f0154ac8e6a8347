"""The resample weights of the operating point's bootstrap, and its large-sample path.

Small validation sets draw every row's multinomial count (the classic bootstrap; the
out-of-bag rows are those drawn zero times). On large ones (rows x resamples >= 2e7) most
rows cannot matter: a row below every threshold that a resample could choose only counts
towards the positive and negative totals. :func:`plan` keeps, per checkpoint, the candidate
thresholds that stay within ``Z`` standard errors of being chosen on the validation rows
(the constraint within ``Z`` standard errors of its bound and the target within ``Z`` of the
best; a cost within ``Z`` of the minimum), for the pair's own constraint and every stricter
bound the safer threshold tries; the rows any checkpoint keeps get their own Poisson(1)
weights (the Poisson bootstrap, drawn through a 16-bit lookup table; the out-of-bag rows are
the zeros) and the rows outside
only their totals: the number drawn zero times is Binomial(m, e^-1) and the sum of the
others' weights a normal draw of (m - zeros) zero-truncated Poisson(1) counts. A resample
then costs its kept rows, not all rows (bench/bench_operating_point.py).

A candidate ``Z`` = 4 standard errors from being chosen is chosen in a resample with
probability about 3e-5 (then the resample takes the window's nearest threshold instead);
the values are those of the full bootstrap up to that and the Monte Carlo noise of the
draws (tests/test_operating_point_stats.py compares both paths).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..metrics.operating import OperatingPoint
from .operating_curves import choose, rate
from .weights import poisson_one

#: rows x resamples from which the large-sample path serves (the Gaussian path's cut)
LARGE_CELLS = 20_000_000
Z = 4.0
#: candidates kept below the lowest possible one (a margin for the normal approximation)
SLACK = 8
_ZTP_MEAN = 1.0 / (1.0 - math.exp(-1.0))  # a zero-truncated Poisson(1) count's mean ...
_ZTP_VAR = _ZTP_MEAN * (2.0 - _ZTP_MEAN)  # ... and variance


@dataclass(frozen=True)
class KeptRows:
    """The rows of one checkpoint's column that a threshold the large-sample path could keep
    flags (:func:`kept_rows`): their indices, ascending, and scores; the rest of the column is
    never read on that path (a few percent of the rows, where the column is every row)."""

    index: np.ndarray
    score: np.ndarray
    #: the column's windows (:func:`plan_windows`) by the bound of each point they were kept for
    windows: dict = field(default_factory=dict)


def flagged(s: np.ndarray | KeptRows, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(indices ascending, scores) of the rows of a column (every row's score, or its
    :class:`KeptRows`) scored ``threshold`` or more."""
    if isinstance(s, KeptRows):
        at = s.score >= threshold
        return s.index[at], s.score[at]
    s = np.asarray(s)
    rows = np.flatnonzero(s >= threshold)
    return rows, s[rows]


def kept_rows(full: tuple, cand: np.ndarray, s: np.ndarray, points: list[OperatingPoint]) -> KeptRows:
    """The rows of one checkpoint's column (scores ``s``, candidates ``cand``, counts on all
    rows ``full``) that any of ``points`` (one cost point, or points that differ only in the
    bound: every bound :func:`plan` may be given) could keep a threshold flagging."""
    windows = [w[0] for w in plan_windows([full], points)]
    hi = max(w[1] for w in windows)
    rows, score = flagged(s, cand[cand.shape[0] - hi]) if hi > 0 else (np.zeros(0, np.intp), s[:0])
    return KeptRows(rows, np.array(score, copy=True), {q.bound: w for q, w in zip(points, windows, strict=True)})


@dataclass(frozen=True)
class Plan:
    """The large-sample path's rows: which rows carry weights, the thresholds each
    checkpoint keeps, and how many positives and negatives lie outside."""

    rows: np.ndarray  #: indices of the weighted rows
    windows: list[list[tuple[int, int]]]  #: per point, per checkpoint: the thresholds kept (first, last index; +inf is 0)
    union: list[tuple[int, int]]  #: per checkpoint, the window covering every point's
    pos_out: int
    neg_out: int


def _se(value: np.ndarray, den: np.ndarray) -> np.ndarray:
    """A rate's binomial standard error, plus one count (a continuity margin)."""
    d = np.maximum(den, 1.0)
    v = np.nan_to_num(value, nan=0.5)
    return np.sqrt(v * (1.0 - v) / d) + 1.0 / d


def _den(name: str, tp, fp, p, n) -> np.ndarray:
    return {"precision": tp + fp, "recall": np.broadcast_to(p, tp.shape), "specificity": np.broadcast_to(n, tp.shape)}[name]


def _cost_possible(full: tuple, point: OperatingPoint) -> np.ndarray:
    """Per candidate of one checkpoint's curve on all rows (``full``: one row of counts):
    could a resample choose it under the cost ``point``? (within ``Z`` standard errors of
    the cost's minimum)."""
    tp, fp = full[0][0], full[1][0]
    p, n = float(full[2].ravel()[0]), float(full[3].ravel()[0])
    fn_c, fp_c = float(point.fn_cost), float(point.fp_cost)  # type: ignore[arg-type]
    cost = (fn_c * (p - tp) + fp_c * fp) / (p + n)
    j = int(cost.argmin())
    var = (fn_c**2 * np.abs(tp - tp[j]) + fp_c**2 * np.abs(fp - fp[j])) / (p + n) ** 2
    return cost - cost[j] <= Z * np.sqrt(var) + 1e-12


def _possible_bounds(full: tuple, points: list[OperatingPoint]) -> np.ndarray:
    """Per candidate of one checkpoint's curve on all rows (``full``: one row of counts), one
    row per point (points that differ only in the bound): could a resample choose it? Its
    constraint within ``Z`` standard errors of reaching the bound, and on the chosen side of
    the candidate that meets it surely (a recall or specificity target, :func:`_beyond_sure`)
    or its target within ``Z`` standard errors of the best on all rows (a precision target;
    the choice on all rows by :func:`choose`, bound by bound)."""
    point = points[0]
    tp, fp = full[0][0], full[1][0]
    p, n = float(full[2].ravel()[0]), float(full[3].ravel()[0])
    bounds = np.array([float(q.bound) for q in points])[:, None]  # type: ignore[arg-type]
    con = rate(point.constraint, tp, fp, p, n)  # type: ignore[arg-type]
    con_se = Z * _se(con, _den(point.constraint, tp, fp, p, n))  # type: ignore[arg-type]
    could = ~((con + con_se)[None] < bounds)  # NaN compares False: could
    if point.target in ("recall", "specificity"):
        return could & _beyond_sure(con - con_se, bounds, point.target == "recall")
    target = rate(point.target, tp, fp, p, n)
    t_den = _den(point.target, tp, fp, p, n)
    target_up = target + Z * _se(target, t_den)
    best = np.full((len(points), 1), -np.inf)  # nothing meets a bound on all rows: only the constraint rules out
    for b, q in enumerate(points):
        v, i = choose(*full, q, (target[None], con[None]))
        if i[0] >= 0:
            best[b] = float(v[0]) - Z * float(_se(v, t_den[i])[0])
    return could & ~(target_up[None] < best)


def _beyond_sure(con_low: np.ndarray, bounds: np.ndarray, last: bool) -> np.ndarray:
    """(bounds, candidates): the candidates on the chosen side of the one that meets each bound
    surely (``con_low``: its constraint ``Z`` standard errors down). A recall target is
    chosen at the last candidate that meets the constraint (recall grows along the
    thresholds), so no candidate before the last sure one can be chosen; a specificity target
    at the first (the ties of its false positives after it), so none after the first sure one
    (SLACK covers the ties). Where the constraint hovers at the bound over a long stretch a
    resample may choose far from the best on all rows: a window cut by the target's standard
    errors instead missed 0.3% of a weak checkpoint's choices (their resamples read "none
    meets it")."""
    sure = con_low[None] >= bounds  # NaN compares False
    m = con_low.shape[0]
    idx = np.arange(m)
    if last:
        cut = np.where(sure.any(axis=1), m - 1 - sure[:, ::-1].argmax(axis=1), 0)
        return idx[None] >= cut[:, None]
    cut = np.where(sure.any(axis=1), sure.argmax(axis=1), m - 1)
    return idx[None] <= cut[:, None]


def plan_windows(fulls: list[tuple], points: list[OperatingPoint]) -> list[list[tuple[int, int]]]:
    """Per point, per checkpoint (``fulls``: its counts on all rows), the thresholds a
    resample could choose (first and last index, +inf being 0), with SLACK more on either
    side; ``points``: one cost point, or points that differ only in the bound."""
    windows: list[list[tuple[int, int]]] = [[] for _ in points]
    for full in fulls:
        possible = _cost_possible(full, points[0])[None] if points[0].is_cost else _possible_bounds(full, points)
        m = possible.shape[1]
        some = np.asarray(possible.any(axis=1))
        first = possible.argmax(axis=1)
        last = m - 1 - possible[:, ::-1].argmax(axis=1)
        for b in range(len(points)):
            win = (max(int(first[b]) - SLACK, 0), min(int(last[b]) + SLACK, m - 1)) if some[b] else (0, m - 1)
            windows[b].append(win)
    return windows


def plan(
    fulls: list[tuple],
    pos: np.ndarray,
    scores: list[np.ndarray | KeptRows],
    cands: list[np.ndarray],
    points: list[OperatingPoint],
    resamples: int,
    force: bool = False,
) -> Plan | None:
    """The large-sample path's :class:`Plan` for ``points`` (the pair's own first), or None
    where the validation set is small (or where the kept rows are most of them: the exact
    path is as fast); ``force``: on any size. ``scores``, ``cands``: each checkpoint's scores
    and candidates (ascending, :func:`~ckptaudit.stats.operating_curves.place`)."""
    n = pos.shape[0]
    if not force and n * resamples < LARGE_CELLS:
        return None
    if all(isinstance(s, KeptRows) and all(q.bound in s.windows for q in points) for s in scores):
        windows = [[s.windows[q.bound] for s in scores] for q in points]  # type: ignore[union-attr]  # (read when kept)
    else:
        windows = plan_windows(fulls, points)
    union = [(min(w[k][0] for w in windows), max(w[k][1] for w in windows)) for k in range(len(fulls))]
    inside = np.zeros(n, dtype=bool)
    for s, cand, (_, hi) in zip(scores, cands, union, strict=True):
        if hi > 0:  # flagged at a kept threshold: at or above the hi-th highest candidate
            inside[flagged(s, cand[cand.shape[0] - hi])[0]] = True
    if not force and inside.mean() > 0.5:
        return None
    rows = np.flatnonzero(inside)
    pos_out = int(pos.sum() - pos[rows].sum())
    return Plan(rows, windows, union, pos_out, int(n - rows.shape[0] - pos_out))


def _outside(m: int, r: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(in-bag total, out-of-bag count) per resample of ``m`` rows outside the weighted ones."""
    if m < 30:  # few: their own weights
        w = rng.poisson(1.0, (r, m))
        return w.sum(axis=1).astype(np.float64), (w == 0).sum(axis=1).astype(np.float64)
    zeros = rng.binomial(m, math.exp(-1.0), r).astype(np.float64)
    rest = m - zeros
    total = np.maximum(np.rint(rng.normal(rest * _ZTP_MEAN, np.sqrt(rest * _ZTP_VAR))), rest)
    return total, zeros


def draw(p: Plan | None, n: int, r: int, rng: np.random.Generator):
    """``r`` resamples: (in-bag weights, out-of-bag weights, in-bag extra (P, N), out-of-bag
    extra (P, N), each (r,)); the weights one column per resample (rows, r), over all rows
    (``p`` None: the multinomial bootstrap) or the plan's rows."""
    if p is None:
        counts = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(r)], axis=1).astype(np.float64)
        return counts, (counts == 0).astype(np.float64), (0.0, 0.0), (0.0, 0.0)
    # NOTE: one byte a weight: the curves gather whole rows of weights, and a quarter of the
    # bytes is about that much faster
    w = poisson_one(rng, (p.rows.shape[0], r))
    oob = (w == 0).view(np.uint8)
    p_in, p_oob = _outside(p.pos_out, r, rng)
    n_in, n_oob = _outside(p.neg_out, r, rng)
    return w, oob, (p_in, n_in), (p_oob, n_oob)
