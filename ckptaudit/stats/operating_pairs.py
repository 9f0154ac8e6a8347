"""Each resample's chosen pair in the bootstrap of the operating point (:mod:`ckptaudit.stats.operating`).

Per batch of resamples and checkpoint: the in-bag curves (:func:`in_bag`, read off the
running sums of the rows where the choice reads by blocks), the choices of the stricter
bounds the safer threshold tries (:func:`stricter_step`, branch and bound over the
checkpoints, best first), and the chosen pairs' constraint on the out-of-bag rows
(:func:`out_of_bag`) and on all rows (:func:`on_all_rows`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..metrics.operating import OperatingPoint
from .operating_blocks import BlockCurves
from .operating_curves import at_counts as _at_counts
from .operating_curves import layout_for as _layout_for
from .operating_curves import running_sums as _running_sums
from .operating_curves import weighted as _weighted


def chosen(k_of: np.ndarray) -> np.ndarray:
    """The checkpoints some resample chose (``k_of``; -1: none), ascending."""
    # NOTE: not np.unique, which imports numpy.ma (10 ms of a command's start)
    return np.flatnonzero(np.bincount(k_of[k_of >= 0]))


def out_of_bag(
    oob: np.ndarray,
    cols: list,
    pairs: list[tuple[np.ndarray, np.ndarray]],
    p_oob: np.ndarray,
    n_oob: np.ndarray,
    point: OperatingPoint,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per set of pairs (each resample's checkpoint ``k_of`` and threshold index ``i_of``;
    -1: none, NaN): (value, constraint, its denominator) on the out-of-bag rows of the
    resample's pair. A checkpoint's out-of-bag curves are summed once, for the resamples that
    chose it in any set only: about one checkpoint's work per set."""
    out = []
    for k_of, _ in pairs:
        r = k_of.shape[0]
        out.append((np.full(r, np.nan), np.full(r, np.nan), np.full(r, np.nan)))
    picked = np.zeros(max((int(k_of.max(initial=-1)) + 1 for k_of, _ in pairs), default=0), dtype=bool)
    for k_of, _ in pairs:
        picked[chosen(k_of)] = True
    for k in np.flatnonzero(picked):
        col = cols[int(k)]
        union = np.flatnonzero(np.any([k_of == k for k_of, _ in pairs], axis=0))
        read = _reader(oob, col, union)
        for (k_of, i_of), (value, con, den) in zip(pairs, out, strict=True):
            q = np.flatnonzero(k_of == k)
            if q.size == 0:
                continue
            at, i = np.searchsorted(union, q), i_of[q]
            tp, fp = read(np.maximum(i, 0), at)
            counts = (tp[:, None].astype(np.float64), fp[:, None].astype(np.float64))
            v, c, d = _at_counts((*counts, p_oob[q, None], n_oob[q, None]), i, point)
            value[q] = v
            if c is not None and d is not None:
                con[q], den[q] = c, d
    return out


def _reader(oob: np.ndarray, col: Any, union: np.ndarray) -> Any:
    """``(j, at) -> (tp, fp)``: the out-of-bag counts of ``col`` at threshold ``j`` of
    resample ``union[at]`` (``oob``: 0/1 weights), read off the running sums, or off the
    curves of a dense column (:attr:`~ckptaudit.stats.operating_curves.Column.dense`)."""
    col = _layout_for(col, union.shape[0])
    if col.dense:
        tp, fp = _weighted(oob, col, q=union, top=oob.shape[0])
        return lambda j, at: (tp[j, at], fp[j, at])
    x, off = _running_sums(oob, col, q=union, top=oob.shape[0])
    return lambda j, at: (x[col.ends[0, j], at], x[col.ends[1, j], at] - off[at])


def in_bag(curves: Any, counts: np.ndarray, col: Any, q: np.ndarray | None, top: int | None, above: Any = None) -> Any:
    """The curves of ``col`` under the weights ``counts`` (resamples ``q``; None: all), as a
    function of a subset of them (None: all; a slice: a view) to their ``curves``: block
    curves are read off the running sums of the rows (no curve laid out at every threshold),
    but a dense column's are summed threshold by threshold. ``above``: the column's above
    rows' sums under every column of ``counts``, where the caller has them
    (:class:`~ckptaudit.stats.operating_above.AboveProduct`)."""
    col = _layout_for(col, counts.shape[1] if q is None else q.shape[0])
    if curves is BlockCurves and not col.dense:
        x, off = _running_sums(counts, col, q, top, above)
        return lambda sub: BlockCurves.from_sums(*((x, off) if sub is None else (x[:, sub], off[sub])), col)
    tp, fp = _weighted(counts, col, q=q, top=top, above=above)
    return lambda sub: curves(*((tp, fp) if sub is None else (tp[:, sub], fp[:, sub])), col)


def on_all_rows(fulls: list, cols: list, k_of: np.ndarray, i_of: np.ndarray, point: OperatingPoint) -> np.ndarray:
    """The constraint on all rows at each resample's chosen pair (checkpoint ``k_of``,
    threshold index ``i_of`` among its column's; -1: none, NaN); NaN throughout for a cost."""
    con = np.full(k_of.shape[0], np.nan)
    if point.is_cost:
        return con
    for k in chosen(k_of):
        q = np.flatnonzero(k_of == k)
        tp_f, fp_f, p_f, n_f = fulls[int(k)]
        at = cols[int(k)].lo + i_of[q]
        con[q] = _at_counts((tp_f[0, at][:, None], fp_f[0, at][:, None], p_f, n_f), i_of[q], point)[1]
    return con


def beats(v: np.ndarray, best: np.ndarray, k: int, best_k: np.ndarray) -> np.ndarray:
    """Per draw, whether checkpoint ``k``'s value ``v`` takes the place of the best so far
    (``best`` of checkpoint ``best_k``): larger, or equal from a lower checkpoint (the tie
    rule of a choice made over the checkpoints in order, whatever order they are visited in)."""
    return (v > best) | ((v == best) & (k < best_k))


def could_win(s_best: list, k: int, limits: list[np.ndarray]) -> bool:
    """Whether checkpoint ``k`` could beat, or tie, some bound's best in some draw (see
    :func:`stricter_step`)."""
    return any(bool(np.any(beats(v, bv, k, bk))) for v, (bv, bk, _) in zip(limits, s_best, strict=True))


def stricter_step(
    s_best: list,
    k: int,
    limits: list[np.ndarray],
    counts: np.ndarray,
    top: int | None,
    col: Any,
    curves: Any,
    stricter: list,
    cuts: list,
    p: np.ndarray,
    n: np.ndarray,
    shared: Any = None,
    above: Any = None,
) -> None:
    """Offer checkpoint ``k``'s choices at every stricter bound to each of the first draws'
    best so far (``s_best``: per bound (value, checkpoint, index among ``col``'s thresholds),
    updated in place; ties go to the lower checkpoint). ``limits``: per bound, an upper bound
    of its value in each draw (the point's own value: fewer thresholds meet a stricter bound
    on the same curve; for a block-read choice the blocks' bound too,
    :meth:`~ckptaudit.stats.operating_blocks.BlockCurves.upper`), so only the draws where it
    could still beat, or tie, the bound's best are chosen for (branch and bound: the exact
    choices at a few checkpoints' cost instead of every one's; the columns come best first).
    ``col``: the checkpoint's column over every bound's window (``cuts``, a slice each).
    ``shared``: the point's own curves (:func:`in_bag`) where they are ``col``'s (the full
    bootstrap): the bounds with a draw open choose on all the first draws (the others cannot
    change), from them, instead of summing the open draws' curves again. ``above``: as
    :func:`in_bag`'s, for ``col``."""
    opens = [beats(v, bv, k, bk) for v, (bv, bk, _) in zip(limits, s_best, strict=True)]  # per bound
    q = np.flatnonzero(np.any(opens, axis=0))
    if q.size == 0:
        return
    if shared is not None:
        early = limits[0].shape[0]
        q = np.arange(early)
        sums, head = shared, shared(slice(0, early))
    else:
        sums = in_bag(curves, counts, col, q, top, above)
        head = sums(None)
    for m, strict in enumerate(stricter):
        sub = np.flatnonzero(opens[m][q])  # the bound's open draws, among q
        if sub.size == 0:
            continue
        cut = cuts[m]
        lo, hi = cut.start or 0, col.thresholds.shape[0] if cut.stop is None else cut.stop
        part = head if shared is not None or sub.size == q.size else sums(sub)
        at = q if shared is not None else q[sub]
        vs, js, _ = part.choose(strict, p[at], n[at], lo, hi)
        bv, bk, bj = s_best[m]
        up = np.isfinite(vs) & beats(vs, bv[at], k, bk[at])
        at = at[up]
        bv[at], bk[at], bj[at] = vs[up], k, js[up]
