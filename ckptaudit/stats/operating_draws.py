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
from dataclasses import dataclass

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


def _spread(full: tuple, point: OperatingPoint) -> tuple[np.ndarray, ...]:
    """Per candidate of one checkpoint's curve on all rows: (target, constraint, the
    constraint Z standard errors up, the target's denominator, the target Z standard errors
    up); the same for every bound (:func:`plan` reads them once per checkpoint)."""
    tp, fp = full[0][0], full[1][0]
    p, n = float(full[2].ravel()[0]), float(full[3].ravel()[0])
    target = rate(point.target, tp, fp, p, n)
    con = rate(point.constraint, tp, fp, p, n)  # type: ignore[arg-type]
    t_den = _den(point.target, tp, fp, p, n)
    return target, con, con + Z * _se(con, _den(point.constraint, tp, fp, p, n)), t_den, target + Z * _se(target, t_den)  # type: ignore[arg-type]


def _possible(full: tuple, point: OperatingPoint, spread: tuple[np.ndarray, ...] | None = None) -> np.ndarray:
    """Per candidate of one checkpoint's curve on all rows (``full``: one row of counts):
    could a resample choose it under ``point``? ``spread``: its :func:`_spread`, when read already."""
    tp, fp = full[0][0], full[1][0]
    p, n = float(full[2].ravel()[0]), float(full[3].ravel()[0])
    if point.is_cost:
        fn_c, fp_c = float(point.fn_cost), float(point.fp_cost)  # type: ignore[arg-type]
        cost = (fn_c * (p - tp) + fp_c * fp) / (p + n)
        j = int(cost.argmin())
        var = (fn_c**2 * np.abs(tp - tp[j]) + fp_c**2 * np.abs(fp - fp[j])) / (p + n) ** 2
        return cost - cost[j] <= Z * np.sqrt(var) + 1e-12
    target, con, con_up, t_den, target_up = _spread(full, point) if spread is None else spread
    ok = ~(con_up < point.bound)  # type: ignore[operator]
    v, i = choose(*full, point, (target[None], con[None]))
    if i[0] < 0:
        return ok  # nothing meets the bound on all rows: only the constraint rules out
    best = float(v[0]) - Z * float(_se(np.array([v[0]]), np.array([t_den[i[0]]]))[0])
    return ok & ~(target_up < best)


def plan_windows(fulls: list[tuple], point: OperatingPoint, spread: list | None = None) -> list[tuple[int, int]]:
    """Per checkpoint (``fulls``: its counts on all rows), the thresholds a resample could
    choose under ``point`` (first and last index, +inf being 0), with SLACK more on either
    side; ``spread``: each checkpoint's :func:`_spread` (points that differ only in the bound)."""
    windows = []
    for k, full in enumerate(fulls):
        at = np.flatnonzero(_possible(full, point, None if spread is None else spread[k]))
        m = full[0].shape[1] - 1
        windows.append((max(int(at.min()) - SLACK, 0), min(int(at.max()) + SLACK, m)) if at.size else (0, m))
    return windows


def plan(
    fulls: list[tuple],
    pos: np.ndarray,
    scores: list[np.ndarray],
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
    spread = None if points[0].is_cost else [_spread(full, points[0]) for full in fulls]  # the points differ in the bound only
    windows = [plan_windows(fulls, point, spread) for point in points]
    union = [(min(w[k][0] for w in windows), max(w[k][1] for w in windows)) for k in range(len(fulls))]
    inside = np.zeros(n, dtype=bool)
    for s, cand, (_, hi) in zip(scores, cands, union, strict=True):
        if hi > 0:  # flagged at a kept threshold: at or above the hi-th highest candidate
            inside |= s >= cand[cand.shape[0] - hi]
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
