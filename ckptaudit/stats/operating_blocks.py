"""A batch of resamples' curves read through block sums: the chosen threshold without every rate.

The bootstrap of the pair (:mod:`ckptaudit.stats.operating`) needs, per resample and
checkpoint, only the chosen threshold and the counts at a few thresholds; the choice of a
recall target needs the last threshold that meets the constraint. :class:`BlockCurves` keeps
a checkpoint's segment sums (:class:`~ckptaudit.stats.operating_curves.Column`'s product,
whole blocks of thresholds) and each block's count before it, so a count at any threshold is
one block's short cumulative sum, and a block where the constraint cannot hold is ruled out
from its end counts: precision within a block is at most (its last ``tp``) / (its first
``tp + fp``), specificity at most its first one (the counts grow along the thresholds, and
a correctly rounded division is monotone, so the bound holds for the computed rates too).
Only the last block that could hold, and the block where its ``tp`` first appears, are
summed in full; the values and indices are those of
:func:`~ckptaudit.stats.operating_curves.choose_columns` (tests/test_operating_point_stats.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..metrics.operating import OperatingPoint
from .operating_curves import Column, rate

#: thresholds summed at once where the last one that meets the constraint is looked for
SCAN = 64


def serves(point: OperatingPoint) -> bool:
    """Whether :meth:`BlockCurves.choose` serves ``point``: a recall target under a precision
    bound above 0 (precision undefined before anything is flagged meets no bound above 0, so
    the chosen ``tp`` is positive) or a specificity bound."""
    if point.target != "recall":
        return False
    return point.constraint == "specificity" or point.bound > 1e-12  # type: ignore[operator]


class BlockCurves:
    """One checkpoint's curves under a batch of resample weights (see the module docstring)."""

    def __init__(self, wt: np.ndarray, col: Column) -> None:
        sums = col.segments @ wt  # (2 x padded, resamples): positives' half, negatives' half
        self.b, self.r = col.block, sums.shape[1]
        self.size = col.thresholds.shape[0]
        self.sums = sums.reshape(2, -1, self.b, self.r)  # (half, block, row in block, resample)
        # NOTE: whole counts (exact in float32 below 2^24, in any order), read as int32 from
        # here on: a cumulative sum of integers is about 4x faster than of floats
        blocks = self.sums.sum(axis=2).astype(np.int32)
        self.ends = np.cumsum(blocks, axis=1, dtype=np.int32)  # each block's counts at its last threshold
        self.before = self.ends - blocks  # ... and before its first

    def block(self, c: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(tp, fp) at every threshold of block ``c[k]`` in resample ``q[k]``, each (len(q), block)."""
        x = np.cumsum(self.sums[:, c, :, q].astype(np.int32), axis=2, dtype=np.int32)  # (len(q), half, row in block)
        x += self.before[:, c, q].T[:, :, None]
        return x[:, 0], x[:, 1]

    def blocks(self, c: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(tp, fp) at every threshold of the consecutive blocks ``c[:, k]`` in resample ``q[k]``,
        each (len(q), blocks x block)."""
        g = self.sums[:, c.T, :, q[:, None]].astype(np.int32)  # (len(q), blocks, half, row in block)
        x = np.cumsum(g.transpose(0, 2, 1, 3).reshape(q.shape[0], 2, -1), axis=2, dtype=np.int32)
        x += self.before[:, c[0], q].T[:, :, None]
        return x[:, 0], x[:, 1]

    def at(self, i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(tp, fp) of every resample at threshold ``i`` (-1 reads threshold 0), each (resamples,)."""
        c, k = np.divmod(np.maximum(i, 0), self.b)
        q = np.arange(self.r)
        tp, fp = self.block(c, q)
        return tp[q, k], fp[q, k]

    def _last_met(self, point: OperatingPoint, p: np.ndarray, n: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """Per resample, the last threshold in [lo, hi) that meets the constraint (-1: none) and its ``tp``."""
        bound = point.bound - 1e-12  # type: ignore[operator]  # as choose's
        nb = self.sums.shape[1]
        first_tp = self.before[0] + self.sums[0, :, 0]
        first_fp = self.before[1] + self.sums[1, :, 0]
        with np.errstate(divide="ignore", invalid="ignore"):
            if point.constraint == "precision":
                most = np.divide(self.ends[0], first_tp + first_fp, dtype=np.float64)  # NaN (0/0) stays possible
            else:
                most = 1.0 - np.divide(first_fp, n, dtype=np.float64)
        possible = ~(most < bound)
        starts = np.arange(nb) * self.b
        possible &= ((starts < hi) & (starts + self.b > lo))[:, None]
        possible &= ((p > 0) & (n > 0 if point.constraint == "specificity" else True))[None, :]
        last = np.full(self.r, -1)
        top = np.zeros(self.r, np.int32)
        rank = np.arange(1, nb + 1)[:, None]
        # blocks read at once: the last that could hold and those before it (those after it
        # cannot hold, so reading them too changes nothing)
        span = min(max(1, SCAN // self.b), nb)
        ahead = np.arange(span)[:, None]
        offsets = np.arange(span * self.b)
        pending = possible.any(axis=0)
        while pending.any():  # none met in them: the next block before them that could hold
            q = np.flatnonzero(pending)
            c = np.clip((possible[:, q] * rank).max(axis=0) - span, 0, nb - span) + ahead  # (span, len(q))
            tp, fp = self.blocks(c, q)
            j = c[0][:, None] * self.b + offsets
            with np.errstate(divide="ignore", invalid="ignore"):
                ok = rate(point.constraint, tp, fp, p[q, None], n[q, None]) >= bound  # type: ignore[arg-type]
            ok &= (j >= lo) & (j < hi)
            found = ok.any(axis=1)
            k = ok.shape[1] - 1 - np.argmax(ok[:, ::-1], axis=1)
            hit = q[found]
            last[hit] = j[found, k[found]]
            top[hit] = tp[found, k[found]]
            miss = ~found
            possible[c[:, miss], q[miss]] = False
            pending[hit] = False
            pending[q[miss]] = possible[:, q[miss]].any(axis=0)
        return last, top

    def choose(
        self, point: OperatingPoint, p: np.ndarray, n: np.ndarray, lo: int = 0, hi: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, Any]:
        """:func:`~ckptaudit.stats.operating_curves.choose_columns` on thresholds [lo, hi) for a
        point :func:`serves`: (value, index among all the column's thresholds kept, -1: none,
        the constraint there)."""
        hi = self.size if hi is None else hi
        last, top = self._last_met(point, p, n, lo, hi)
        some = last >= 0
        # the first threshold with that many true positives (its block from the blocks' ends),
        # or lo: the ties of the best come first where the constraint is best (choose_columns)
        q = np.arange(self.r)
        c = np.minimum((self.ends[0] < top).sum(axis=0), self.sums.shape[1] - 1)
        tp, _ = self.block(c, q)
        i = np.maximum(c * self.b + (tp < top[:, None]).sum(axis=1), lo)
        i = np.where(some, i, -1)
        tp_i, fp_i = self.at(i)
        with np.errstate(divide="ignore", invalid="ignore"):
            value = np.where(some, np.divide(tp_i, p, dtype=np.float64), np.nan)
            con = rate(point.constraint, tp_i, fp_i, p, n)  # type: ignore[arg-type]
        return value, i, con
