"""Every checkpoint's metric under many row-weight vectors at once (the one bootstrap engine).

Every value is a function of weighted sums: a confusion metric needs only each class's
weighted true-positive, predicted and actual counts and n
(:func:`~ckptaudit.metrics.kernels.from_counts`), computed by matrix products with 0/1
indicators (up to 8 classes; two to a float32 column under whole-count weights, exact) or
sparse ones (more; accuracy over many classes from per-row hits instead), never classes x
classes cells per resample; a resample without the metric's event class is read from the
same counts; a multilabel metric the same per label; R2 the sums of the squared residuals and
of the centred targets; mean losses a weighted mean; ROC AUC / average precision the exact
weighted re-ranking of :mod:`ckptaudit.stats.ranking_rows`.
"""

from __future__ import annotations

import numpy as np

from ..metrics import kernels as metrics
from ..metrics.spec import MetricSpec
from . import ranking_rows
from .rows import RowData
from .weights import _CHUNK_CELLS, whole_counts


def _ranking_values(rows: RowData, w: np.ndarray, spec: MetricSpec, task: str) -> np.ndarray:
    return ranking_rows.exact_values(rows.y.astype(bool), rows.data, w, rows.mode, spec.name)


#: up to this many classes, per-class weighted sums are matrix products with dense 0/1
#: indicators; above it, products with sparse ones
_DENSE_CLASSES = 8
#: float64 cells of the per-class count arrays one step of the confusion path holds
_COUNT_CELLS = 500_000


def _class_sums(w_t: np.ndarray, codes: np.ndarray, k: int, rows: np.ndarray | None = None) -> np.ndarray:
    """(B, k) sums of the weights over the rows of each class ``codes`` (N,) (only the
    rows where the boolean ``rows`` is true, when given), from the transposed weights
    ``w_t`` (N, B): a sparse 0/1 (k, N) matrix times ``w_t``, which adds whole rows of
    ``w_t`` in place (no B x N x k array, no gathered copy of the weights)."""
    from scipy import sparse  # a dependency of scikit-learn

    n = codes.shape[0]
    if rows is None:
        indices, indptr = codes, np.arange(n + 1)
    else:
        indices, indptr = codes[rows], np.r_[0, np.cumsum(rows)]
    onehot = sparse.csc_matrix((np.ones(indices.shape[0], dtype=np.float32), indices, indptr), shape=(k, n))
    return np.asarray(onehot @ w_t, dtype=np.float64).T


#: two 0/1 features share a float32 column as ``a + _PACK_BASE * b`` (whole weights over
#: fewer rows than this: every sum stays below 2^24, so exact)
_PACK_SHIFT = 12
_PACK_BASE = 1 << _PACK_SHIFT


def _packed(features: np.ndarray) -> np.ndarray:
    """0/1 ``features`` packed two to a float32 column (``A + 4096 B``: the first half, then
    the second), in columns rounded up to a multiple of 4 (see :func:`_exact_product`)."""
    width = features.shape[1]
    half = (width + 1) // 2
    packed = np.zeros((features.shape[0], -(-half // 4) * 4), dtype=np.float32)
    packed[:, : width - half] = features[:, half:]
    packed[:, : width - half] *= _PACK_BASE
    packed[:, :half] += features[:, :half]
    return packed


def _unpacked(product: np.ndarray, width: int) -> np.ndarray:
    """The sums of ``width`` features (float64) from the product of whole-count weights with
    their :func:`_packed` columns (exact, so recovered exactly)."""
    half = (width + 1) // 2
    sums = product[:, :half].astype(np.int64)
    out = np.empty((product.shape[0], width))
    out[:, :half] = sums & (_PACK_BASE - 1)
    out[:, half:] = sums[:, : width - half] >> _PACK_SHIFT
    return out


def _exact_product(w: np.ndarray, features: np.ndarray) -> np.ndarray:
    """``w @ features`` (float64) for whole-count weights ``w`` over fewer than
    :data:`_PACK_BASE` rows and 0/1 ``features``, with the features packed two to a column:
    half the product's width, in columns rounded up to a multiple of 4 (OpenBLAS's float32
    product of 2,000 x 1,000 by 1,000 x 12 took 0.96 ms, by 1,000 x 8 0.62; issue 21: the
    product was a fifth of an HPO sweep's `pick`). Each packed sum ``A + 4096 B`` is exact,
    so A and B are recovered exactly: the same counts as the plain product."""
    return _unpacked(w @ _packed(features), features.shape[1])


def _count_features(rows: RowData, group: np.ndarray) -> np.ndarray:
    """The 0/1 features whose weighted sums are :func:`_dense_counts`' counts: per counted
    class, each checkpoint's predictions of it, its true positives, the class's rows; then
    1 (n). Binary runs need only class 1's: class 0's counts follow from n."""
    k = rows.n_classes
    y = rows.y.astype(np.int64)
    data = rows.data[group]
    g = group.shape[0]
    classes = [1] if k == 2 else list(range(k))
    features = np.empty((y.shape[0], len(classes) * (2 * g + 1) + 1), dtype=np.float32)
    features[:, -1] = 1.0  # n, the weights' sum
    for i, j in enumerate(classes):
        hit = data == j
        at = i * (2 * g + 1)
        features[:, at : at + g] = hit.T
        hit &= (y == j)[None, :]
        features[:, at + g : at + 2 * g] = hit.T
        features[:, at + 2 * g] = y == j
    return features


def _counts_of(sums: np.ndarray, k: int, g: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_dense_counts`' counts from the weighted sums of :func:`_count_features`."""
    classes = [1] if k == 2 else list(range(k))
    tp = np.empty((sums.shape[0], g, k))
    predicted = np.empty_like(tp)
    actual = np.empty((sums.shape[0], k))
    for i, j in enumerate(classes):
        at = i * (2 * g + 1)
        predicted[:, :, j] = sums[:, at : at + g]
        tp[:, :, j] = sums[:, at + g : at + 2 * g]
        actual[:, j] = sums[:, at + 2 * g]
    n = sums[:, -1]
    if k == 2:
        predicted[:, :, 0] = n[:, None] - predicted[:, :, 1]
        actual[:, 0] = n - actual[:, 1]
        # rows predicted 0 less the positives among them
        tp[:, :, 0] = predicted[:, :, 0] - (actual[:, 1:2] - tp[:, :, 1])
    return tp, predicted, actual, n


def _dense_counts(rows: RowData, w: np.ndarray, group: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Weighted true-positive, predicted and actual counts, (B, len(group), K) and (B, K),
    and the weights' sums (B,)
    of a run with few classes: one (B, N) x (N, features) product of 0/1 indicators
    (float32 sums of 0/1 features are exact for integer weights)."""
    features = _count_features(rows, group)
    if whole_counts(w) and w.shape[1] < _PACK_BASE:
        sums = _exact_product(w, features)
    else:
        sums = (w @ features).astype(np.float64)
    return _counts_of(sums, rows.n_classes, group.shape[0])


def _sparse_counts(rows: RowData, w_t: np.ndarray, group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted true-positive and predicted counts, each (B, len(group), K), of a run with
    many classes, from the transposed weights ``w_t`` (N, B) by sparse 0/1 products (never K x K cells per resample:
    every confusion metric needs only the diagonal and the margins,
    :func:`~ckptaudit.metrics.kernels.from_counts`)."""
    k = rows.n_classes
    y = rows.y.astype(np.int64)
    tp = np.empty((w_t.shape[1], group.shape[0], k))
    predicted = np.empty_like(tp)
    for g, pred in enumerate(rows.data[group]):
        tp[:, g, :] = _class_sums(w_t, y, k, pred == y)
        # NOTE: a label run's prediction outside the run's classes is predicted as no class
        # of it (the kernel counts it in a column past them)
        inside = None if int(pred.max(initial=0)) < k else pred < k
        predicted[:, g, :] = _class_sums(w_t, pred.astype(np.int64), k, inside)
    return tp, predicted


def _hit_values(rows: RowData, w: np.ndarray) -> np.ndarray:
    """Every checkpoint's accuracy under each row-weight vector as the weighted mean of its
    per-row hits: one (B, N) x (N, checkpoints) product of 0/1 hits, in groups of
    checkpoints whose hits stay within a chunk's cells. The sum of the per-class true
    positives is the hits' sum, without two sparse products over the classes a checkpoint
    (issue 21: 56% of `pick -m accuracy` on 50,000 rows of 1,000 classes). Float32 sums of
    0/1 hits are exact under integer weights; under the rescaled Poisson weights of a large
    stratum they round as the per-class sums did, in another order (about 1e-6 of the value
    on 3,000 rows, either way)."""
    n = w.sum(axis=1, dtype=np.float64)
    c_count, n_rows = rows.data.shape
    out = np.empty((w.shape[0], c_count))
    per_group = max(1, _CHUNK_CELLS // max(n_rows, 1))
    y = rows.y
    for first in range(0, c_count, per_group):
        hits = (rows.data[first : first + per_group] == y[None, :]).T.astype(np.float32)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, first : first + per_group] = (w @ hits).astype(np.float64) / n[:, None]
    return out


def _absent(w: np.ndarray, codes: np.ndarray, event: int) -> np.ndarray:
    """Per weight vector, whether it puts no weight on a row of class ``event``."""
    return (w @ (codes == event).astype(w.dtype)) == 0


def dense_group_size(vectors: int, k: int, n_rows: int) -> int:
    """Checkpoints per group of the dense confusion path under ``vectors`` weight vectors:
    count arrays within :data:`_COUNT_CELLS`, and (N, 2 x group x classes) float32
    indicators about the weights' size at most."""
    return max(1, min(_COUNT_CELLS // max(vectors * k, 1), _CHUNK_CELLS // (4 * k * max(n_rows, 1))))


def _confusion_values(rows: RowData, w: np.ndarray, spec: MetricSpec, task: str, event: int | None = None) -> np.ndarray:
    """Every checkpoint's confusion metric under each row-weight vector, from weighted
    per-class counts (true positives, predicted, actual, n), in groups of checkpoints
    whose count arrays (and, with few classes, float32 indicators) stay bounded; NaN
    where a vector puts no weight on class ``event`` (read from the actual counts: zero
    exactly where the event's rows all weigh zero, as a product with them would say)."""
    k = rows.n_classes
    if k > _DENSE_CLASSES and spec.name == "accuracy" and task != "multilabel":
        values = _hit_values(rows, w)
        if event is not None:
            values[_absent(w, rows.y, event)] = np.nan
        return values
    c_count = rows.data.shape[0]
    n_rows = rows.data.shape[1]
    out = np.empty((w.shape[0], c_count))
    dense = k <= _DENSE_CLASSES
    n = None if dense else w.sum(axis=1, dtype=np.float64)
    w_t = None if dense else np.ascontiguousarray(w.T)
    actual = None if w_t is None else _class_sums(w_t, rows.y.astype(np.int64), k)
    per_group = dense_group_size(w.shape[0], k, n_rows) if dense else max(1, _COUNT_CELLS // max(w.shape[0] * k, 1))
    for first in range(0, c_count, per_group):
        group = np.arange(first, min(first + per_group, c_count))
        if dense:
            tp, predicted, actual, n = _dense_counts(rows, w, group)
        else:
            assert w_t is not None
            tp, predicted = _sparse_counts(rows, w_t, group)
        assert actual is not None and n is not None
        out[:, group] = metrics.from_counts(tp, predicted, actual[:, None, :], n[:, None], spec, task, rows.n_classes)
    if event is not None and actual is not None:
        out[actual[:, event] == 0] = np.nan
    return out


def _multilabel_values(rows: RowData, w: np.ndarray, spec: MetricSpec) -> np.ndarray:
    """Every checkpoint's per-label metric under each row-weight vector, from weighted
    per-label counts (true positives, predicted, actual, n) as matrix products."""
    labels = rows.n_classes
    y = rows.y.astype(np.float32)
    actual = (w @ y).astype(np.float64)
    n = w.sum(axis=1, dtype=np.float64)
    out = np.empty((w.shape[0], rows.data.shape[0]))
    both = np.empty((y.shape[0], 2 * labels), dtype=np.float32)
    for c, packed in enumerate(rows.data):
        both[:, :labels] = np.unpackbits(packed, axis=1, count=labels)
        np.multiply(both[:, :labels], y, out=both[:, labels:])
        sums = w @ both  # predicted, then true positives: one product
        out[:, c] = metrics.from_counts(sums[:, labels:], sums[:, :labels], actual, n, spec, "multilabel", labels)
    return out


def _r2_values(rows: RowData, w: np.ndarray) -> np.ndarray:
    """Every checkpoint's R2 under each row-weight vector, from weighted sums of the squared
    residuals and of the (centred) targets, with the kernel's rules for a constant target."""
    y = rows.y if rows.y.ndim == 2 else rows.y[:, None]
    centred = (y - y.mean(axis=0)).astype(np.float32)
    total = w.sum(axis=1, dtype=np.float64)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        ss_tot = (w @ (centred * centred)).astype(np.float64) - (w @ centred).astype(np.float64) ** 2 / total
    ss_tot = np.clip(ss_tot, 0.0, None)
    safe = ss_tot > 0
    out = np.empty((w.shape[0], rows.data.shape[0]))
    for c, res2 in enumerate(rows.data):
        ss_res = (w @ (res2 if res2.ndim == 2 else res2[:, None])).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            per = np.where(safe, 1 - ss_res / np.where(safe, ss_tot, 1.0), np.where(ss_res == 0, 1.0, 0.0))
        out[:, c] = per.mean(axis=1)
    if y.shape[0] < 2:
        out[:] = np.nan
    return out


def _ece_values(rows: RowData, w: np.ndarray) -> np.ndarray:
    """Every checkpoint's expected calibration error under each row-weight vector: per bin,
    the weighted sum of (hit - confidence), by a sparse (bins, N) product."""
    from scipy import sparse  # a dependency of scikit-learn

    n_rows = w.shape[1]
    w_t = np.ascontiguousarray(w.T, dtype=np.float64)
    total = w.sum(axis=1, dtype=np.float64)
    out = np.empty((w.shape[0], rows.data.shape[0]))
    for c, terms in enumerate(rows.data):
        bins = terms[:, 0].astype(np.int64)
        gaps = sparse.csc_matrix((terms[:, 1], bins, np.arange(n_rows + 1)), shape=(int(bins.max(initial=0)) + 1, n_rows))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, c] = np.abs(np.asarray(gaps @ w_t)).sum(axis=0) / total
    return out


def weighted_values(rows: RowData, w: np.ndarray, spec: MetricSpec, task: str, event: int | None = None) -> np.ndarray:
    """The metric of every checkpoint under each row-weight vector: (k, N) -> (k, C).
    Unit weights give the checkpoints' own values. With an ``event`` class (of an
    ungrouped run with classes), a vector that puts no weight on its rows gives NaN
    (undefined, not 0)."""
    if event is None or rows.group_div or rows.classes is None:
        return _values(rows, w, spec, task)
    if rows.kind == "confusion":  # (the counts say where the event is absent)
        return _confusion_values(rows, w, spec, task, event)
    values = _values(rows, w, spec, task)
    values[_absent(w, rows.classes, event)] = np.nan
    return values


def _values(rows: RowData, w: np.ndarray, spec: MetricSpec, task: str) -> np.ndarray:
    """:func:`weighted_values` without an event class."""
    if rows.group_div:  # slices: worst_group(M), M:group=NAME
        from .groupstats import grouped_values

        return grouped_values(rows, w, spec, task)
    if rows.kind == "confusion":
        return _confusion_values(rows, w, spec, task)
    if rows.kind == "ranking":
        return _ranking_values(rows, w, spec, task)
    if rows.kind == "multilabel":
        return _multilabel_values(rows, w, spec)
    if rows.kind == "r2":
        return _r2_values(rows, w)
    if rows.kind == "ece":
        return _ece_values(rows, w)
    total = w.sum(axis=1, keepdims=True)
    if rows.data.ndim == 3:  # rmse of several outputs: each output's root, averaged
        out = np.empty((w.shape[0], rows.data.shape[0]))
        for c, per_output in enumerate(rows.data):
            with np.errstate(invalid="ignore", divide="ignore"):
                out[:, c] = np.sqrt((w @ per_output).astype(np.float64) / total).mean(axis=1)
        return out
    # NOTE: divided and rooted in place: (k, C) float64 once, not three times (issue 21)
    means = (w @ rows.data.T).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        means /= total
        if rows.sqrt:
            np.sqrt(means, out=means)
    return means
