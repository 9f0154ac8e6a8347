"""Percentiles of finite bootstrap values, the bits of ``np.percentile`` without its overhead.

The statistics take a few percentiles of small arrays many times: an HPO sweep of 1,000 runs
calls ``np.percentile`` three times a run, and each call spends about 100 us in argument
handling around a partition of a few thousand values (its first call also imports
``numpy.ma``, 10 ms of a command's start). :func:`percentiles` does what numpy's default
("linear", Hyndman and Fan's 7th) method does, step for step and with the same operations: the
same virtual indexes, the same partition call, the same interpolation. So it returns the same
bits (tests/test_quantiles.py compares them on ties, signed zeros and every size from one
value up). It serves float64 arrays of finite values along their first axis; anything else is
handed to ``np.percentile`` itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def percentiles(values: np.ndarray, q: Sequence[float]) -> np.ndarray:
    """``np.percentile(values, q, axis=0)`` for float64 ``values`` whose every element is
    finite (the caller's guarantee; NaN would sort differently), shape ``(len(q),) +
    values.shape[1:]``. Other dtypes and empty arrays go to ``np.percentile``."""
    n = values.shape[0] if values.ndim else 0
    if values.dtype != np.float64 or n == 0 or values.size == 0:
        return np.percentile(values, q, axis=0)
    fractions = np.true_divide(np.asarray(q, dtype=np.float64), 100)
    virtual = (n - 1) * fractions
    below = np.floor(virtual)
    above = below + 1
    # (numpy's bounds: past the last index, the last value; before the first, the first)
    last = virtual >= n - 1
    below[last] = -1
    above[last] = -1
    first = virtual < 0
    below[first] = 0
    above[first] = 0
    below_i = below.astype(np.intp)
    above_i = above.astype(np.intp)
    arr = values.copy()
    # NOTE: numpy's own partition call, with its kth (sorted, distinct, 0 and -1 included):
    # another kth could leave -0.0 where numpy leaves 0.0
    kth = sorted({0, -1, *below_i.tolist(), *above_i.tolist()})
    arr.partition(np.array(kth, dtype=np.intp), axis=0)
    a = arr[below_i]
    b = arr[above_i]
    gamma = (virtual - below_i).reshape(virtual.shape + (1,) * (arr.ndim - 1))
    # numpy's _lerp: from the lower value below t = 0.5, from the upper one from 0.5 on
    diff = b - a
    out = np.add(a, diff * gamma)
    np.subtract(b, diff * (1 - gamma), out=out, where=gamma >= 0.5, casting="unsafe", dtype=out.dtype.type)
    return out
