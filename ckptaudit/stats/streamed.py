"""The selection bootstrap of many checkpoints in blocks: memory flat in the number of checkpoints.

:func:`ckptaudit.stats.selection.select` needs, per resample, the checkpoint selected in bag
and its out-of-bag value, the range of the centred values (the model confidence set) and
each checkpoint's percentile interval. Held at once, the in-bag and out-of-bag values are
two (resamples, checkpoints) float64 arrays: 320 MB at 20,000 checkpoints and 1,000
resamples (issue 21). Here they are computed for a block of checkpoints at a time, under
the very same weights (the generator is set back to its state before the draws for every
block, and a stratum's draws are the same whatever the block), and only per-resample
summaries are kept: the running pick (ties to the earlier checkpoint, as one argmax over
all of them), its out-of-bag value, the running maximum and minimum of the centred values.
A step of the confidence set after the first computes its ranges again from the
checkpoints still in the set: held at once when they fit in :data:`STREAM_BYTES` (the next
steps read them), else in blocks.

Confusion counts are exact sums of 0/1 features under integer weights, in any order, and
the exact ROC AUC / average precision of small validation sets is computed checkpoint by
checkpoint, so a checkpoint's values do not depend on which others are computed with it. Mean-type rows
(losses, the linearised ROC AUC and average precision) go through a float32 matrix
product, whose sums round differently with the matrix's width: their values are always
computed in the same aligned blocks of :func:`block_width` checkpoints
(:data:`BLOCKED_KINDS`), by this path and by the in-memory one
(:func:`ckptaudit.stats.selection._resampled_now`) alike, so the two give the same
numbers. (A run of up to one block's checkpoints is one product, as it always was.)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import numpy as np

from ..metrics.spec import MetricSpec
from .confidence import _ranges, step_down
from .gaussian import gaussian_ok
from .intervals import _all_percentiles
from .rows import RowData
from .weighted import weighted_values

#: bytes of the in-bag and out-of-bag values (2 x resamples x checkpoints float64) above
#: which they are computed in blocks of checkpoints (a block's weights are the run's one
#: remembered matrix where it fits one chunk, :func:`ckptaudit.stats.weights._weight_chunks`,
#: so that smaller blocks cost little) ...
STREAM_BYTES = 8 * 2**20
#: ... for these per-row forms
STREAM_KINDS = ("confusion", "ranking", "mean")
#: per-row forms whose values are computed in aligned blocks of :func:`block_width`
#: checkpoints on every path (a float32 product rounds with its width)
BLOCKED_KINDS = ("mean",)
#: resamples per block of the passes over one block's values
_ROW_BLOCK = 64


@dataclass(frozen=True)
class Draws:
    """What the selection statistics keep of the bootstrap: per resample the out-of-bag
    value of the checkpoint picked in bag, whether any / every in-bag value is finite; the
    confidence set (members, p-values, threshold) and each checkpoint's interval."""

    oob_all: np.ndarray
    any_finite: np.ndarray
    finite: np.ndarray
    members: list[int]
    pvalues: np.ndarray
    q: float | None
    intervals: list[tuple[float, float] | None]


def streams(rows: RowData, resamples: int) -> bool:
    """Whether :func:`draws` serves ``rows`` (many checkpoints, an exact per-row form)."""
    if rows.kind not in STREAM_KINDS or rows.group_div or gaussian_ok(rows, resamples):
        return False
    return 2 * 8 * resamples * rows.data.shape[0] > STREAM_BYTES


#: per resample, this many of the largest (and of the smallest) centred values are kept
EXTREMES = 64


class _Extremes:
    """Per resample, the :data:`EXTREMES` largest values seen and their checkpoints."""

    def __init__(self, resamples: int) -> None:
        self.values = np.full((resamples, EXTREMES), -np.inf)
        self.cols = np.full((resamples, EXTREMES), -1, dtype=np.intp)

    def add(self, r0: int, values: np.ndarray, start: int) -> None:
        """Rows ``r0:`` of a block of checkpoints ``start:`` (values (rows, block))."""
        r1 = r0 + values.shape[0]
        cols = np.broadcast_to(np.arange(start, start + values.shape[1]), values.shape)
        both = np.concatenate([self.values[r0:r1], values], axis=1)
        both_cols = np.concatenate([self.cols[r0:r1], cols], axis=1)
        # NOTE: NaN (a resample left out of the confidence set) sorts last: never kept
        top = np.argpartition(-both, EXTREMES - 1, axis=1)[:, :EXTREMES]
        self.values[r0:r1] = np.take_along_axis(both, top, axis=1)
        self.cols[r0:r1] = np.take_along_axis(both_cols, top, axis=1)

    def best(self, member: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per resample, the largest kept value of a ``member`` checkpoint, and whether one
        was kept (else the largest over the members is not known here)."""
        alive = (self.cols >= 0) & member[np.maximum(self.cols, 0)]
        return np.where(alive, self.values, -np.inf).max(axis=1), alive.any(axis=1)


def block_width(resamples: int) -> int:
    """Checkpoints a block of this path computes at once (their in-bag and out-of-bag
    values within :data:`STREAM_BYTES`)."""
    return max(1, STREAM_BYTES // (2 * 8 * resamples))


def weighted_in_blocks(
    rows: RowData, w: np.ndarray, spec: MetricSpec, task: str, event: int | None, resamples: int
) -> np.ndarray:
    """:func:`~ckptaudit.stats.weighted.weighted_values`; of a :data:`BLOCKED_KINDS` form,
    in the aligned blocks of :func:`block_width` checkpoints that :func:`draws` computes, so
    that a checkpoint's values are the same bits on the in-memory path
    (:func:`ckptaudit.stats.selection._resampled_now`) and this one."""
    width = block_width(resamples)
    count = rows.data.shape[0]
    if rows.kind not in BLOCKED_KINDS or count <= width:
        return weighted_values(rows, w, spec, task, event)
    out = np.empty((w.shape[0], count))
    for start in range(0, count, width):
        part = replace(rows, data=rows.data[start : start + width])
        out[:, start : start + width] = weighted_values(part, w, spec, task, event)
    return out


def column_values(
    rows: RowData, cols: np.ndarray | slice, spec: MetricSpec, task: str, resamples: int, rng, state, event
) -> tuple[np.ndarray, np.ndarray]:
    """In-bag and out-of-bag values of checkpoints ``cols`` (a slice, or ascending
    indices) under the run's weights, the generator set to ``state`` before each draw: an
    exact form's computed for those columns alone; a :data:`BLOCKED_KINDS` form's from
    the aligned blocks that hold them, so each is the very value the run's whole pass
    gives it (the run itself where it is one block: values the selection remembered)."""
    from .selection import _resampled

    count = rows.data.shape[0]
    picked = np.arange(count)[cols]
    width = block_width(resamples)
    if picked.shape[0] == count or rows.kind not in BLOCKED_KINDS:
        part = rows if picked.shape[0] == count else replace(rows, data=rows.data[cols])
        rng.bit_generator.state = copy.deepcopy(state)
        return _resampled(part, spec, task, resamples, rng, event, exact=True)
    v_in = np.empty((resamples, picked.shape[0]))
    v_out = np.empty((resamples, picked.shape[0]))
    for start in np.unique(picked // width) * width:
        inside = (picked >= start) & (picked < start + width)
        block = rows if count <= width else replace(rows, data=rows.data[start : start + width])
        rng.bit_generator.state = copy.deepcopy(state)
        b_in, b_out = _resampled(block, spec, task, resamples, rng, event, exact=True)
        if inside.all() and np.array_equal(picked, np.arange(start, start + b_in.shape[1])):
            return b_in, b_out  # (exactly one whole block: no copy)
        v_in[:, inside] = b_in[:, picked[inside] - start]
        v_out[:, inside] = b_out[:, picked[inside] - start]
    return v_in, v_out


def draws(
    rows: RowData,
    spec: MetricSpec,
    task: str,
    resamples: int,
    rng: np.random.Generator,
    event: int | None,
    sign: float,
    point: np.ndarray,
    w_local: int,
) -> Draws:
    """:func:`ckptaudit.stats.selection._draws` in blocks of checkpoints (same numbers)."""
    count = rows.data.shape[0]
    block = block_width(resamples)
    state = copy.deepcopy(rng.bit_generator.state)
    centre = sign * point
    best = np.full(resamples, -np.inf)
    picked = np.zeros(resamples, dtype=np.intp)
    oob_all = np.empty(resamples)
    any_finite = np.zeros(resamples, dtype=bool)
    finite = np.ones(resamples, dtype=bool)
    high = np.full(resamples, -np.inf)
    low = np.full(resamples, np.inf)
    intervals: list[tuple[float, float] | None] = []
    tops, bottoms = _Extremes(resamples), _Extremes(resamples)
    for start in range(0, count, block):
        stop = min(count, start + block)
        v_in, v_out = column_values(rows, slice(start, stop), spec, task, resamples, rng, state, event)
        # NOTE: in blocks of resamples, so that no temporary is as large as the block's values
        for r0 in range(0, resamples, _ROW_BLOCK):
            r1 = min(resamples, r0 + _ROW_BLOCK)
            part = v_in[r0:r1]
            ok = np.isfinite(part)
            oriented = np.where(ok, sign * part, -np.inf)
            at = oriented.argmax(axis=1)
            top = oriented[np.arange(r1 - r0), at]
            if start == 0:  # every value -inf: argmax over all of them picks the first
                oob_all[r0:r1] = v_out[r0:r1, 0]
            better = np.flatnonzero(top > best[r0:r1])  # NOTE: strictly: a tie stays with the earlier checkpoint
            best[r0 + better] = top[better]
            picked[r0 + better] = start + at[better]
            oob_all[r0 + better] = v_out[r0 + better, at[better]]
            any_finite[r0:r1] |= ok.any(axis=1)
            finite[r0:r1] &= ok.all(axis=1)
            oriented = sign * part
            oriented -= centre[None, start:stop]
            np.maximum(high[r0:r1], oriented.max(axis=1), out=high[r0:r1])
            np.minimum(low[r0:r1], oriented.min(axis=1), out=low[r0:r1])
            tops.add(r0, oriented, start)
            np.negative(oriented, out=oriented)  # exact: the smallest are the largest negated
            bottoms.add(r0, oriented, start)
        del v_out
        intervals += _all_percentiles(v_in)
        del v_in  # NOTE: before the next block's values are made, not after (two blocks held)
    first = (high - low)[finite]

    kept: list[tuple[np.ndarray, np.ndarray]] = []  # (columns, their oriented in-bag values)

    def ranges_of(alive: np.ndarray) -> np.ndarray:
        if alive.shape[0] == count:
            return first
        member = np.zeros(count, dtype=bool)
        member[alive] = True
        high_alive, high_ok = tops.best(member)
        low_alive, low_ok = bottoms.best(member)
        if (high_ok & low_ok)[finite].all():
            # NOTE: each resample's largest and smallest centred values over the checkpoints
            # still in the set are among the kept extremes: exact, nothing computed again
            return (high_alive + low_alive)[finite]
        if kept and np.isin(alive, kept[0][0]).all():
            cols, oriented = kept[0]
            return _ranges(oriented, centre[cols], np.searchsorted(cols, alive))
        if alive.shape[0] * resamples * 8 <= STREAM_BYTES:
            # NOTE: few enough left to hold: computed once, every later step reads them
            kept.clear()
            v_in, v_out = column_values(rows, alive, spec, task, resamples, rng, state, event)
            del v_out
            oriented = v_in[finite]
            oriented *= sign
            kept.append((alive.copy(), oriented))
            return _ranges(oriented, centre[alive], np.arange(alive.shape[0]))
        top = np.full(resamples, -np.inf)
        bottom = np.full(resamples, np.inf)
        for part in range(0, alive.shape[0], block):
            cols = alive[part : part + block]
            v_in, v_out = column_values(rows, cols, spec, task, resamples, rng, state, event)
            del v_out
            for r0 in range(0, resamples, _ROW_BLOCK):
                centred = sign * v_in[r0 : r0 + _ROW_BLOCK]
                centred -= centre[None, cols]
                np.maximum(top[r0 : r0 + _ROW_BLOCK], centred.max(axis=1), out=top[r0 : r0 + _ROW_BLOCK])
                np.minimum(bottom[r0 : r0 + _ROW_BLOCK], centred.min(axis=1), out=bottom[r0 : r0 + _ROW_BLOCK])
        return (top - bottom)[finite]

    if finite.any():
        members, pvalues, q = step_down(ranges_of, centre, w_local, int(np.count_nonzero(finite)))
    else:
        members, pvalues, q = [w_local], np.ones(count), None
    return Draws(oob_all, any_finite, finite, members, pvalues, q, intervals)
