"""Resampling weights: stratified bootstrap row weights in chunks, with out-of-bag indicators.

A stratum of ``n`` rows is resampled exactly (n draws with replacement) while ``n x
resamples-per-chunk`` is small, and otherwise with Poisson(1) row weights rescaled to the
stratum's size, which is indistinguishable at that size and ~8x cheaper. Exact stratum
draws are remembered by (size, resamples, generator state) in a cache of at most 64 MiB, so
runs seeded alike (an HPO sweep) draw each stratum size once, with bit-identical results.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from .rows import RowData, distinct_codes

#: float32 cells of one chunk's weight matrices (in-bag and out-of-bag together)
_CHUNK_CELLS = 8_000_000
#: a stratum is resampled exactly while rows x chunk resamples stays below this
_EXACT_CELLS = 2_000_000


def _stratum_weights(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """(k, n) float32 bootstrap weights of one stratum of n rows, summing to n per row."""
    if n * k <= _EXACT_CELLS:
        idx = rng.integers(0, n, size=(k, n)) + (np.arange(k) * n)[:, None]
        return np.bincount(idx.ravel(), minlength=k * n).reshape(k, n).astype(np.float32)
    # Poisson(1) weights through a 16-bit lookup table, rescaled to the stratum's size
    w = poisson_one(rng, (k, n)).astype(np.float32)
    total = w.sum(axis=1, keepdims=True)
    empty = np.flatnonzero(total[:, 0] == 0)
    if empty.size:  # all rows out of bag (only possible for tiny strata): draw those exactly
        idx = rng.integers(0, n, size=(empty.size, n)) + (np.arange(empty.size) * n)[:, None]
        w[empty] = np.bincount(idx.ravel(), minlength=empty.size * n).reshape(empty.size, n)
        total[empty] = n
    w *= n / total
    return w


def _poisson_lut() -> np.ndarray:
    k = np.arange(16)
    pmf = np.exp(-1.0) / np.array([math.factorial(int(i)) for i in k])
    edges = np.cumsum(pmf) * 65536
    return np.searchsorted(edges, np.arange(65536), side="right").astype(np.uint8)


_POISSON_LUT = _poisson_lut()


#: uniform draws looked up at once (a 512 KiB buffer: cache-resident)
_POISSON_BLOCK = 1 << 18


def poisson_one(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Poisson(1) counts (uint8) of ``shape``, through a 16-bit lookup table of the inverse
    CDF: each probability to within 2^-16, about 5x faster than ``rng.poisson``."""
    out = np.empty(shape, np.uint8)
    flat = out.reshape(-1)
    # NOTE: by blocks of whole rows, in order: the same draws as one call (a C-order array is
    # filled in that order), without a uniform buffer larger than the cache (11M draws at
    # once took 70 ms, in blocks 40 ms)
    # (an even count each: the generator makes two 16-bit draws of one 32-bit word, and an odd
    # count would leave half of one unused)
    row = max(1, shape[-1]) if len(shape) > 1 else 1
    step = max(2, _POISSON_BLOCK // row // 2 * 2) * row
    for start in range(0, flat.shape[0], step):
        stop = min(start + step, flat.shape[0])
        # (np.take: half the time of an index into the table, the same counts)
        np.take(_POISSON_LUT, rng.integers(0, 1 << 16, size=stop - start, dtype=np.uint16), out=flat[start:stop])
    return out


#: exact draws of a stratum this size or larger (rows x resamples) are remembered ...
_DRAW_CACHE_MIN_CELLS = 10_000
#: ... in a cache of at most this many bytes
_DRAW_CACHE_BYTES = 64 * 2**20
_DRAW_CACHE: dict[tuple, tuple[np.ndarray, Any]] = {}


#: the latest single-chunk weight matrix, by (strata, resamples, out-of-bag, generator
#: state): (matrix, generator state after it, whether it holds whole counts)
_WHOLE_CACHE: dict[tuple, tuple[np.ndarray, Any, bool]] = {}

#: the latest weight matrix :func:`_weight_chunks` drew exactly (every stratum's counts
#: whole, the out-of-bag indicators 0/1), held so that its identity is not reused
_WHOLE_COUNTS: list[np.ndarray] = []


def _mark_whole_counts(w: np.ndarray) -> None:
    w.flags.writeable = False  # NOTE: so that it stays whole: no caller writes weights
    _WHOLE_COUNTS[:] = [w]


def whole_counts(w: np.ndarray) -> bool:
    """Whether ``w`` is the latest weight matrix drawn here with every stratum's counts
    whole (exact draws, not rescaled Poisson weights), and its out-of-bag rows 0/1: every
    entry a whole number, every row summing to at most the number of rows. Sums of whole
    numbers are exact in float32 in any order (below 2^24), which
    :func:`ckptaudit.stats.weighted._dense_counts` relies on to pack two 0/1 features into
    one column."""
    return bool(_WHOLE_COUNTS) and _WHOLE_COUNTS[0] is w


def _state_key(state: Any) -> Any:
    if isinstance(state, dict):
        return tuple((key, _state_key(value)) for key, value in sorted(state.items()))
    return state


def _remember(key: tuple, counts: np.ndarray, state: Any) -> None:
    if counts.max(initial=0) > 255:
        return
    _DRAW_CACHE[key] = (counts.astype(np.uint8), state)
    total = sum(c.nbytes for c, _ in _DRAW_CACHE.values())
    if total > _DRAW_CACHE_BYTES:
        # NOTE: the smallest go first: a large stratum (drawn first, its key depends on its
        # size alone) repeats across runs far more often than the small ones after it
        for old in sorted(_DRAW_CACHE, key=lambda key: _DRAW_CACHE[key][0].nbytes):
            total -= _DRAW_CACHE.pop(old)[0].nbytes
            if total <= _DRAW_CACHE_BYTES:
                break


def _weight_chunks(strata: np.ndarray, resamples: int, rng: np.random.Generator, out_of_bag: bool = False):
    """Yield (k, N) in-bag weight matrices, stratified by ``strata``, in chunks; with
    ``out_of_bag``, (2k, N) matrices whose last k rows are the out-of-bag indicators
    (1 where a row was not drawn) of the first k.

    A stratum's exact counts depend only on its size, the chunk's resamples and the
    generator's state before its draws, so those are remembered (:data:`_DRAW_CACHE`): a
    sweep of many runs seeded alike draws each stratum size once; the generator is then set
    to the state the draws would have left, so every result is the same bit for bit as
    without the cache. Strata stored contiguously (see :func:`_by_stratum`) are written as
    blocks."""
    n = strata.shape[0]
    per_chunk = max(1, min(resamples, _CHUNK_CELLS // (2 * max(n, 1))))
    whole_key = None
    if per_chunk >= resamples:
        # NOTE: one chunk holds every resample: the whole matrix is remembered, so the runs
        # of a sweep that share their validation rows (and seed) draw it once, not per run
        # and per statistic (issue 21: 2 ms a call, 4 s of a 1,000-run HPO pick)
        whole_key = (strata.dtype.str, strata.tobytes(), resamples, out_of_bag, _state_key(rng.bit_generator.state))
        hit = _WHOLE_CACHE.get(whole_key)
        if hit is not None:
            rng.bit_generator.state = hit[1]
            if hit[2]:
                _mark_whole_counts(hit[0])
            yield hit[0]
            return
    values = distinct_codes(strata)
    groups: list[Any] = [np.flatnonzero(strata == s) for s in values]
    if all(g.shape[0] == 0 or g[-1] - g[0] + 1 == g.shape[0] for g in groups):
        groups = [slice(int(g[0]), int(g[-1]) + 1) if g.shape[0] else g for g in groups]
    sizes = [g.stop - g.start if isinstance(g, slice) else g.shape[0] for g in groups]
    # NOTE: strata held as index arrays (rows not stored by stratum) and drawn exactly
    # (whole counts) are laid side by side in one byte each, then put in row order in one
    # gather and converted once: numpy writes a float32 column scatter at about 1.4 ns a
    # cell, 1.3 ms for each stratum of a 1,000 x 1,000 matrix, twice what this takes
    # (issue 21: a third of an HPO sweep's `pick -m roc_auc`). The same weights either way.
    inverse = None  # the column of the side-by-side layout that each row reads
    if not isinstance(groups[0], slice):
        order = np.concatenate(groups)
        inverse = np.empty_like(order)
        inverse[order] = np.arange(order.shape[0])
    done = 0
    while done < resamples:
        k = min(per_chunk, resamples - done)
        both = np.empty((2 * k if out_of_bag else k, n), dtype=np.float32)
        w = both[:k]
        staged = inverse is not None and all(m * k <= _EXACT_CELLS for m in sizes)
        block = np.empty((k, n), dtype=np.uint8) if staged else None
        late: list[tuple[Any, np.ndarray]] = []  # staged strata with a count over 255
        start = 0
        for rows, m in zip(groups, sizes, strict=True):  # in the strata's order: the random stream does not depend on the method
            counts = _stratum_counts(m, k, rng)
            if block is None:
                w[:, rows] = counts
            elif counts.dtype == np.uint8 or counts.max(initial=0) <= 255:
                block[:, start : start + m] = counts
            else:
                late.append((rows, counts))
            start += m
        drawn: np.ndarray = w  # where the out-of-bag indicators are read from (the same zeros)
        if block is not None and inverse is not None:  # (inverse: always, where block)
            placed = np.take(block, inverse, axis=1)
            del block
            w[...] = placed
            for rows, counts in late:
                w[:, rows] = counts
            if not late:
                drawn = placed  # (one byte a cell: cheaper to compare)
        if out_of_bag:
            np.equal(drawn, 0, out=both[k:], casting="unsafe")
        del drawn
        if all(m * k <= _EXACT_CELLS for m in sizes):
            _mark_whole_counts(both)
        if whole_key is not None:
            both.flags.writeable = False  # shared by every later caller: read-only
            _WHOLE_CACHE.clear()  # NOTE: the latest only: a sweep repeats one draw
            _WHOLE_CACHE[whole_key] = (both, rng.bit_generator.state, whole_counts(both))
        yield both
        done += k


def _stratum_counts(m: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """(k, m) weights of one stratum of m rows: :func:`_stratum_weights`, or exact counts
    drawn before from the same generator state (:data:`_DRAW_CACHE`, uint8)."""
    if m * k > _EXACT_CELLS:
        return _stratum_weights(m, k, rng)
    key = None
    if m * k >= _DRAW_CACHE_MIN_CELLS:
        key = (m, k, _state_key(rng.bit_generator.state))
        hit = _DRAW_CACHE.get(key)
        if hit is not None:
            rng.bit_generator.state = hit[1]
            return hit[0]
    counts = _stratum_weights(m, k, rng)
    if key is not None:
        _remember(key, counts, rng.bit_generator.state)
    return counts


def _by_stratum(rows: RowData, resamples: int) -> RowData:
    """``rows`` with its rows in stratum order (stable), so that each stratum's weights are
    written as one block, where that cannot change a value: confusion counts (sums of 0/1
    features) under integer weights (every stratum drawn exactly) are exact in any order.
    Kept as it is otherwise, or when the copy would be large."""
    n = rows.strata.shape[0]
    per_chunk = max(1, min(resamples, _CHUNK_CELLS // (2 * max(n, 1))))
    if rows.kind != "confusion" or n < 2 or rows.data.nbytes > _CHUNK_CELLS:
        return rows
    sizes = np.bincount(rows.strata)
    if sizes.max() * per_chunk > _EXACT_CELLS or bool(np.all(rows.strata[1:] >= rows.strata[:-1])):
        return rows
    order = np.argsort(rows.strata, kind="stable")
    classes = None if rows.classes is None else rows.classes[order]
    return replace(rows, y=rows.y[order], data=rows.data[:, order], strata=rows.strata[order], classes=classes)
