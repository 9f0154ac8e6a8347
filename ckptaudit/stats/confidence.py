"""The model confidence set: the checkpoints that cannot be told apart from the best."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .results import LEVEL


def confidence_set(oriented: np.ndarray, point: np.ndarray, winner: int, level: float = LEVEL) -> tuple[list[int], np.ndarray]:
    """Model confidence set with the range statistic (Hansen, Lunde & Nason 2011),
    eliminating in steps (Romano-Wolf step-down).

    ``oriented`` holds bootstrap values (resamples, C), larger = better; ``point`` the
    values on the full validation set. With ``M`` the checkpoints still in the set, ``q``
    is the ``level`` critical value of the bootstrap range ``max_M(V* - v) - min_M(V* - v)``
    (the largest centred pairwise difference; as a Monte Carlo test, the order statistic
    whose p-value ``(1 + #{range >= gap}) / (B + 1)`` reaches ``1 - level``); every
    checkpoint whose gap to the best of ``M`` exceeds ``q`` leaves, and the step repeats on the smaller set until none leaves.
    The differences are not studentised on purpose: a per-pair standard error estimated
    from the few rows two similar checkpoints disagree on has heavy tails, and the
    maximum over C^2 pairs then raises false alarms (7% instead of 5% for 50 equal
    checkpoints on 300 rows, measured by bench/simulate_selection.py). Returns the member
    indices and each checkpoint's p-value (members have p > 1 - level; the winner 1).
    Work: O(resamples x C) per step, no (resamples x C x C) array.
    """
    members, pvalues, _ = confidence_set_threshold(oriented, point, winner, level)
    return members, pvalues


def confidence_set_threshold(
    oriented: np.ndarray, point: np.ndarray, winner: int, level: float = LEVEL
) -> tuple[list[int], np.ndarray, float | None]:
    """:func:`confidence_set`, and the threshold of its last step: the gap to the best a
    member would have needed to leave the set (the smallest detectable difference at
    ``level``; None with a single checkpoint)."""
    return step_down(lambda alive: _ranges(oriented, point, alive), point, winner, oriented.shape[0], level)


def step_down(
    ranges_of: Callable[[np.ndarray], np.ndarray], point: np.ndarray, winner: int, resamples: int, level: float = LEVEL
) -> tuple[list[int], np.ndarray, float | None]:
    """The elimination of :func:`confidence_set_threshold`, given ``ranges_of(alive)``: per
    resample, the range of the centred oriented values over the ``alive`` columns (a
    caller that does not hold every column at once computes them its own way,
    :mod:`ckptaudit.stats.streamed`)."""
    c_count = point.shape[0]
    alive = np.arange(c_count)
    pvalues = np.ones(c_count)
    running = 0.0
    q: float | None = None
    # NOTE: a Monte Carlo test (Davison & Hinkley 1997, 4.2.5): a checkpoint leaves when
    # p = (1 + #{range >= gap}) / (B + 1) <= 1 - level, i.e. when its gap exceeds the
    # (k+1)-th largest range, k = floor((1 - level)(B + 1)) - 1. The interpolated quantile
    # used before is one order statistic lower and, with 400 resamples, raised the false
    # alarms of 10 equal checkpoints on 1,000 rows to 5.4% (5.2% with this rule, 5.0% with
    # 3,000 resamples either way; 3,200 trials each, issue 17).
    k = int(np.floor((1 - level) * (resamples + 1) + 1e-9)) - 1
    if k < 0:  # too few resamples for any p-value to reach 1 - level: nobody can leave
        return list(range(c_count)), pvalues, None
    while alive.size > 1:
        ranges = ranges_of(alive)
        gaps = point[alive].max() - point[alive]
        q = float(np.partition(ranges, resamples - 1 - k)[resamples - 1 - k])
        out = (gaps > q) & (alive != winner)
        if not out.any():
            break
        for j in np.flatnonzero(out):
            pvalues[alive[j]] = max(running, float((1 + np.count_nonzero(ranges >= gaps[j])) / (resamples + 1)))
        running = max(running, float(pvalues[alive[out]].max()))
        alive = alive[~out]
    return [int(i) for i in alive], pvalues, q


#: values per block of :func:`_ranges` (its temporaries are a block of whole resamples;
#: a block holds at least 64 resamples, and every resample of a narrow run at once: a 1,000
#: x 5 matrix in 16 blocks cost 16 x the calls, 0.1 ms a run of an HPO sweep)
_BLOCK_VALUES = 65_536


def rows_per_block(columns: int) -> int:
    """Resamples per block of a pass over (resamples, ``columns``) values."""
    return max(64, _BLOCK_VALUES // max(columns, 1))


def _ranges(oriented: np.ndarray, point: np.ndarray, alive: np.ndarray) -> np.ndarray:
    """Per resample, the range of the centred values ``oriented - point`` over the ``alive``
    columns, in blocks of resamples: the same numbers as on the whole centred matrix,
    without a (resamples, C) copy of it (issue 21: memory flat in checkpoints)."""
    ranges = np.empty(oriented.shape[0])
    centre = point[alive][None, :]
    every = alive.shape[0] == oriented.shape[1] and bool(np.all(alive == np.arange(alive.shape[0])))
    step = rows_per_block(alive.shape[0])
    for start in range(0, oriented.shape[0], step):
        part = oriented[start : start + step]
        # NOTE: the block transposed, so that the maximum and the minimum over checkpoints
        # run along contiguous rows of resamples (numpy's reduction over a short inner axis
        # took 35 us for 1,000 x 5, this 3 us); the same numbers
        sub = np.ascontiguousarray((part if every else part[:, alive]).T)
        sub -= centre.T
        ranges[start : start + step] = sub.max(axis=0) - sub.min(axis=0)
    return ranges
