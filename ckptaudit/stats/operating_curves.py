"""One checkpoint's operating-point curve under resampled row weights (issue 20).

Each checkpoint's column is sorted once into candidate thresholds (:class:`Column`); a
resample is a weight vector over the rows, so its curve is one cumulative sum of the rows'
weights in that order (no sort per resample). A batch of resamples' curves is laid out one
column per resample, ``(thresholds, resamples)``: the rows' weights are gathered so and
summed up whole rows at a time (:func:`cumulative`), and each
choice reduces along the thresholds for every resample at once (:func:`choose_columns`, the
kernel's conventions: ties, "nothing meets the constraint"). :func:`choose` is the same
choice one row per resample (the counts on all rows, and the reference the tests hold
:func:`choose_columns` to); :func:`at_counts` reads a resample's rates at a given candidate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..metrics.operating import OperatingPoint
from .operating_sums import running, segment_sums

#: rows x resamples per kept threshold from which a column's curves are summed threshold by
#: threshold (:attr:`Column.dense`, :func:`~ckptaudit.stats.operating_sums.segment_sums`): a
#: threshold's slabs cost a few calls (~6 us), a row's running sums about 1 ns per resample
#: (the crossover measured near 4 rows per threshold at 1,000 resamples)
SEGMENT_CELLS = 5000
#: the resamples a column is made for (the bootstrap's batch): dense where they would pay
DENSE_RESAMPLES = 1000
#: per resample, the sums of the rows above every threshold a column keeps: (positives, negatives)
Above = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Column:
    """One checkpoint's candidate thresholds and each weighted row's place among them.

    Only the distinct scores that some positive row has are candidates (with +inf, "flag
    nothing"): for a given number of true positives, the threshold at the lowest flagged
    positive has the fewest false positives, so every optimum of every operating point (and
    the kernel's tie rule) lies there; the kernel's value and threshold are unchanged
    (tests/test_operating_point_stats.py) and a resample's curve has as many points as
    positives, not rows."""

    thresholds: np.ndarray  #: +inf, then the candidate scores, descending (from ``lo`` on)
    #: the rows a threshold kept flags first (not one above them), in the running sums' order
    #: (:func:`~ckptaudit.stats.operating_sums.running`): a leading place for "none", then
    #: positives, then negatives, each by the first threshold that flags them, laid out (step,
    #: group): place ``g * steps + k`` at ``[k, g]``; the places before the first and after the
    #: last hold row 0, summed as 0
    rows: np.ndarray
    size: int  #: how many places ``rows`` fills (the leading one included)
    #: (2, padded): per threshold kept, the place of the last of the rows it flags, as an
    #: index into the running sums (step-major: ``k * groups + g``; the negatives' from the
    #: first negative on); padded to whole blocks by repeating the last
    ends: np.ndarray
    above: tuple[np.ndarray, np.ndarray]  #: the rows every threshold kept flags: positives, negatives
    block: int  #: thresholds per block (:class:`~ckptaudit.stats.operating_blocks.BlockCurves`)
    lo: int = 0  #: the index of ``thresholds[0]`` among all of the column's thresholds
    #: many rows per threshold (:func:`_segments_pay`): ``rows`` in place order (no leading place,
    #: not laid out) and ``ends`` the count of rows up to each threshold's last; the curves are
    #: summed threshold by threshold (:func:`~ckptaudit.stats.operating_sums.segment_sums`), not
    #: as running sums per row
    dense: bool = False


def place(s: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(candidates ascending, each row's place): a row is flagged from the first (descending)
    candidate at or below its score, threshold index ``place + 1`` (+inf being 0); rows below
    every candidate have the last place."""
    cand = np.unique(s[pos])
    return cand, places(cand, s)


def places(cand: np.ndarray, s: np.ndarray) -> np.ndarray:
    """:func:`place`'s places of the rows scored ``s`` among the candidates ``cand``."""
    # NOTE: sorted keys walk the candidates in order; with the argsort and the scatter back
    # this is 2.5x faster than searching the rows as they come (11,000 rows among 5,000
    # candidates: 0.30 against 0.84 ms), and every row gets the same place
    order, placed = sorted_places(cand, s)
    at = np.empty(s.shape[0], np.intp)
    at[order] = placed
    return at


def sorted_places(cand: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(an order of the rows by place, their places in that order: non-decreasing), from
    one sort of the scores (:func:`places`)."""
    order = np.argsort(s)[::-1]  # highest score first: the first place
    return order, cand.shape[0] - np.searchsorted(cand, s[order], "right")


def full_counts(cand: np.ndarray, seg: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, ...]:
    """(tp, fp, P, N) on all rows, one row of counts per threshold (+inf first), from every
    row's place (the reference of :func:`sorted_counts` and :func:`curve_counts`)."""
    m = cand.shape[0]
    tp = np.r_[0.0, np.cumsum(np.bincount(seg[pos], minlength=m + 1)[:m])][None].astype(np.float64)
    fl = np.r_[0.0, np.cumsum(np.bincount(seg, minlength=m + 1)[:m])][None].astype(np.float64)
    p = float(np.count_nonzero(pos))
    return tp, fl - tp, np.array([[p]]), np.array([[pos.shape[0] - p]])


def sorted_counts(s: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """(candidates ascending, :func:`full_counts`) from a sort of the scores instead of every
    row's place among the candidates (the same whole counts; a sort of 10^5 scores is about
    3x faster than placing them)."""
    ps = np.sort(s[pos])
    cand = np.unique(ps)
    ns = np.sort(s[~pos])
    desc = cand[::-1]
    tp = np.r_[0.0, ps.shape[0] - np.searchsorted(ps, desc, "left")][None].astype(np.float64)
    fp = np.r_[0.0, ns.shape[0] - np.searchsorted(ns, desc, "left")][None].astype(np.float64)
    return cand, (tp, fp, np.array([[float(ps.shape[0])]]), np.array([[float(ns.shape[0])]]))


def curve_counts(c: Any, dtype: Any) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """(candidates ascending in the scores' ``dtype``, :func:`full_counts`) from the kernel's
    :class:`~ckptaudit.metrics.operating.Curve` of the same column (every distinct score's
    counts, sorted once by the pass): the candidates are the scores where ``tp`` grows."""
    at = np.flatnonzero(np.diff(c.tp) > 0) + 1 if c.grows is None else c.grows
    cand = c.thresholds[at][::-1].astype(dtype)  # exact: the thresholds are the scores, widened
    tp = np.r_[0.0, c.tp[at]][None].astype(np.float64)
    fp = np.r_[0.0, c.fp[at]][None].astype(np.float64)
    return cand, (tp, fp, np.array([[float(c.n_pos)]]), np.array([[float(c.n_neg)]]))


def make_column(
    cand: np.ndarray,
    seg: np.ndarray,
    pos: np.ndarray,
    window: tuple[int, int] | None = None,
    ids: np.ndarray | None = None,
    dense: bool | None = None,
) -> Column:
    """The column of one checkpoint: its candidates ``cand`` and the weighted rows' places
    ``seg`` (:func:`places`) and targets ``pos``. ``window`` (lo, hi): only thresholds lo..hi
    (indices among all, +inf being 0) are kept: the rows above ``lo`` are summed as one, those
    below ``hi`` left out (the large-sample path, :mod:`ckptaudit.stats.operating_draws`).
    ``ids``: the weighted rows' indices of ``seg``'s rows, where ``seg`` holds some of them
    only (those the window could flag: the rows left out stay out). ``dense``: the layout
    (:attr:`Column.dense`; None: by the rows per threshold)."""
    m = cand.shape[0]
    lo, hi = (0, m) if window is None else (max(0, window[0]), min(window[1], m))
    size = hi - lo + 1
    block = max(2, min(math.isqrt(size), 12))
    padded = -(-size // block) * block
    # the row's place in the window: 0 when a threshold above the window flags it
    at = np.maximum(seg + 1 - lo, 0)
    kept = (at >= 1) & (at < size)
    rows, ends = [], np.empty((2, padded), np.intp)
    first = 0
    for h, side in enumerate((pos, ~pos)):
        sel = np.flatnonzero(kept & side)
        sel = sel[np.argsort(at[sel], kind="stable")]
        ends[h, :size] = first + np.searchsorted(at[sel], np.arange(size), "right")
        ends[h, size:] = ends[h, size - 1]
        rows.append(sel)
        first += sel.shape[0]
    above = (np.flatnonzero((at == 0) & pos), np.flatnonzero((at == 0) & ~pos))
    # threshold i >= 1 is cand[m - i], 0 is +inf
    thresholds = np.full(size, np.inf)
    thresholds[lo == 0 :] = cand[m - np.arange(max(lo, 1), hi + 1)]
    kept_rows = np.concatenate(rows)
    if ids is not None:
        kept_rows, above = ids[kept_rows], (ids[above[0]], ids[above[1]])
    col = Column(thresholds, kept_rows, kept_rows.shape[0] + 1, ends, above, block, lo, dense=True)
    return col if (_segments_pay(col, DENSE_RESAMPLES) if dense is None else dense) else laid_out(col)


def _segments_pay(col: Column, resamples: int) -> bool:
    """Whether a dense column's curves under ``resamples`` columns of weights are summed
    threshold by threshold (:func:`~ckptaudit.stats.operating_sums.segment_sums`) rather than
    as running sums of its rows."""
    return (col.size - 1) * resamples >= SEGMENT_CELLS * col.thresholds.shape[0]


def laid_out(col: Column) -> Column:
    """A dense column (:attr:`Column.dense`) laid out for the running sums (:func:`running_sums`;
    the same thresholds and rows)."""
    if not col.dense:
        return col
    places_n = col.size
    steps = max(2, math.isqrt(places_n))
    groups = -(-places_n // steps)
    laid = np.zeros(steps * groups, np.intp)  # the padding places read row 0 and are zeroed
    laid[1:places_n] = col.rows
    ends = (col.ends % steps) * groups + col.ends // steps  # a place g * steps + k at [k, g]
    return replace(col, rows=laid.reshape(groups, steps).T.copy(), ends=ends, dense=False)


def layout_for(col: Column, resamples: int) -> Column:
    """``col`` as its curves under ``resamples`` columns of weights are best summed: a dense
    column stays dense where summing threshold by threshold pays (:func:`_segments_pay`),
    else it is laid out for the running sums."""
    return col if not col.dense or _segments_pay(col, resamples) else laid_out(col)


def cumulative(wt: np.ndarray, col: Column, padded: bool = True) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """((tp, fp), (out-of-bag tp, fp)): each threshold's weighted true and false positives
    (thresholds, resamples), then those of the rows each resample leaves out (weight 0), from
    one gather of the column's rows; ``wt``: the rows' weights, one column per resample;
    ``padded``: to the column's whole blocks (the last threshold repeated). Whole counts: every
    order of the additions gives the same sums (in :func:`accumulator`'s type), so the rows
    are gathered in threshold order and summed up whole rows at a time, block by block."""
    col = layout_for(col, wt.shape[1])
    g = np.take(wt, col.rows, axis=0)
    above = (wt[col.above[0]], wt[col.above[1]])
    acc = accumulator(wt)
    size = col.ends.shape[1] if padded else col.thresholds.shape[0]
    sums = tuple(a.sum(axis=0, dtype=acc) for a in above)
    out = tuple((a == 0).sum(axis=0, dtype=acc) for a in above)
    return _sums(g, sums, acc, col, size), _sums(g == 0, out, acc, col, size)


def weighted(
    wt: np.ndarray,
    col: Column,
    padded: bool = True,
    q: np.ndarray | None = None,
    top: int | None = None,
    above: Above | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`cumulative`'s (tp, fp) alone: where the out-of-bag curves are read at one
    threshold per resample, they come from the out-of-bag indicator's own (fewer) columns;
    ``q``: those resamples (columns of ``wt``) only; ``top``: the largest column sum of
    ``wt``, when known (:func:`accumulator`); ``above``: the sums of the rows above every
    threshold under every column of ``wt`` (positives, negatives; in the type
    :func:`accumulator` gives), when the caller has them (:mod:`~ckptaudit.stats.operating_above`)."""
    size = col.ends.shape[1] if padded else col.thresholds.shape[0]
    col = layout_for(col, wt.shape[1] if q is None else q.shape[0])
    return _sums(*_gathered(wt, col, q, top, above), col, size)


def running_sums(
    wt: np.ndarray, col: Column, q: np.ndarray | None = None, top: int | None = None, above: Above | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(x, off): the running sums of the column's rows under the weights ``wt`` (rows,
    resamples; ``q``, ``top``, ``above``: as :func:`weighted`'s), from which threshold ``j``'s ``tp`` is
    ``x[col.ends[0, j]]`` and its ``fp`` is ``x[col.ends[1, j]] - off`` (per resample), without
    laying either out at every threshold (``col`` laid out: :func:`laid_out`)."""
    if col.dense:
        raise ValueError("a dense column has no running sums per row: lay it out first (laid_out)")
    return _offsets(*_gathered(wt, col, q, top, above), col)


def _gathered(
    wt: np.ndarray, col: Column, q: np.ndarray | None, top: int | None, above: Above | None = None
) -> tuple[np.ndarray, Above, Any]:
    """(the column's rows of ``wt`` in ``col.rows``' layout, the sums of the rows above every
    threshold (positives, negatives; ``above`` where given), the type they are summed in),
    for resamples ``q`` (None: all)."""
    acc = accumulator(wt, top)
    if q is not None and q.size and q[-1] - q[0] + 1 == q.size:  # a run of resamples: a view of them
        wt, run, q = wt[:, q[0] : q[-1] + 1], slice(q[0], q[-1] + 1), None
    else:
        run = slice(None)
    g = np.take(wt, col.rows, axis=0)
    if above is None:
        rows = (wt[col.above[0]], wt[col.above[1]])
        if q is not None:
            rows = (rows[0][:, q], rows[1][:, q])
        above = (rows[0].sum(axis=0, dtype=acc), rows[1].sum(axis=0, dtype=acc))
    else:
        above = (above[0][run], above[1][run]) if q is None else (above[0][q], above[1][q])
    if q is not None:
        g = g[..., q]
    return g, above, acc


def _offsets(g: np.ndarray, above: Above, acc: Any, col: Column) -> tuple[np.ndarray, np.ndarray]:
    """:func:`running_sums` of the gathered rows ``g`` (``col.rows``' layout) and the sums of
    the rows above every threshold: the positives above lead the running sums (every tp
    includes them); the negatives' sums start after the positives' and add those above, one
    offset per resample (in uint16 it may wrap, and the sums wrap back: every fp is in range)."""
    x = running(g, acc, col.size, above[0])
    return x, x[col.ends[0, -1]] - above[1]


def _sums(g: np.ndarray, above: Above, acc: Any, col: Column, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(tp, fp) per threshold from the gathered rows ``g`` (``col.rows``' layout) and the sums
    of the rows above every threshold."""
    if col.dense:
        return segment_sums(g, above, acc, col, size)
    x, off = _offsets(g, above, acc, col)
    tp, fp = x[col.ends[0, :size]], x[col.ends[1, :size]]
    fp -= off
    return tp, fp


def accumulator(wt: np.ndarray, top: int | None = None) -> Any:
    """The type the weights ``wt`` (rows, resamples) are summed in: for one-byte weights,
    uint16 where ``top`` (the largest column sum, when the caller knows it) stays below 2^16
    (every partial sum and ``tp + fp`` stay below it too: half float32's bytes, and the
    running sums about 1.6x faster), else float32 where every sum stays below 2^24 (whole
    counts, exact); float64 for other weights."""
    if wt.dtype != np.uint8:
        return np.float64
    if top is not None and top < 2**16:
        return np.uint16
    return np.float32 if wt.shape[0] * 255 < 2**24 else np.float64


def totals(wt: np.ndarray, pos: np.ndarray, extra: tuple[Any, Any] = (0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """(P, N) per resample, shape (resamples,): the weighted rows' positives and negatives
    (``pos``: bool over them) plus ``extra``, those outside the weighted rows."""
    # NOTE: sums, not a product with the positives' indicator: a BLAS product starts threads
    # whose spinning costs more CPU time than the sums of one-byte weights (whole counts: exact)
    acc = accumulator(wt)
    p = wt[pos].sum(axis=0, dtype=acc).astype(np.float64)
    total = wt.sum(axis=0, dtype=acc).astype(np.float64)
    n = total - p
    return p + extra[0], n + extra[1]


def rate(name: str, tp, fp, p, n) -> np.ndarray:
    """One rate per resample and candidate (NaN where undefined), in float64 whatever the
    counts' type (``tp``, ``fp`` whole counts: float32 and integer ones widen exactly)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return raw_rate(name, tp, fp, p, n)


def raw_rate(name: str, tp, fp, p, n) -> np.ndarray:
    """:func:`rate` for a caller that already holds ``np.errstate(divide="ignore",
    invalid="ignore")`` (entering it costs more than a small rate)."""
    # NOTE: 0/0 is NaN, as undefined rates are: tp = 0 wherever P or tp + fp is 0, fp = 0 where N is
    if name == "recall":
        return np.divide(tp, p, dtype=np.float64)
    if name == "precision":
        return np.divide(tp, tp + fp, dtype=np.float64)
    return 1.0 - np.divide(fp, n, dtype=np.float64)


def rates(tp, fp, p, n) -> dict[str, np.ndarray]:
    """Every rate (:func:`rate`) by name."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return {name: raw_rate(name, tp, fp, p, n) for name in ("recall", "precision", "specificity")}


def choose(tp, fp, p, n, point: OperatingPoint, pair: tuple[np.ndarray, np.ndarray] | None = None):
    """Per resample (one row each): (value, chosen index), with the conventions of the kernel
    (NaN, -1: none); ``pair`` (target, constraint rates) when the caller already has them."""
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


def _first(mask: np.ndarray) -> np.ndarray:
    """Per column, the first row where ``mask`` holds (its row count where none does)."""
    rows = np.arange(mask.shape[0])[:, None]
    return np.where(mask, rows, mask.shape[0]).min(axis=0)


def choose_columns(
    tp: np.ndarray, fp: np.ndarray, p: np.ndarray, n: np.ndarray, point: OperatingPoint, con: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`choose` of the curves laid out one column per resample ((thresholds,
    resamples); ``p``, ``n``: (resamples,)): the same values and indices (float64 rates of
    the same whole counts, the same tie rule). ``con``: the constraint's rates, when the
    caller has them (shared by the stricter bounds).

    Every curve's ``tp`` and ``fp`` grow along the thresholds, so recall grows and
    specificity falls: a recall target's best lies at the last threshold that meets the
    constraint, and its ties (the same ``tp``) come first where the constraint is best;
    specificity under a recall constraint (met from its first threshold on) likewise. Those
    read the counts a few times instead of masking every rate (tests hold them to
    :func:`choose`)."""
    cols = np.arange(tp.shape[1])
    if point.is_cost:
        tp64, fp64 = tp.astype(np.float64, copy=False), fp.astype(np.float64, copy=False)
        cost = (point.fn_cost * (p - tp64) + point.fp_cost * fp64) / (p + n)  # type: ignore[operator]
        i = cost.argmin(axis=0)  # the first minimum (a NaN's index where the totals are 0, as choose)
        return cost[i, cols], i
    bound = point.bound - 1e-12  # type: ignore[operator]
    if con is None:
        con = rate(point.constraint, tp, fp, p, n)  # type: ignore[arg-type]
    ok = con >= bound  # NaN compares False
    if point.target == "recall":  # constraint: precision or specificity
        ok &= p > 0  # recall defined
        last = np.where(ok, np.arange(tp.shape[0])[:, None], -1).max(axis=0)
        some = last >= 0
        top = tp[np.maximum(last, 0), cols]
        i = (tp < top).sum(axis=0)  # the first threshold with that many true positives
        none_yet = some & (top == 0)
        if point.constraint == "precision" and none_yet.any():  # precision is undefined until something is flagged
            i[none_yet] = (tp[:, none_yet] + fp[:, none_yet] == 0).sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):  # (P = 0: no value, NaN below)
            value = np.divide(tp[np.where(some, i, 0), cols], p, dtype=np.float64)
        return np.where(some, value, np.nan), np.where(some, i, -1)
    if point.target == "specificity" and point.constraint == "recall":  # met from its first threshold on
        ok &= n > 0  # specificity defined
        first = tp.shape[0] - ok.sum(axis=0)
        some = first < tp.shape[0]
        j = np.where(some, first, 0)
        low = fp[j, cols]
        last = (fp <= low).sum(axis=0) - 1  # the last threshold with as few false positives
        i = np.maximum(first, (tp < tp[np.maximum(last, 0), cols]).sum(axis=0))
        with np.errstate(divide="ignore", invalid="ignore"):  # (N = 0: no value, NaN below)
            value = 1.0 - np.divide(fp[np.where(some, i, 0), cols], n, dtype=np.float64)
        return np.where(some, value, np.nan), np.where(some, i, -1)
    target = rate(point.target, tp, fp, p, n)
    ok &= np.isfinite(target)
    t = np.where(ok, target, -np.inf)
    best = t.max(axis=0)
    c = np.where(t == best, con, -np.inf)  # where nothing meets it, best is -inf and the index is -1 anyway
    i = _first(c == c.max(axis=0))
    some = best > -np.inf
    return np.where(some, target[np.where(some, i, 0), cols], np.nan), np.where(some, i, -1)


class FullCurves:
    """:class:`~ckptaudit.stats.operating_blocks.BlockCurves`' choice for every operating
    point: one checkpoint's curves under a batch of resample weights (:func:`cumulative`),
    every rate computed (:func:`choose_columns`)."""

    def __init__(self, tp: np.ndarray, fp: np.ndarray, col: Column) -> None:
        size = col.thresholds.shape[0]
        self.tp, self.fp = tp[:size], fp[:size]  # (:func:`cumulative`'s, padded or not)
        self.con: np.ndarray | None = None  # the constraint's rates (the same for every bound)

    def choose(self, point: OperatingPoint, p: np.ndarray, n: np.ndarray, lo: int = 0, hi: int | None = None) -> tuple:
        """(value, index among the thresholds kept, -1: none, the constraint there) on thresholds [lo, hi)."""
        hi = self.tp.shape[0] if hi is None else hi
        if self.con is None and not point.is_cost:
            self.con = rate(point.constraint, self.tp, self.fp, p, n)  # type: ignore[arg-type]
        con = None if point.is_cost else self.con[lo:hi]  # type: ignore[index]
        v, i = choose_columns(self.tp[lo:hi], self.fp[lo:hi], p, n, point, con)
        i = np.where(i >= 0, i + lo, i)
        return v, i, None if self.con is None else self.con[np.maximum(i, 0), np.arange(i.shape[0])]


def at_counts(sub: tuple, i: np.ndarray, point: OperatingPoint) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(value, constraint, the constraint's denominator count) of each resample's counts at
    its index: ``sub`` (tp, fp, P, N), each (resamples, 1) or broadcast to it; ``i`` only says
    where there is none (-1: NaN)."""
    tp, fp, p, n = sub
    if point.is_cost:
        value = ((point.fn_cost * (p - tp) + point.fp_cost * fp) / (p + n))[:, 0]  # type: ignore[operator]
        return np.where(i >= 0, value, np.nan), None, None
    r = rates(*sub)
    value = np.where(i >= 0, r[point.target][:, 0], np.nan)
    con = np.where(i >= 0, r[point.constraint][:, 0], np.nan)  # type: ignore[index]
    den = {"precision": tp + fp, "recall": p, "specificity": n}[point.constraint][:, 0]  # type: ignore[index]
    return value, con, den
