"""A column's curves summed from its gathered rows (issue 20): as running sums of every row,
laid out so that each step adds one contiguous slab (:func:`running`), or threshold by
threshold where each threshold flags many new rows (:func:`segment_sums`), a class with few
rows per threshold as one running sum down its rows (:func:`few_per_threshold`). Whole counts:
every order of the additions gives the same sums (in the accumulator's type,
:func:`~ckptaudit.stats.operating_curves.accumulator`). The columns and their layouts are
:mod:`ckptaudit.stats.operating_curves`'."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .operating_curves import Above, Column

#: rows x resamples per threshold below which a dense column's class is summed as one running
#: sum down its rows (:func:`few_per_threshold`; a threshold's slabs cost about 7 us in calls,
#: the running sum about 2 ns a cell more than a slab's sum: the crossover measured near 22 rows
#: per threshold at 167 resamples and 4 at 1,000)
RUNNING_CELLS = 3600


def segment_sums(g: np.ndarray, above: Above, acc: Any, col: Column, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(tp, fp) per threshold of a dense column (``g``: its rows in place order; ``above``: the
    sums of the rows above every threshold): the rows each threshold newly flags summed at once
    (one contiguous slab of rows per class and threshold), then added up along the thresholds.
    Whole counts: the same sums as the running sums'."""
    # NOTE: with hundreds of rows per threshold (a recall bound near 1, a cost: many negatives
    # between two positives' scores) the running sums write and read every row's partial sums
    # three times; these read each row once (measured on the bench, a column of 8,300 rows in
    # 222 thresholds x 1,000 resamples: 44 -> 22 ms)
    curves = []
    for h in (0, 1):
        first, last = int(col.ends[h, 0]), int(col.ends[h, size - 1])  # the class's rows in g
        if (last - first) * math.prod(g.shape[1:]) < RUNNING_CELLS * size:
            curves.append(few_per_threshold(g[first:last], above[h], acc, col.ends[h, :size] - first))
            continue
        c = np.empty((size, *g.shape[1:]), acc)
        c[0] = above[h]
        ends = col.ends[h, :size].tolist()
        for j in range(1, size):
            a, b = ends[j - 1], ends[j]
            if b > a:
                np.add.reduce(g[a:b], axis=0, dtype=acc, out=c[j])
                np.add(c[j], c[j - 1], out=c[j])
            else:
                c[j] = c[j - 1]
        curves.append(c)
    return curves[0], curves[1]


def few_per_threshold(rows: np.ndarray, above: np.ndarray, acc: Any, ends: np.ndarray) -> np.ndarray:
    """One class's curve from its ``rows`` in place order, few per threshold (the positives,
    about one per candidate): one running sum down the rows, read at each threshold's last row
    (``ends``: the rows up to it), plus the rows ``above``. A call per threshold costs more
    than the rows it would add (measured: 149 thresholds of one row each x 167 resamples,
    0.55 ms threshold by threshold, 0.06 ms as one running sum)."""
    x = np.empty((rows.shape[0] + 1, *rows.shape[1:]), acc)
    x[0] = 0
    np.cumsum(rows, axis=0, dtype=acc, out=x[1:])
    c = x[ends]
    c += above  # (whole counts: in uint16 a wrap wraps back)
    return c


def running(laid: np.ndarray, acc: Any, filled: int, lead: Any = 0) -> np.ndarray:
    """The running sums, in type ``acc``, of the rows ``laid`` out (steps, groups, resamples)
    as :class:`Column`'s ``rows`` (place ``g * steps + k`` at ``[k, g]``; the first ``filled``
    places hold rows, the very first is ``lead`` and those after them are summed as 0): one
    row of sums per place, step-major (place ``p``: ``lead`` plus the sum of places 1..p)."""
    x = laid.astype(acc)  # a copy: the caller's rows stay as they are
    steps, groups, r = x.shape
    x[0, 0] = lead
    x[filled - (groups - 1) * steps :, groups - 1] = 0
    # NOTE: each step's places of every group are one contiguous slab, so the running sums
    # are whole-slab adds (about 2x faster than adds of strided rows, and numpy's cumulative
    # sum along the first axis is a sequential loop per element, about 8x slower still)
    for k in range(1, steps):
        np.add(x[k], x[k - 1], out=x[k])
    if groups > 1:
        x[:, 1:] += np.cumsum(x[steps - 1, :-1], axis=0, dtype=acc)[None]
    return x.reshape(steps * groups, r)
