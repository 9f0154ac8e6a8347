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

#: cells of one block of trial ensembles: small enough (1-2 MB) that the add, log and
#: weighted sum of a block run in cache, which is 2-3x faster than whole-library blocks
_BLOCK_CELLS = 262_144
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
    block = max(1, min(k, _BLOCK_CELLS // max(per, 1)))
    # NOTE: float32 predictions are searched in float32 (half the memory traffic of a 100k-row
    # step); the chosen ensemble's value is then recomputed in float64 by the caller
    dtype = np.float32 if probs.dtype == np.float32 else np.float64
    w = weights.astype(dtype)
    total = float(weights.sum())
    running = np.zeros(probs.shape[1:], dtype=dtype)
    scratch = np.empty((block, *probs.shape[1:]), dtype=dtype)
    log_eps = getattr(rows, "log_loss_eps", None)
    members: list[int] = []
    current = -np.inf if maximize else np.inf
    for step in range(max_steps):
        best_j, best_v = -1, current
        for start in range(0, k, block):
            m = min(block, k - start)
            trial = scratch[:m]
            np.add(probs[start : start + m], running, out=trial)
            if log_eps is not None:
                # NOTE: log_loss on sums (two passes fewer over the block than on means)
                c = step + 1
                np.clip(trial, log_eps * c, (1 - log_eps) * c, out=trial)
                np.log(trial, out=trial)
                vals = np.log(c) - (trial @ w) / total
            else:
                trial *= dtype(1.0 / (step + 1))
                vals = rows(trial) @ w / total
            j = int(np.argmax(vals) if maximize else np.argmin(vals))
            v = float(vals[j])
            if better(v, best_v, maximize):
                best_j, best_v = start + j, v
        if best_j < 0:
            break
        running += probs[best_j]
        members.append(best_j)
        current = best_v
    return members, float(current)
