"""A batch of resamples' curves read by blocks of thresholds: the choice without every rate.

The bootstrap of the pair (:mod:`ckptaudit.stats.operating`) needs, per resample and
checkpoint, only the chosen threshold and the counts at a few thresholds; the choice of a
recall target needs the last threshold that meets the constraint. :class:`BlockCurves` keeps
a checkpoint's curves (:func:`~ckptaudit.stats.operating_curves.cumulative`) in whole blocks
of thresholds, and a block where the constraint cannot hold is ruled out from its end counts:
precision within a block is at most its last ``tp`` over that plus its first ``fp`` (``tp /
(tp + fp)`` grows with ``tp`` and falls with ``fp``, both of which grow along the
thresholds), specificity at most its first one (a correctly rounded division is monotone, so
the bounds hold for the computed rates too). Only the last blocks that could hold, and the
block where their ``tp`` first appears, have their rates computed; the values and indices are
those of :func:`~ckptaudit.stats.operating_curves.choose_columns`
(tests/test_operating_point_stats.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..metrics.operating import OperatingPoint
from .operating_curves import Column, raw_rate

#: thresholds summed at once where the last one that meets the constraint is looked for
SCAN = 36


def serves(point: OperatingPoint) -> bool:
    """Whether :meth:`BlockCurves.choose` serves ``point``: a recall target under a precision
    bound above 0 (precision undefined before anything is flagged meets no bound above 0, so
    the chosen ``tp`` is positive) or a specificity bound; a specificity target under a
    recall bound (met from its first threshold on: the choice is read off the blocks' ends);
    a precision target under a recall or specificity bound (the blocks read best bound first).
    Not served: a specificity target under a precision bound, a cost."""
    if point.target in ("specificity", "precision"):
        return point.constraint in ("recall", "specificity") and point.constraint != point.target
    if point.target != "recall":
        return False
    return point.constraint == "specificity" or point.bound > 1e-12  # type: ignore[operator]


class BlockCurves:
    """One checkpoint's curves under a batch of resample weights (see the module docstring):
    from the curves themselves, or read off the running sums of the rows (:meth:`from_sums`,
    no curve laid out at every threshold: only the blocks' ends and the blocks read)."""

    def __init__(self, tp: np.ndarray, fp: np.ndarray, col: Column) -> None:
        """``tp``, ``fp``: :func:`~ckptaudit.stats.operating_curves.cumulative`'s curves (whole blocks, resamples)."""
        every = np.arange(tp.shape[0])
        self._set(tp, fp, every, every, None, col)

    @classmethod
    def from_sums(cls, x: np.ndarray, off: np.ndarray, col: Column) -> BlockCurves:
        """The curves of :func:`~ckptaudit.stats.operating_curves.running_sums` (``tp`` at
        threshold ``j`` is ``x[col.ends[0, j]]``, ``fp`` is ``x[col.ends[1, j]] - off``)."""
        self = cls.__new__(cls)
        self._set(x, x, col.ends[0], col.ends[1], off, col)
        return self

    def _set(self, x_tp: np.ndarray, x_fp: np.ndarray, e0: np.ndarray, e1: np.ndarray, off: Any, col: Column) -> None:
        self.b, self.r = col.block, x_tp.shape[1]
        self.size = col.thresholds.shape[0]
        self.nb = e0.shape[0] // self.b  # whole blocks (the last padded by repeating the last threshold)
        self.dtype = x_tp.dtype
        self._x_tp, self._x_fp, self._e0, self._e1, self._off = x_tp, x_fp, e0, e1, off
        starts = np.arange(self.nb) * self.b
        # each block's last tp and first fp, every resample (nb, r): the blocks' bounds
        self.ends_tp, self.starts_fp = self.tp_rows(starts + self.b - 1), self.fp_rows(starts)
        self._precision: np.ndarray | None = None  # each block's best precision (the same for every bound)

    def tp_rows(self, j: np.ndarray) -> np.ndarray:
        """``tp`` at thresholds ``j``, every resample (len(j), resamples)."""
        return self._x_tp[self._e0[j]]

    def fp_rows(self, j: np.ndarray) -> np.ndarray:
        """``fp`` at thresholds ``j``, every resample (len(j), resamples)."""
        rows = self._x_fp[self._e1[j]]
        if self._off is not None:
            rows -= self._off  # (whole counts: in uint16 a wrap below 0 wraps back)
        return rows

    def _tp_at(self, j: np.ndarray, q: np.ndarray) -> np.ndarray:
        return self._read(self._x_tp, self._e0[j], q)

    def _fp_at(self, j: np.ndarray, q: np.ndarray) -> np.ndarray:
        got = self._read(self._x_fp, self._e1[j], q)
        if self._off is not None:
            got -= self._off[q]
        return got

    @staticmethod
    def _read(x: np.ndarray, rows: np.ndarray, q: np.ndarray) -> np.ndarray:
        """``x[rows, q]`` (broadcast): by a flat index where ``x`` is contiguous (a quarter faster)."""
        if x.flags.c_contiguous:
            return np.take(x.reshape(-1), rows * x.shape[1] + q)
        return x[rows, q]

    def at(self, i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(tp, fp) of every resample at threshold ``i`` (-1 reads threshold 0), each (resamples,)."""
        j, q = np.maximum(i, 0), np.arange(self.r)
        return self._tp_at(j, q), self._fp_at(j, q)

    def _most(self, constraint: str, n: np.ndarray) -> np.ndarray:
        """Each block's best constraint, every resample (blocks, resamples): at most its last
        ``tp`` over that plus its first ``fp`` for precision, its first for specificity."""
        if constraint != "precision":
            return 1.0 - np.divide(self.starts_fp, n, dtype=np.float64)
        if self._precision is None:  # every positive of the block, none of its negatives
            last_tp = self.ends_tp
            self._precision = np.divide(last_tp, last_tp + self.starts_fp, dtype=np.float64)  # NaN (0/0): possible
        return self._precision

    def upper(self, points: list[OperatingPoint], p: np.ndarray, n: np.ndarray, early: int) -> np.ndarray:
        """Per point (the same constraint, other bounds), an upper bound of the value
        :meth:`choose` finds in each of the first ``early`` resamples (points, early), on these
        thresholds or any above them (a higher threshold has fewer true positives): the ``tp``
        at the end of the last block that could meet the bound, or at the first threshold,
        over ``p``."""
        with np.errstate(divide="ignore", invalid="ignore"):
            most = self._most(points[0].constraint, n)[:, :early]  # type: ignore[arg-type]
            bounds = np.array([float(q.bound) - 1e-12 for q in points])[:, None, None]  # type: ignore[arg-type]
            could = ~(most[None] < bounds)  # (points, blocks, early); NaN: could
            last = self.nb - 1 - could[:, ::-1].argmax(axis=1)
            q = np.arange(early)
            first = self._tp_at(np.zeros(early, np.intp), q)
            top = np.where(could.any(axis=1), np.maximum(self.ends_tp[last, q], first), first)
            return np.divide(top, p[:early], dtype=np.float64)

    def _last_met(self, point: OperatingPoint, p: np.ndarray, n: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """Per resample, the last threshold in [lo, hi) that meets the constraint (-1: none) and its ``tp``."""
        bound = point.bound - 1e-12  # type: ignore[operator]  # as choose's
        nb = self.nb
        possible = ~(self._most(point.constraint, n) < bound)  # type: ignore[arg-type]  # NaN: possible
        ranged = lo > 0 or hi < self.size  # else every block is in range (most calls)
        if ranged:
            starts = np.arange(nb) * self.b
            possible &= ((starts < hi) & (starts + self.b > lo))[:, None]
        defined = (p > 0) & (n > 0) if point.constraint == "specificity" else p > 0
        if not defined.all():
            possible &= defined[None, :]
        last = np.full(self.r, -1)
        top = np.zeros(self.r, self.dtype)
        # blocks read at once: the last that could hold and those before it (those after it
        # cannot hold, so reading them too changes nothing)
        span = min(max(1, SCAN // self.b), nb)
        ahead = np.arange(span)[:, None]
        offsets = np.arange(span * self.b)
        pending = np.asarray(possible.any(axis=0))
        end = nb - possible[::-1].argmax(axis=0)  # one past the last block that could hold (where one could)
        while pending.any():  # none met in them: the next block before them that could hold
            q = np.flatnonzero(pending)
            c = np.minimum(np.maximum(end[q] - span, 0), nb - span) + ahead  # (span, len(q))
            j = c[0][:, None] * self.b + offsets  # (len(q), span x block): the blocks' thresholds
            tp, fp = self._tp_at(j, q[:, None]), self._fp_at(j, q[:, None])
            ok = raw_rate(point.constraint, tp, fp, p[q, None], n[q, None]) >= bound  # type: ignore[arg-type]
            if ranged:
                ok &= (j >= lo) & (j < hi)
            else:  # the padding repeats the last threshold: met there is met at the last
                j = np.minimum(j, self.size - 1)
            found = ok.any(axis=1)
            k = ok.shape[1] - 1 - np.argmax(ok[:, ::-1], axis=1)
            hit = q[found]
            last[hit] = j[found, k[found]]
            top[hit] = tp[found, k[found]]
            miss = ~found
            possible[c[:, miss], q[miss]] = False
            pending[hit] = False
            left = possible[:, q[miss]]
            pending[q[miss]] = left.any(axis=0)
            end[q[miss]] = nb - left[::-1].argmax(axis=0)
        return last, top

    def choose(
        self, point: OperatingPoint, p: np.ndarray, n: np.ndarray, lo: int = 0, hi: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, Any]:
        """:func:`~ckptaudit.stats.operating_curves.choose_columns` on thresholds [lo, hi) for a
        point :func:`serves`: (value, index among all the column's thresholds kept, -1: none,
        the constraint there)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return self._choose(point, p, n, lo, self.size if hi is None else hi)

    def _choose(
        self, point: OperatingPoint, p: np.ndarray, n: np.ndarray, lo: int, hi: int
    ) -> tuple[np.ndarray, np.ndarray, Any]:
        if point.target == "specificity":
            return self._fewest_alarms(point, p, n, lo, hi)
        if point.target == "precision":
            return self._best_precision(point, p, n, lo, hi)
        last, top = self._last_met(point, p, n, lo, hi)
        some = last >= 0
        # the first threshold with that many true positives, or lo: the ties of the best come
        # first where the constraint is best (choose_columns)
        i = np.where(some, np.maximum(self._first_tp_where(lambda tp: tp >= top), lo), -1)
        tp_i, fp_i = self.at(i)
        value = np.where(some, np.divide(tp_i, p, dtype=np.float64), np.nan)
        return value, i, raw_rate(point.constraint, tp_i, fp_i, p, n)  # type: ignore[arg-type]

    def _first_tp_where(self, meets: Any) -> np.ndarray:
        """Per resample, the first threshold whose ``tp`` ``meets`` (a test of ``tp`` rows
        (k, resamples) that, once met along the thresholds, stays met: ``tp`` grows): the first
        block whose last threshold meets it, then the first in it; none: past the last block."""
        c = np.minimum(self.nb - meets(self.ends_tp).sum(axis=0), self.nb - 1)
        in_block = self._tp_at(c * self.b + np.arange(self.b)[:, None], np.arange(self.r))  # (block, resamples)
        return c * self.b + self.b - meets(in_block).sum(axis=0)

    def _first_recall(self, bound: float, p: np.ndarray) -> np.ndarray:
        """Per resample, the first threshold whose recall meets ``bound`` (NaN, P = 0: none)."""
        return self._first_tp_where(lambda tp: raw_rate("recall", tp, None, p, None) >= bound)

    def _last_specific(self, bound: float, n: np.ndarray) -> np.ndarray:
        """Per resample, the last threshold whose specificity meets ``bound`` (it falls along
        the thresholds: the last block whose first threshold meets it, then the last in it;
        -1: none)."""
        met_start = raw_rate("specificity", None, self.starts_fp, None, n) >= bound  # NaN (N = 0): never
        c = np.maximum(met_start.sum(axis=0) - 1, 0)
        j = c[:, None] * self.b + np.arange(self.b)
        in_block = raw_rate("specificity", None, self._fp_at(j, np.arange(self.r)[:, None]), None, n[:, None]) >= bound
        return np.where(met_start[0], c * self.b + in_block.sum(axis=1) - 1, -1)

    def _best_precision(
        self, point: OperatingPoint, p: np.ndarray, n: np.ndarray, lo: int, hi: int
    ) -> tuple[np.ndarray, np.ndarray, Any]:
        """A precision target under a recall or specificity bound (choose_columns' rule: the
        most precision among the thresholds in [lo, hi) that meet the bound, then the best
        constraint, then the first): the thresholds that meet the bound are a run (from the
        first that meets a recall bound on; up to the last that meets a specificity bound), and
        its blocks are read best bound first, while a block's bound on precision (its last
        ``tp`` over that plus its first ``fp``) could still reach the best read so far."""
        bound = point.bound - 1e-12  # type: ignore[operator]  # as choose's
        nb, b = self.nb, self.b
        end = min(hi, self.size) - 1  # the last threshold read (the padding repeats it)
        if point.constraint == "recall":
            first, last = np.maximum(self._first_recall(bound, p), lo), np.full(self.r, end)
        else:
            first, last = np.full(self.r, lo), np.minimum(self._last_specific(bound, n), end)
        best_t = np.full(self.r, -np.inf)
        best_c = np.full(self.r, -np.inf)
        best_i = np.full(self.r, -1)
        starts = np.arange(nb)[:, None] * b
        # the blocks the run reaches, by their bound (NaN, 0/0: could be anything)
        most = np.where((starts + b > first) & (starts <= last), np.nan_to_num(self._most("precision", n), nan=np.inf), -np.inf)
        pending = np.flatnonzero(most.max(axis=0) > -np.inf)
        while pending.size:  # each pending resample reads its block of the highest bound
            c = most[:, pending].argmax(axis=0)
            j = c[:, None] * b + np.arange(b)
            tp, fp = self._tp_at(j, pending[:, None]), self._fp_at(j, pending[:, None])
            t = raw_rate("precision", tp, fp, None, None)
            con = raw_rate(point.constraint, tp, fp, p[pending, None], n[pending, None])  # type: ignore[arg-type]
            ok = (j >= first[pending, None]) & (j <= last[pending, None]) & np.isfinite(t) & (con >= bound)
            t = np.where(ok, t, -np.inf)
            top = t.max(axis=1)
            con = np.where(ok & (t == top[:, None]), con, -np.inf)
            k = (con == con.max(axis=1)[:, None]).argmax(axis=1)  # the block's best, first of its ties
            row = np.arange(pending.size)
            t_k, c_k, i_k = t[row, k], con[row, k], j[row, k]
            bt, bc, bi = best_t[pending], best_c[pending], best_i[pending]
            better = (t_k > bt) | ((t_k == bt) & ((c_k > bc) | ((c_k == bc) & (i_k < bi)))) & (t_k > -np.inf)
            at = pending[better]
            best_t[at], best_c[at], best_i[at] = t_k[better], c_k[better], i_k[better]
            most[c, pending] = -np.inf
            # a block whose bound is below the best cannot hold it (nor a tie)
            left = most[:, pending]
            pending = pending[((left > -np.inf) & (left >= best_t[pending])).any(axis=0)]
        some = best_i >= 0
        tp_i, fp_i = self.at(best_i)
        value = np.where(some, best_t, np.nan)
        return value, best_i, raw_rate(point.constraint, tp_i, fp_i, p, n)  # type: ignore[arg-type]

    def _fewest_alarms(
        self, point: OperatingPoint, p: np.ndarray, n: np.ndarray, lo: int, hi: int
    ) -> tuple[np.ndarray, np.ndarray, Any]:
        """A specificity target under a recall bound (choose_columns' rule): the first
        threshold in [lo, hi) that meets the bound (recall grows along the thresholds), then
        of its ties (as few false positives) the first with the most true positives."""
        q, ahead = np.arange(self.r), np.arange(self.b)
        first = np.maximum(self._first_recall(point.bound - 1e-12, p), lo)  # type: ignore[operator]  # as choose's
        some = (first < min(hi, self.size)) & (n > 0)  # (met nowhere: first is past the last block)
        first = np.where(some, first, 0)
        low = self._fp_at(first, q)
        # the last threshold with as few false positives (fp grows: the last block starting at or
        # below them, then within it), and the first with as many true positives as it has
        c = np.maximum((self.starts_fp <= low).sum(axis=0) - 1, 0)
        within = (self._fp_at(c[:, None] * self.b + ahead, q[:, None]) <= low[:, None]).sum(axis=1)
        last = np.minimum(c * self.b + within - 1, min(hi, self.size) - 1)
        tp_last = self._tp_at(last, q)
        i = np.where(some, np.maximum(first, self._first_tp_where(lambda tp: tp >= tp_last)), -1)
        tp_i, fp_i = self.at(i)
        value = np.where(some, 1.0 - np.divide(fp_i, n, dtype=np.float64), np.nan)
        return value, i, raw_rate("recall", tp_i, fp_i, p, n)
