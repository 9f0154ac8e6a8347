"""Per-row influence values of ROC AUC and average precision, and the value from the same sort.

The selection statistics (:mod:`ckptaudit.stats.ranking_rows`) linearise these metrics in
the row weights: for weights ``w`` the metric is a smooth function ``V(w)``, and
``infl_r = dV/dw_r`` at ``w = 1`` (ROC AUC: the DeLong placement values,
``(V10_r - AUC) / n_pos`` for a positive row, ``(V01_r - AUC) / n_neg`` for a negative one;
average precision: the derivative of ``sum_p w_p TP_w(s_p) / All_w(s_p) / W_pos``). Both
metrics are unchanged by scaling all weights, so ``sum_r infl_r = 0``.

One sort per column serves both the influence and the displayed value (issue 21: the value
was a second sort of every column): :func:`remember` computes them together for a
checkpoint whose per-row data a pass keeps, and :func:`ckptaudit.metrics.ranks.value`
returns the remembered value. The displayed value is computed with the very operations of
:func:`ckptaudit.metrics.ranks.auc` / :func:`~ckptaudit.metrics.ranks.ap` (ROC AUC from the
same integer; average precision summing the same terms, zeros included, in the same order),
so it is bit for bit the value a plain ``rank`` shows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from .ranks import INFLUENCE_KEY, ScoreView, _left_right, _runs, ap, columns

if TYPE_CHECKING:
    from .spec import MetricSpec

#: (shown value, value the influence is centred on, influence per row) of one column
Triple = tuple[float, float, np.ndarray]


def _placements(ps: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every row: (#positives < s_r, #positives <= s_r)."""
    return _left_right(ps, s)


#: a column with at most this many positives places its rows by searching the sorted
#: positives (cheap while they fit in cache); with more, by one argsort of the column
_FEW_POSITIVES = 1024


def _argsort(s: np.ndarray) -> np.ndarray:
    """Any sorting permutation of ``s`` (ties in any order). float32 scores sort as one
    uint64 key (order-preserving score bits, row index below), numpy's SIMD sort, which is
    faster than an argsort."""
    if s.dtype != np.float32 or s.shape[0] >= 2**32 or np.dtype(np.intp).itemsize != 8:
        return np.argsort(s)
    bits = s.view(np.uint32)
    n = s.shape[0]
    key = np.empty(n, dtype=np.uint64)
    sign = np.uint32(0x80000000)
    # NOTE: built a block of rows at a time and cut to the row index in place: the key is
    # the only column-sized array (issue 21: 10^7 rows held five before)
    for start in range(0, n, _KEY_BLOCK):
        b = bits[start : start + _KEY_BLOCK]
        part = key[start : start + _KEY_BLOCK]
        part[...] = np.where(b & sign, ~b, b | sign)
        part <<= np.uint64(32)
        part |= np.arange(start, start + b.shape[0], dtype=np.uint64)
    key.sort()
    key &= np.uint64(0xFFFFFFFF)
    return key.view(np.intp)


#: rows per block of the sort key's construction
_KEY_BLOCK = 1 << 20


def _sorted(pos: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One sort of the column: (row order, positive flag of each sorted row, sorted scores)."""
    order = _argsort(s)
    mask = np.zeros(s.shape[0], dtype=bool)
    mask[pos] = True
    return order, mask[order], s[order]


class Runs(NamedTuple):
    """A sorted column cut into runs of tied scores."""

    order: np.ndarray  #: the rows in score order
    lengths: np.ndarray | None  #: rows per run (None: every run one row)
    flags: np.ndarray  #: whether each sorted row is positive
    gp: np.ndarray  #: positives per run
    gn: np.ndarray  #: negatives per run
    below: np.ndarray | None  #: rows below each run (None: every run one row: its index)
    through: np.ndarray | None  #: positives up to each run's end (None: every run one row)


def _groups(pos: np.ndarray, s: np.ndarray) -> Runs:
    """One sort of the column, cut into runs of tied scores."""
    return _tie_runs(*_sorted(pos, s))


def _tie_runs(order: np.ndarray, flags: np.ndarray, ss: np.ndarray) -> Runs:
    """:func:`_groups` from the sort of :func:`_sorted` (``ss`` is the caller's: freed)."""
    n = order.shape[0]
    distinct = np.empty(n, dtype=bool)
    distinct[:1] = True
    np.not_equal(ss[1:], ss[:-1], out=distinct[1:])
    del ss
    if distinct.all():
        # NOTE: no tied scores (the usual float column): each row is its own run, so the
        # runs' counts are the flags themselves (what the general path computes, without
        # its column-sized temporaries)
        # (int8: every sum and product below promotes them exactly, 1 byte a row, not 16)
        gp = flags.view(np.int8)
        gn = 1 - gp
        return Runs(order, None, flags, gp, gn, None, None)
    starts = np.flatnonzero(distinct)
    del distinct
    through = np.cumsum(flags)[np.r_[starts[1:] - 1, n - 1]]  # positives up to each run's end
    gp = np.diff(np.r_[0, through])
    lengths = np.diff(np.r_[starts, n])
    gn = lengths - gp
    return Runs(order, None if starts.shape[0] == n else lengths, flags, gp, gn, starts, through)


def _scatter(
    order: np.ndarray, lengths: np.ndarray | None, flags: np.ndarray, pos_value: np.ndarray, neg_value: np.ndarray
) -> np.ndarray:
    """Per-row values from per-run values of the positive and the negative rows (each
    per-run array is the caller's own: ``pos_value`` may be overwritten); ``lengths``: each
    run's rows (each value repeated for them: cheaper than an index of each row's run)."""
    if lengths is not None:
        pos_value, neg_value = np.repeat(pos_value, lengths), np.repeat(neg_value, lengths)
    np.copyto(pos_value, neg_value, where=~flags)
    del neg_value
    out = np.empty(order.shape[0])
    out[order] = pos_value
    return out


def auc_influence(pos: np.ndarray, s: np.ndarray) -> tuple[float, np.ndarray]:
    """ROC AUC of a column and each row's influence (DeLong placement values)."""
    _, value, infl = _auc_triple(pos, s)
    return value, infl


def _auc_triple(pos: np.ndarray, s: np.ndarray) -> Triple:
    """:func:`auc_influence` with the shown value first (the same number: the integer of
    :func:`ckptaudit.metrics.ranks.auc`, divided the same way)."""
    n = s.shape[0]
    n_pos = pos.shape[0]
    n_neg = n - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan"), float("nan"), np.zeros(n)
    if n_pos > _FEW_POSITIVES:
        order, flags, ss = _sorted(pos, s)
        tied = np.flatnonzero(ss[1:] == ss[:-1])  # sorted row i + 1 ties with row i
        if tied.shape[0] <= _FEW_TIES * n:
            del ss
            return _auc_by_row(order, flags, tied, n_pos, n_neg)
        order, lengths, flags, gp, gn, _, _ = _tie_runs(order, flags, ss)
        del ss
        # NOTE: the same integer and float operations as (2 neg_below + gn) / (2 n_neg) -
        # value) / n_pos and ((2 pos_above + gp) / (2 n_pos) - value) / n_neg, done in place
        # and freed as soon as used, so that few column-sized arrays live at once
        twice = np.cumsum(gn)
        twice -= gn  # negatives below each run
        twice *= 2
        twice += gn  # 2 x negatives below + negatives tied
        del gn
        value = float((int(np.dot(gp, twice)) / 2) / (n_pos * n_neg))
        v10 = twice / (2.0 * n_neg)  # share of negatives below (ties half)
        del twice
        v10 -= value
        v10 /= n_pos
        above = np.cumsum(gp)
        np.subtract(n_pos, above, out=above)  # positives above each run
        above *= 2
        above += gp
        del gp
        v01 = above / (2.0 * n_pos)  # share of positives above (ties half)
        del above
        v01 -= value
        v01 /= n_neg
        return value, value, _scatter(order, lengths, flags, v10, v01)
    # few positives: place every row among the sorted positives (no sort of the column)
    sp = s[pos]
    order = np.argsort(sp)
    ps, rows = sp[order], pos[order]
    left, right = _placements(ps, s)
    # a negative is below positive j when right <= j, tied with it when left <= j < right
    # (counted over all rows, then the positives' own placements taken out)
    below = np.cumsum(np.bincount(right, minlength=n_pos + 1) - np.bincount(right[rows], minlength=n_pos + 1))[:n_pos]
    tied_rows = np.setdiff1d(np.flatnonzero(left < right), rows, assume_unique=True)
    tied = np.cumsum(np.bincount(left[tied_rows], minlength=n_pos + 1) - np.bincount(right[tied_rows], minlength=n_pos + 1))
    twice_below = 2 * below + tied[:n_pos]
    value = float((int(twice_below.sum()) / 2) / (n_pos * n_neg))
    # negatives: the share of positives above them (ties half),
    # ((2 n_pos - left - right) / (2 n_pos) - value) / n_neg in two passes
    left += right
    infl = left * (-1.0 / (2.0 * n_pos * n_neg))
    infl += (1.0 - value) / n_neg
    # positives: the share of negatives below them (ties half)
    infl[rows] = (twice_below / (2.0 * n_neg) - value) / n_pos
    return value, value, infl


#: up to this share of sorted rows tied with the row before, ROC AUC's influence is
#: computed row by row and the tied rows mended after (a few ties, the usual float column);
#: with more, from the runs of tied scores (:func:`_tie_runs`)
_FEW_TIES = 0.25


def _auc_by_row(order: np.ndarray, flags: np.ndarray, tied: np.ndarray, n_pos: int, n_neg: int) -> Triple:
    """:func:`_auc_triple` of a sorted column with few ties, without its runs: the same
    integers and float operations per row (so the same bits), where the runs' counts and the
    gather back to rows cost 2 ms of 5 on 100,000 rows (issue 21). The ``k``-th positive (at
    sorted row ``rows[k]``) has ``rows[k] - k`` negatives below it; a negative between the
    ``k``-th and the next positive has ``n_pos - k`` positives above, the same for all of them,
    so the sorted rows' values are one repeat of the positives' and the gaps' values, no
    running count over the rows. :func:`_mend_ties` gives tied rows their runs' counts."""
    n = order.shape[0]
    rows = np.flatnonzero(flags)  # the sorted rows of the positives
    twice_below = rows - np.arange(n_pos)
    twice_below *= 2  # twice the negatives below each positive
    mended = _mend_ties(tied, rows, flags, twice_below, n_pos) if tied.shape[0] else None
    value = float((int(twice_below.sum()) / 2) / (n_pos * n_neg))
    v10 = twice_below / (2.0 * n_neg)  # share of negatives below (ties half)
    del twice_below
    v10 -= value
    v10 /= n_pos
    # the negatives of each gap (k positives below it): twice the positives above them
    twice_above = np.arange(n_pos, -1, -1, dtype=np.int64)
    twice_above *= 2
    v01 = twice_above / (2.0 * n_pos)  # share of positives above (ties half)
    v01 -= value
    v01 /= n_neg
    both = np.empty(2 * n_pos + 1)  # gap 0, positive 0, gap 1, ..., positive n_pos - 1, gap n_pos
    both[0::2] = v01
    both[1::2] = v10
    counts = np.ones(2 * n_pos + 1, dtype=np.intp)
    gaps = counts[0::2]  # negatives in each gap (a view: written in place)
    np.subtract(rows[1:], rows[:-1], out=gaps[1:-1])
    gaps[1:-1] -= 1
    gaps[0] = rows[0]
    gaps[-1] = n - 1 - rows[-1]
    sorted_values = np.repeat(both, counts)
    if mended is not None:  # the tied negatives' own shares of positives above
        at, twice = mended
        tied_v01 = twice / (2.0 * n_pos)
        tied_v01 -= value
        tied_v01 /= n_neg
        sorted_values[at] = tied_v01
    out = np.empty(n)
    out[order] = sorted_values
    return value, value, out


def _mend_ties(
    tied: np.ndarray, rows: np.ndarray, flags: np.ndarray, twice_below: np.ndarray, n_pos: int
) -> tuple[np.ndarray, np.ndarray]:
    """Give each tied sorted row its run's counts: a run of rows ``[a, b)`` has ``a - E(a)``
    negatives and ``E(a)`` positives below it, ``E(x)`` the positives before row ``x`` (a
    search among the positives' sorted rows ``rows``), so its positives get ``2 neg_below +
    gn = a - E(a) + b - E(b)`` (written into ``twice_below``) and its negatives ``2 pos_above
    + gp = 2 n_pos - E(a) - E(b)`` (returned: their sorted rows and those counts)."""
    with_prev = np.zeros(flags.shape[0] + 1, dtype=bool)
    with_prev[tied + 1] = True  # the row ties with the row before it
    # every row of a run longer than one (sorted and deduplicated by hand: np.union1d's
    # hashed unique costs more than the rest of the mend)
    at = np.concatenate([tied, tied + 1])
    at.sort()
    keep = np.empty(at.shape[0], dtype=bool)
    keep[0] = True
    np.not_equal(at[1:], at[:-1], out=keep[1:])
    at = at[keep]
    first = ~with_prev[at]
    run = np.cumsum(first) - 1
    a = at[first][run]
    b = (at[~with_prev[at + 1]] + 1)[run]
    e_a = np.searchsorted(rows, a)
    e_b = np.searchsorted(rows, b)
    positive = flags[at]
    twice_below[np.searchsorted(rows, at[positive])] = (a - e_a + b - e_b)[positive]
    negative = ~positive
    return at[negative], (2 * n_pos - e_a - e_b)[negative]


def ap_influence(pos: np.ndarray, s: np.ndarray) -> tuple[float, np.ndarray]:
    """Average precision of a column and each row's influence ``dAP/dw_r``: with
    ``prec(t) = TP(t) / All(t)`` (rows scoring >= t), a row r adds to ``All(t)`` of every
    threshold ``t <= s_r``, and a positive also to ``TP(t)`` and to the sum's own terms."""
    _, value, infl = _ap_triple(pos, s)
    return value, infl


def _ap_triple(pos: np.ndarray, s: np.ndarray) -> Triple:
    """:func:`ap_influence` with the shown value first: :func:`ckptaudit.metrics.ranks.ap`'s
    sum, term for term (the influence is centred on the mean of the same precisions, summed
    in another order: kept as it was, so the statistics do not move by a rounding)."""
    n = s.shape[0]
    n_pos = pos.shape[0]
    if n_pos == 0:
        return 0.0, 0.0, np.zeros(n)
    if n_pos <= _FEW_POSITIVES:
        return (ap(pos, s), *_ap_few(pos, s))
    order, lengths, flags, gp, gn, below, through = _groups(pos, s)
    del gn
    # NOTE: in place and freed as soon as used (10^7 rows held about a dozen column-sized
    # float64 arrays at once before, issue 21), with the same integer and float operations
    tp = np.cumsum(gp) if through is None else through  # (the runs' running sum: the same integers)
    del through
    tp -= gp
    np.subtract(n_pos, tp, out=tp)  # positives at or above each run's score
    # rows at or above each run's score: all but those below it (the same integers as the
    # positives above plus the negatives not below, without a second running sum)
    above = np.arange(n, 0, -1) if below is None else np.subtract(n, below)
    del below
    shown = _ap_shown(gp, tp, above, n_pos)
    above = above.astype(np.float64)  # (exact: each division below converted it anew)
    prec = tp / above
    del tp
    cum_b = gp * prec
    value = float(cum_b.sum() / n_pos)
    cum_a = gp / above
    np.cumsum(cum_a, out=cum_a)  # over thresholds t <= this run's score
    cum_b /= above
    del above, gp
    np.cumsum(cum_b, out=cum_b)
    prec -= value
    prec += cum_a
    del cum_a
    prec -= cum_b
    prec /= n_pos
    np.negative(cum_b, out=cum_b)
    cum_b /= n_pos
    return shown, value, _scatter(order, lengths, flags, prec, cum_b)


def _ap_shown(gp: np.ndarray, tp: np.ndarray, above: np.ndarray, n_pos: int) -> float:
    """:func:`ckptaudit.metrics.ranks.ap` from the runs of one sort: one term per distinct
    score, from the highest down, zero where the score has no positive row."""
    desc = np.flatnonzero(gp.astype(bool))[::-1]  # (as bool: numpy finds those 3x faster)
    tp_d = tp[desc].astype(np.float64)
    prec = tp_d / above[desc].astype(np.float64)
    rec = tp_d / n_pos
    terms = np.zeros(gp.shape[0])
    terms[gp.shape[0] - 1 - desc] = np.diff(np.r_[0.0, rec]) * prec
    return float(np.sum(terms))


def _ap_few(pos: np.ndarray, s: np.ndarray) -> tuple[float, np.ndarray]:
    """:func:`ap_influence` of a column with few positives: every row placed among the
    sorted positives (no sort of the column)."""
    n = s.shape[0]
    n_pos = pos.shape[0]
    sp = s[pos]
    order = np.argsort(sp)
    ps, rows = sp[order], pos[order]
    _, right = _placements(ps, s)
    # a row is below positive j when right <= j: #rows >= ps[j] = n - #rows below it
    above = n - np.cumsum(np.bincount(right, minlength=n_pos + 1))[:n_pos]
    # each sorted positive's precision at its own score: #pos >= t / #rows >= t
    pos_left, _ = _runs(ps)
    prec = (n_pos - pos_left) / above
    value = float(prec.mean())
    cum_a = np.r_[0.0, np.cumsum(1.0 / above)]
    cum_b = np.r_[0.0, np.cumsum(prec / above)]
    infl = -cum_b[right] / n_pos
    infl[rows] += (prec - value + cum_a[right[rows]]) / n_pos
    return value, infl


_TRIPLES: dict[object, Callable[[np.ndarray, np.ndarray], Triple]] = {
    "roc_auc": _auc_triple,
    "average_precision": _ap_triple,
    auc_influence: _auc_triple,
    ap_influence: _ap_triple,
}


def influence(
    prep: ScoreView, spec: MetricSpec, binary: Callable[[np.ndarray, np.ndarray], tuple[float, np.ndarray]]
) -> tuple[float, np.ndarray]:
    """The metric of a view and each row's influence on it (float64, shape (rows,)):
    ``binary`` is :func:`auc_influence` or :func:`ap_influence`; averages combine the
    columns' influences by the chain rule (weighted: supports move with the weights)."""
    _, value, infl = _combine(prep, spec, _TRIPLES[binary])
    return value, infl


def shown_and_influence(prep: ScoreView, spec: MetricSpec) -> Triple:
    """(the value :func:`ckptaudit.metrics.ranks.value` shows, the value the influence is
    centred on, each row's influence) of ROC AUC or average precision, one sort per column."""
    return _combine(prep, spec, _TRIPLES[spec.name])


def _combine(prep: ScoreView, spec: MetricSpec, binary: Callable[[np.ndarray, np.ndarray], Triple]) -> Triple:
    """The columns' triples combined: the shown values as :func:`ckptaudit.metrics.ranks.value`
    combines them, the centred values and influences by the chain rule."""
    mode, n, each = columns(prep, spec)
    if mode == "single":
        pos, s = next(each())
        return binary(pos, s)
    if mode == "micro":
        pos, s = next(each())
        shown, v, infl = binary(pos, s)
        return shown, v, infl.reshape(n, -1).sum(axis=1)
    total = np.zeros(n)
    per = []
    shown_per = []
    positives = []
    for pos, s in each():
        shown, v, infl = binary(pos, s)
        shown_per.append(shown)
        per.append(v)
        positives.append(pos)
        if mode == "macro":
            total += infl
        elif pos.shape[0]:
            total += pos.shape[0] * infl
    values = np.array(per)
    shown_values = np.array(shown_per)
    if mode == "macro":
        return float(shown_values.mean()), float(values.mean()), total / len(per)
    support = np.array([p.shape[0] for p in positives], dtype=np.float64)
    if not support.sum():
        return 0.0, 0.0, np.zeros(n)
    shown = float((np.where(support > 0, shown_values, 0.0) * support).sum() / support.sum())
    v = float((np.where(support > 0, values, 0.0) * support).sum() / support.sum())
    for pos, vi in zip(positives, values, strict=True):
        if pos.shape[0]:
            total[pos] += vi - v
    return shown, v, total / support.sum()


def _key(spec: MetricSpec) -> tuple[str, str]:
    return (INFLUENCE_KEY, spec.text)


def remember(prep: ScoreView, spec: MetricSpec) -> None:
    """Compute ``spec``'s value and influence on ``prep`` from one sort per column and keep
    them on the view: :func:`ckptaudit.metrics.ranks.value` then returns the value without
    sorting again, and :func:`recall` hands the influence to the per-row data. Once per
    view: a second call (another observer of the same pass) keeps the first."""
    if _key(spec) not in prep._cache:
        kept: Triple = shown_and_influence(prep, spec)
        prep._cache[_key(spec)] = kept  # type: ignore[assignment]
        if spec.name == "roc_auc" and _ranks_by_score(prep, spec):
            # the audit's "perfect ROC AUC" check, answered by this sort (issue 21)
            prep._cache[PERFECT_AUC_KEY] = kept[0] == 1.0  # type: ignore[assignment]


#: where :func:`remember` leaves whether a binary run's plain ROC AUC is exactly 1
PERFECT_AUC_KEY = "perfect_auc"


def _ranks_by_score(prep: ScoreView, spec: MetricSpec) -> bool:
    """Whether ``spec`` ranks a binary view's positives by its score, one column: the
    ROC AUC that is exactly 1 when every positive outscores every negative."""
    return prep.task == "binary" and spec.class_index in (None, 1) and spec.average in (None, "binary")


def perfect_auc(prep: ScoreView) -> bool | None:
    """Whether the binary view's plain ROC AUC, kept by :func:`remember`, is exactly 1
    (None: none kept)."""
    return prep._cache.get(PERFECT_AUC_KEY)  # type: ignore[return-value]


def shown(prep: ScoreView, spec: MetricSpec) -> float | None:
    """The value :func:`remember` kept for ``spec`` on ``prep`` (None: none kept)."""
    kept = prep._cache.get(_key(spec))
    return None if kept is None else kept[0]  # type: ignore[index]


def recall(prep: ScoreView, spec: MetricSpec) -> tuple[float, np.ndarray]:
    """(centred value, influence) of ``spec`` on ``prep``: the one :func:`remember` kept
    (taken off the view: the caller may change the array), else computed now."""
    kept = prep._cache.pop(_key(spec), None)
    if kept is None:
        kept = shown_and_influence(prep, spec)
    return kept[1], kept[2]  # type: ignore[index,return-value]
