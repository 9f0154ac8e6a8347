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
    the chosen ``tp`` is positive) or a specificity bound."""
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
        last, top = self._last_met(point, p, n, lo, hi)
        some = last >= 0
        # the first threshold with that many true positives (its block from the blocks' ends),
        # or lo: the ties of the best come first where the constraint is best (choose_columns)
        q = np.arange(self.r)
        c = np.minimum((self.ends_tp < top).sum(axis=0), self.nb - 1)
        in_block = self._tp_at(c[:, None] * self.b + np.arange(self.b), q[:, None])
        i = np.maximum(c * self.b + (in_block < top[:, None]).sum(axis=1), lo)
        i = np.where(some, i, -1)
        tp_i, fp_i = self.at(i)
        value = np.where(some, np.divide(tp_i, p, dtype=np.float64), np.nan)
        return value, i, raw_rate(point.constraint, tp_i, fp_i, p, n)  # type: ignore[arg-type]
