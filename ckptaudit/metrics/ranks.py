"""ROC AUC and average precision from one sort per score column, and their influence values.

Both metrics depend only on how each positive row's score places among the other rows'.
Each column is sorted once in its own dtype (numpy's SIMD sort; never a float64 stable
argsort), its positives' scores once more (a few of them in a one-vs-rest column), and
every count a metric needs comes from ``searchsorted`` on those sorted arrays, so tied
scores are handled exactly (average ranks for AUC, one threshold per distinct score for
average precision):

* ROC AUC is the Mann-Whitney ``U / (positives x negatives)``, where ``2U`` is the integer
  ``sum over positives of (negatives below + negatives at or below)``; the division is the
  same one as the old rank-sum kernel's, so values are bit for bit the same;
* average precision is scikit-learn's ``sum over thresholds of dR x P``: recall and
  precision at each distinct positive score come from ``#positives >= t`` and
  ``#rows >= t``, placed at that score's index among all distinct scores of the column
  and summed over all of them in the same order as before (zeros included), so the float
  sum is also unchanged.

Multiclass logits rank by their log-softmax, computed here a block of columns at a time
with the same arithmetic as :func:`ckptaudit.metrics.kernels._log_softmax` (identical
values), so a 1000-class checkpoint never holds a second float64 copy of its outputs.

Per-row influence values of both metrics, for the selection statistics, live in
:mod:`ckptaudit.metrics.influence`; a view on which it already computed a metric with its
influence (one sort per column) keeps that value, and :func:`value` returns it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ..errors import MetricError

if TYPE_CHECKING:
    from .spec import MetricSpec


class ScoreView(Protocol):
    """What this module reads of a checkpoint's predictions: the kernels' ``Prepared``
    satisfies it. A protocol rather than an import of ``kernels``, which imports this
    module: the rank arithmetic sits below the kernels, never beside them in a circle."""

    task: str
    y: np.ndarray
    n_classes: int
    logit: np.ndarray | None
    _cache: dict[object, np.ndarray]

    @property
    def score(self) -> np.ndarray: ...

    @property
    def proba64(self) -> np.ndarray: ...


#: columns of a multiclass/multilabel score matrix transposed (made contiguous) at once
_BLOCK_COLUMNS = 64
#: rows of a logit matrix turned into float64 at once for the log-softmax normaliser
_BLOCK_ROWS = 1024


# --------------------------------------------------------------------------- one column


def _sorted(pos: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted column, sorted positive scores)."""
    return np.sort(s), np.sort(s[pos])


def _runs(ps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each element of sorted ``ps``: the index where its run of equal values starts
    and where it ends (exclusive): searchsorted(ps, ps, "left") and "right", in O(n)."""
    starts = np.flatnonzero(np.r_[True, ps[1:] != ps[:-1]])
    lengths = np.diff(np.r_[starts, ps.shape[0]])
    first = np.repeat(starts, lengths)
    return first, np.repeat(starts + lengths, lengths)


def _left_right(ss: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """searchsorted(ss, keys, "left") and "right"; the second searched only for the keys
    that occur in ``ss`` (ties), so distinct scores cost one search."""
    left = np.searchsorted(ss, keys, "left")
    right = left.copy()
    found = np.flatnonzero(left < ss.shape[0])
    found = found[ss[left[found]] == keys[found]]
    if found.size:
        right[found] = np.searchsorted(ss, keys[found], "right")
    return left, right


def _auc_counts(ss: np.ndarray, ps: np.ndarray) -> np.ndarray:
    """Per sorted positive: 2 x (negatives below) + (negatives tied), as int64."""
    # NOTE: every positive occurs in ss, so "right" is left + 1 unless the next score ties
    all_left = np.searchsorted(ss, ps, "left")
    all_right = all_left + 1
    after = np.minimum(all_right, ss.shape[0] - 1)
    tied = np.flatnonzero((all_right < ss.shape[0]) & (ss[after] == ps))
    if tied.size:
        all_right[tied] = np.searchsorted(ss, ps[tied], "right")
    pos_left, pos_right = _runs(ps)
    return (all_left - pos_left) + (all_right - pos_right)


def auc(pos: np.ndarray, s: np.ndarray) -> float:
    """ROC AUC of a column: ``pos`` the positive rows' indices, ``s`` every row's score
    (NaN without rows of both classes)."""
    n = s.shape[0]
    n_pos = pos.shape[0]
    n_neg = n - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ss, ps = _sorted(pos, s)
    u2 = int(_auc_counts(ss, ps).sum())
    return float((u2 / 2) / (n_pos * n_neg))


def _ap_terms(ss: np.ndarray, ps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """At each distinct positive score t, ascending: (index of t in ss, #positives >= t,
    #rows >= t)."""
    first = np.flatnonzero(np.r_[True, ps[1:] != ps[:-1]])
    values = ps[first]
    tps = ps.shape[0] - first
    at = np.searchsorted(ss, values, "left")
    return at, tps, ss.shape[0] - at


def ap(pos: np.ndarray, s: np.ndarray) -> float:
    """Average precision of a column as scikit-learn defines it (0.0 without positives)."""
    n_pos = pos.shape[0]
    if n_pos == 0:
        return 0.0
    ss, ps = _sorted(pos, s)
    at, tps, above = _ap_terms(ss, ps)
    # every distinct score of the column is a threshold; only those with positives add
    repeats = np.flatnonzero(ss[1:] == ss[:-1]) + 1  # positions whose score repeats the previous one
    count = ss.shape[0] - repeats.shape[0]
    index = at - np.searchsorted(repeats, at)  # distinct scores below each positive threshold
    tp = tps[::-1].astype(np.float64)  # thresholds from the highest score down
    prec = tp / above[::-1].astype(np.float64)
    rec = tp / n_pos
    terms = np.zeros(count)
    terms[count - 1 - index[::-1]] = np.diff(np.r_[0.0, rec]) * prec
    return float(np.sum(terms))


# --------------------------------------------------------------------------- columns


def _log_softmax_normaliser(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row maxima and log(sum(exp(x - max))) by blocks of rows, with the arithmetic of
    ``kernels._log_softmax`` (so ``(x - max) - log_sum`` gives its values exactly)."""
    m = x.max(axis=1)
    log_sum = np.empty(x.shape[0])
    for start in range(0, x.shape[0], _BLOCK_ROWS):
        block = x[start : start + _BLOCK_ROWS].astype(np.float64)
        block -= m[start : start + _BLOCK_ROWS, None]
        np.exp(block, out=block)
        log_sum[start : start + _BLOCK_ROWS] = np.log(block.sum(axis=1))
    return m, log_sum


def _column_blocks(prep: ScoreView) -> Iterator[np.ndarray]:
    """The score matrix's columns, transposed a block at a time: (columns, rows) arrays."""
    width = prep.n_classes
    x = prep.logit if prep.task == "multiclass" and "logp" not in prep._cache else None
    if x is not None:
        # NOTE: kept on the view: the kernel and the statistics' per-row pass both need it
        if "log_softmax_rows" not in prep._cache:
            prep._cache["log_softmax_rows"] = np.stack(_log_softmax_normaliser(x))
        m, log_sum = prep._cache["log_softmax_rows"]
    else:
        scores = prep.score
    for start in range(0, width, _BLOCK_COLUMNS):
        stop = min(start + _BLOCK_COLUMNS, width)
        if x is None:
            yield np.ascontiguousarray(scores[:, start:stop].T)
            continue
        # NOTE: transposed in the stored precision, then (x - max) - log_sum in float64:
        # the same two roundings per element as kernels._log_softmax
        block = np.ascontiguousarray(x[:, start:stop].T).astype(np.float64)
        block -= m[None, :]
        block -= log_sum[None, :]
        yield block


def _positives(prep: ScoreView) -> list[np.ndarray]:
    """Each column's positive rows (multiclass: the rows of that class)."""
    if prep.task == "multiclass":
        y = prep.y
        order = np.argsort(y, kind="stable")
        bounds = np.searchsorted(y[order], np.arange(prep.n_classes + 1))
        return [order[bounds[i] : bounds[i + 1]] for i in range(prep.n_classes)]
    return [np.flatnonzero(prep.y[:, i]) for i in range(prep.y.shape[1])]


Column = tuple[np.ndarray, np.ndarray]  # (positive row indices, scores of every row)


def positives(y: np.ndarray) -> np.ndarray:
    """The rows of a binary run's positives (``y``: 0/1): a one-byte ``y`` is searched as
    bool, which numpy does 3-4x faster than as integers (issue 21)."""
    if y.dtype.itemsize == 1 and y.dtype.kind in "biu":
        return np.flatnonzero(y.view(bool))
    return np.flatnonzero(y)


def columns(prep: ScoreView, spec: MetricSpec) -> tuple[str, int, Callable[[], Iterator[Column]]]:
    """How ``spec`` combines score columns: (``"single"``, ``"macro"``, ``"weighted"`` or
    ``"micro"``, number of rows the influence covers, a function that yields the columns).

    Follows the kernels' conventions: a binary run's negative class ranks by ``-s`` (never
    ``1 - p``); micro pools every column into one ranking (multiclass logits as
    log-probabilities, which compare across columns).
    """
    s = prep.score if prep.task == "binary" else None
    n = prep.y.shape[0]
    if prep.task == "binary":
        assert s is not None
        if spec.class_index == 0:
            return "single", n, lambda: iter([(np.flatnonzero(prep.y == 0), -s)])
        pos = positives(prep.y)
        if spec.average in (None, "binary") or spec.class_index == 1:
            return "single", n, lambda: iter([(pos, s)])
        neg = np.flatnonzero(prep.y == 0)
        pair: list[Column] = [(neg, -s), (pos, s)]
        if spec.average == "micro":
            # NOTE: micro pools the two columns into one ranking, so their scores must
            # compare across columns: scikit-learn reads probabilities as [1 - p, p]; for
            # logits, -z is the log-odds of the negative class, which compares with z.
            if prep.logit is None:
                p = prep.proba64
                pooled = np.stack([1.0 - p, p], axis=1).ravel()
            else:
                pooled = np.stack([-s, s], axis=1).ravel()
            return "micro", n, lambda: iter([(np.r_[2 * neg, 2 * pos + 1], pooled)])
        return _average(spec), n, lambda: iter(pair)
    if spec.class_index is not None:
        i = spec.class_index
        col = prep.score[:, i]
        pos_i = np.flatnonzero(prep.y == i) if prep.task == "multiclass" else np.flatnonzero(prep.y[:, i])
        return "single", n, lambda: iter([(pos_i, np.ascontiguousarray(col))])
    average = _average(spec)
    if average == "micro":
        if prep.task == "multiclass":
            flat_pos = np.arange(n) * prep.n_classes + prep.y
        else:
            flat_pos = np.flatnonzero(prep.y.ravel())
        return "micro", n, lambda: iter([(flat_pos, prep.score.ravel())])

    def each() -> Iterator[Column]:
        positives = _positives(prep)
        i = 0
        for block in _column_blocks(prep):
            for col in block:
                yield positives[i], col
                i += 1

    return average, n, each


def column_matrix(prep: ScoreView, spec: MetricSpec) -> tuple[str, np.ndarray, np.ndarray]:
    """The columns :func:`columns` yields as matrices: (mode, positives (N, m) bool, scores
    (N, m) in their own dtype). A micro pool of m columns is reshaped to (N, m), element
    (r, j) being row r's score in column j, so row weights apply by rows. The selection
    statistics' exact per-row form of ROC AUC / average precision is these matrices: the
    same values the displayed metric ranks."""
    mode, n, each = columns(prep, spec)
    cols = list(each())
    if mode == "micro":
        pos, s = cols[0]
        width = s.shape[0] // max(n, 1)
        mask = np.zeros(s.shape[0], dtype=bool)
        mask[pos] = True
        return mode, mask.reshape(n, width), s.reshape(n, width)
    mask = np.zeros((n, len(cols)), dtype=bool)
    for j, (pos, _) in enumerate(cols):
        mask[pos, j] = True
    return mode, mask, np.stack([s for _, s in cols], axis=1)


def _average(spec: MetricSpec) -> str:
    average = spec.average or "macro"
    if average not in ("macro", "weighted", "micro"):
        raise MetricError(f"unknown average {average!r}")
    return average


#: key of a view's cache under which :mod:`ckptaudit.metrics.influence` keeps (shown value,
#: centred value, influence) of a metric: ``(INFLUENCE_KEY, spec.text)``
INFLUENCE_KEY = "influence"


def value(prep: ScoreView, spec: MetricSpec, binary: Callable[[np.ndarray, np.ndarray], float]) -> float:
    """The metric of a view: ``binary`` (:func:`auc` or :func:`ap`) on each column, averaged
    (or the value kept on the view with its influence: the same number, see
    :mod:`ckptaudit.metrics.influence`)."""
    kept = prep._cache.get((INFLUENCE_KEY, spec.text))
    if kept is not None:
        return kept[0]  # type: ignore[return-value]
    mode, _, each = columns(prep, spec)
    if mode in ("single", "micro"):
        pos, s = next(each())
        return binary(pos, s)
    per = []
    support = []
    for pos, s in each():
        per.append(binary(pos, s))
        support.append(pos.shape[0])
    values = np.array(per)
    if mode == "macro":
        return float(values.mean())
    weights = np.array(support, dtype=np.float64)
    if not weights.sum():
        return 0.0
    # NOTE: a class with no positive rows has weight 0 and is skipped (its own value is
    # undefined), as scikit-learn does.
    return float((np.where(weights > 0, values, 0.0) * weights).sum() / weights.sum())
