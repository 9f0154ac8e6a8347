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
from .operating_curves import Column, at_counts, raw_rate

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
    """One checkpoint's curves under a batch of resample weights (see the module docstring)."""

    def __init__(self, tp: np.ndarray, fp: np.ndarray, col: Column) -> None:
        """``tp``, ``fp``: :func:`~ckptaudit.stats.operating_curves.cumulative`'s curves (whole blocks, resamples)."""
        self.b, self.r = col.block, tp.shape[1]
        self.size = col.thresholds.shape[0]
        self.tp, self.fp = tp, fp
        self.tp4 = self.tp.reshape(-1, self.b, self.r)  # (block, threshold in block, resample)
        self.fp4 = self.fp.reshape(-1, self.b, self.r)
        self._precision: np.ndarray | None = None  # each block's best precision (the same for every bound)

    def blocks(self, c: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(tp, fp) at every threshold of the consecutive blocks ``c[:, k]`` in resample ``q[k]``,
        each (len(q), blocks x block)."""
        shape = (q.shape[0], -1)
        return self.tp4[c.T, :, q[:, None]].reshape(shape), self.fp4[c.T, :, q[:, None]].reshape(shape)

    def at(self, i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(tp, fp) of every resample at threshold ``i`` (-1 reads threshold 0), each (resamples,)."""
        j, q = np.maximum(i, 0), np.arange(self.r)
        return self.tp[j, q], self.fp[j, q]

    def rates_at(self, i: np.ndarray, p: np.ndarray, n: np.ndarray, point: OperatingPoint) -> tuple:
        """(value, constraint, its denominator) of every resample at threshold ``i``
        (:func:`~ckptaudit.stats.operating_curves.at_counts`)."""
        tp, fp = self.at(i)
        return at_counts((tp[:, None].astype(np.float64), fp[:, None].astype(np.float64), p[:, None], n[:, None]), i, point)

    def _last_met(self, point: OperatingPoint, p: np.ndarray, n: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """Per resample, the last threshold in [lo, hi) that meets the constraint (-1: none) and its ``tp``."""
        bound = point.bound - 1e-12  # type: ignore[operator]  # as choose's
        nb = self.tp4.shape[0]
        first_fp = self.fp4[:, 0]
        if point.constraint != "precision":
            most = 1.0 - np.divide(first_fp, n, dtype=np.float64)
        elif self._precision is None:  # every positive of the block, none of its negatives
            last_tp = self.tp4[:, -1]
            most = self._precision = np.divide(last_tp, last_tp + first_fp, dtype=np.float64)  # NaN (0/0): possible
        else:
            most = self._precision
        possible = ~(most < bound)
        starts = np.arange(nb) * self.b
        possible &= ((starts < hi) & (starts + self.b > lo))[:, None]
        possible &= ((p > 0) & (n > 0 if point.constraint == "specificity" else True))[None, :]
        last = np.full(self.r, -1)
        top = np.zeros(self.r, self.tp.dtype)
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
            ok = raw_rate(point.constraint, tp, fp, p[q, None], n[q, None]) >= bound  # type: ignore[arg-type]
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
        c = np.minimum((self.tp4[:, -1] < top).sum(axis=0), self.tp4.shape[0] - 1)
        i = np.maximum(c * self.b + (self.tp4[c, :, q] < top[:, None]).sum(axis=1), lo)
        i = np.where(some, i, -1)
        tp_i, fp_i = self.at(i)
        value = np.where(some, np.divide(tp_i, p, dtype=np.float64), np.nan)
        return value, i, raw_rate(point.constraint, tp_i, fp_i, p, n)  # type: ignore[arg-type]
