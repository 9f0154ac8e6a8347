"""Caruana's greedy forward ensemble selection with replacement, vectorised.

The ensemble is a running sum of its members' probabilities; each step tries adding every
checkpoint at once (one array operation over a block of candidates: ``(S + P_j) / (c + 1)``
for all j, then the per-row metric and its weighted mean), keeps the best, and stops when no
addition improves the weighted value (Caruana et al. 2004, "Ensemble selection from
libraries of models"). The weights are the rows' resample weights, so the very same search
runs on the validation rows and, for the selection-corrected estimate, on each resample's
in-bag rows.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: float64 cells of one block of trial ensembles (bounds memory at ~64 MB per block)
_BLOCK_CELLS = 8_000_000
#: the most members (with repetition) a greedy ensemble takes
MAX_STEPS = 50

RowsFn = Callable[[np.ndarray], np.ndarray]


def better(v: float, ref: float, maximize: bool) -> bool:
    """Whether ``v`` beats ``ref`` beyond rounding (a relative 1e-12): a step that changes a
    value only by rounding (a repeated member under accuracy) is no improvement."""
    if not np.isfinite(ref):
        return bool(np.isfinite(v))
    tol = 1e-12 * max(abs(ref), 1e-300)
    return v > ref + tol if maximize else v < ref - tol


def greedy_select(
    probs: np.ndarray, rows: RowsFn, weights: np.ndarray, maximize: bool, max_steps: int = MAX_STEPS
) -> tuple[list[int], float]:
    """Members (indices into ``probs``, repeated when chosen again) of the greedy ensemble
    under row ``weights``, and its weighted value. ``rows`` maps predictions ``(..., N[, C])``
    to per-row metric values ``(..., N)``."""
    k = probs.shape[0]
    per = int(np.prod(probs.shape[1:]))
    block = max(1, _BLOCK_CELLS // max(per, 1))
    total = weights.sum()
    running = np.zeros(probs.shape[1:], dtype=np.float64)
    members: list[int] = []
    current = -np.inf if maximize else np.inf
    for step in range(max_steps):
        best_j, best_v = -1, current
        for start in range(0, k, block):
            trial = probs[start : start + block] + running
            trial /= step + 1
            vals = rows(trial) @ weights / total
            j = int(np.argmax(vals) if maximize else np.argmin(vals))
            v = float(vals[j])
            # NOTE: strictly better, with a relative tolerance: a step that changes the value
            # only by rounding (a repeated member under accuracy) is no improvement
            if better(v, best_v, maximize):
                best_j, best_v = start + j, v
        if best_j < 0:
            break
        running += probs[best_j]
        members.append(best_j)
        current = best_v
    return members, float(current)
