"""Large validation sets: the resampled sums drawn from their exact Gaussian limit.

For sum-type metrics (confusion counts, mean losses) on large validation sets (rows x
resamples >= 2e7, every class and stratum >= 1000 rows, <= 256 summed features) the mean
and covariance of the in-bag and out-of-bag sums come from one rows x features^2 product,
so the cost no longer grows with rows x resamples x checkpoints (:func:`gaussian_ok`).
"""

from __future__ import annotations

import math

import numpy as np

from ..metrics import kernels as metrics
from ..metrics.spec import MetricSpec
from .rows import RowData, distinct_codes

#: the Gaussian path serves runs with at least this many rows x resamples ...
_GAUSSIAN_MIN_CELLS = 20_000_000
#: ... whose every class (stratum) has at least this many rows ...
_GAUSSIAN_MIN_STRATUM = 1000
#: ... and at most this many per-row features (checkpoints, x classes for multiclass)
_GAUSSIAN_MAX_FEATURES = 256
_OUT_OF_BAG = math.exp(-1.0)  # probability that a row is left out of a resample
#: rows of features the Gaussian path holds at once (up to it, one block: the sums, and so
#: every result, are bit for bit those of one product)
_GAUSSIAN_BLOCK_ROWS = 1_048_576
#: rows of 0/1 features (confusion metrics) the Gaussian path holds at once
_EXACT_BLOCK_ROWS = 16_384


def _count_classes(rows: RowData) -> list[int]:
    """The classes whose counts the Gaussian confusion path sums (binary: class 1 alone,
    class 0's counts follow from n)."""
    return [1] if rows.n_classes == 2 else list(range(rows.n_classes))


def _features(rows: RowData, sel: np.ndarray | slice, out: np.ndarray) -> None:
    """Write the compact per-row features of rows ``sel`` into ``out`` (rows, features):
    the loss values (mean metrics), or each checkpoint's predicted-class indicators
    (binary: class 1 only; else one-hot, column ``c x K + class``). Their second moments
    within each target class are all the confusion counts' covariance needs (:func:`_lift`)."""
    data = rows.data[:, sel]
    if rows.kind == "mean":
        out[...] = data.T
        return
    if rows.n_classes == 2:
        out[...] = data.T == 1
        return
    k = rows.n_classes
    out[...] = 0.0
    cols = np.arange(data.shape[0]) * k
    out[np.arange(out.shape[0])[:, None], cols[None, :] + data.T.astype(np.int64)] = 1.0


def _base_count(rows: RowData) -> int:
    c = rows.data.shape[0]
    return c if rows.kind == "mean" or rows.n_classes == 2 else c * rows.n_classes


def _feature_count(rows: RowData) -> int:
    """Width of the summed features (without the row count): mean metrics one per
    checkpoint; confusion metrics, per counted class, each checkpoint's predicted and
    true-positive counts and the class's actual count."""
    c = rows.data.shape[0]
    return c if rows.kind == "mean" else len(_count_classes(rows)) * (2 * c + 1)


def _lift(rows: RowData, t: int) -> np.ndarray:
    """The linear map from a row of target class ``t``'s features ``[_features, 1]`` to its
    summed features ``[per counted class j: predicted_j (C), true positives_j (C),
    actual_j; 1]`` (a true positive of class j is a prediction of j on a row of class j)."""
    c = rows.data.shape[0]
    k = rows.n_classes
    binary = k == 2
    width = _base_count(rows) + 1
    lift = np.zeros((_feature_count(rows) + 1, width))
    for i, j in enumerate(_count_classes(rows)):
        at = i * (2 * c + 1)
        base = np.arange(c) if binary else np.arange(c) * k + j
        lift[at + np.arange(c), base] = 1.0
        if t == j:
            lift[at + c + np.arange(c), base] = 1.0
            lift[at + 2 * c, width - 1] = 1.0
    lift[-1, width - 1] = 1.0
    return lift


def gaussian_ok(rows: RowData, resamples: int) -> bool:
    """Whether :func:`_gaussian_sums` serves this run: a sum-type metric (confusion counts or
    mean losses), a large validation set and no small class (nor stratum), where the
    bootstrap sums are Gaussian to within resampling error and exact weights would cost
    rows x resamples x checkpoints."""
    if rows.group_div:  # NOTE: grouped metrics (slices) take the exact weights
        return False
    if rows.kind not in ("confusion", "mean") or rows.data.ndim != 2 or rows.data.shape[1] * resamples < _GAUSSIAN_MIN_CELLS:
        return False
    if rows.kind == "confusion" and rows.classes is None:
        return False
    for groups in (rows.strata, rows.classes):
        if groups is None:
            continue
        counts = np.bincount(groups)
        if int(counts[counts > 0].min()) < _GAUSSIAN_MIN_STRATUM:
            return False
    return _base_count(rows) <= _GAUSSIAN_MAX_FEATURES


def _moments(rows: RowData, sel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Second moments and sums of ``[_features, 1]`` over rows ``sel``, in blocks of rows
    (so the features never take more than a block's memory)."""
    m = total = None
    # NOTE: 0/1 features sum exactly in float32 (below 2^24 rows), twice as fast as float64
    dtype = np.float64 if rows.kind == "mean" else np.float32
    contiguous = sel.shape[0] > 0 and int(sel[-1] - sel[0]) + 1 == sel.shape[0]
    # NOTE: 0/1 features sum exactly in any blocking, so they go in small blocks (the
    # features of 90,000 rows x 50 checkpoints were 18 MB at once, most of a `pick`'s peak
    # above its per-row data; issue 21); loss values keep one block up to its size, so that
    # their sums stay those of one product
    step = _EXACT_BLOCK_ROWS if dtype == np.float32 else _GAUSSIAN_BLOCK_ROWS
    for first in range(0, sel.shape[0], step):
        part = sel[first : first + step]
        # (written straight into the product's operand: no second block-sized copy, and a
        # slice rather than a gathered copy of the rows where the stratum is contiguous)
        z = np.empty((part.shape[0], _base_count(rows) + 1), dtype=dtype)
        _features(rows, slice(int(part[0]), int(part[-1]) + 1) if contiguous else part, z[:, :-1])
        z[:, -1] = 1.0
        block_m = (z.T @ z).astype(np.float64)
        # NOTE: 0/1 features' sums are the product's last row (the ones column), exact as
        # the sum itself, without a second pass over the block (issue 21)
        block_total = block_m[-1].copy() if dtype == np.float32 else z.sum(axis=0, dtype=np.float64)
        m = block_m if m is None else m + block_m
        total = block_total if total is None else total + block_total
    assert m is not None and total is not None
    return m, total


def _gaussian_sums(rows: RowData, resamples: int, rng: np.random.Generator):
    """Per stratum, (resamples, F+1) in-bag and out-of-bag feature sums (the last column is
    the row count), drawn from their exact joint mean and covariance under resampling
    within the stratum (out-of-bag membership to the Poisson approximation). A confusion
    metric's features carry each row's target class (:func:`_lift`), so the class mix
    varies as it does under the row bootstrap. Costs rows x F^2 once instead of rows x
    resamples x checkpoints."""
    pi = _OUT_OF_BAG
    for stratum in distinct_codes(rows.strata):
        sel = np.flatnonzero(rows.strata == stratum)
        n = sel.shape[0]
        if rows.kind == "mean":
            m, total = _moments(rows, sel)
        else:
            assert rows.classes is not None
            f_all = _feature_count(rows) + 1
            m, total = np.zeros((f_all, f_all)), np.zeros(f_all)
            for t in distinct_codes(rows.classes[sel]):
                m_t, total_t = _moments(rows, sel[rows.classes[sel] == t])
                lift = _lift(rows, int(t))
                m += lift @ m_t @ lift.T
                total += lift @ total_t
        outer = np.outer(total, total) / n
        centred = m - outer
        f = total.shape[0]
        cov = np.empty((2 * f, 2 * f))
        cov[:f, :f] = centred
        cov[:f, f:] = cov[f:, :f] = -pi * centred
        cov[f:, f:] = pi * (1 - pi) * m - pi * pi * outer
        vals, vecs = np.linalg.eigh(cov)
        scale = np.sqrt(np.clip(vals, 0.0, None))
        draws = (rng.standard_normal((resamples, 2 * f)) * scale) @ vecs.T
        mean = np.concatenate([total, pi * total])
        draws += mean
        yield int(stratum), draws[:, :f], draws[:, f:]


def gaussian_values(rows: RowData, spec: MetricSpec, task: str, resamples: int, rng: np.random.Generator):
    """In-bag and out-of-bag values (resamples, C) of every checkpoint from Gaussian sums."""
    c_count = rows.data.shape[0]
    k = rows.n_classes
    if rows.kind == "mean":
        sums = [np.zeros((resamples, c_count + 1)), np.zeros((resamples, c_count + 1))]
        for _, s_in, s_out in _gaussian_sums(rows, resamples, rng):
            sums[0] += s_in
            sums[1] += s_out
        out = []
        for s in sums:
            means = s[:, :-1] / s[:, -1:]
            out.append(np.sqrt(np.clip(means, 0.0, None)) if rows.sqrt else means)
        return out[0], out[1]
    # per-class counts (true positives, predicted, actual) of every checkpoint, in and out of bag
    f = _feature_count(rows)
    sums = [np.zeros((resamples, f + 1)), np.zeros((resamples, f + 1))]
    for _, s_in, s_out in _gaussian_sums(rows, resamples, rng):
        sums[0] += s_in
        sums[1] += s_out
    values = []
    for s in sums:
        s = np.clip(s, 0.0, None)
        n = s[:, -1]
        tp = np.zeros((resamples, c_count, k))
        predicted = np.zeros_like(tp)
        actual = np.zeros((resamples, k))
        for i, j in enumerate(_count_classes(rows)):
            at = i * (2 * c_count + 1)
            predicted[:, :, j] = s[:, at : at + c_count]
            tp[:, :, j] = np.minimum(s[:, at + c_count : at + 2 * c_count], predicted[:, :, j])
            actual[:, j] = s[:, at + 2 * c_count]
        if k == 2:
            predicted[:, :, 0] = np.clip(n[:, None] - predicted[:, :, 1], 0.0, None)
            actual[:, 0] = np.clip(n - actual[:, 1], 0.0, None)
            tp[:, :, 0] = np.clip(predicted[:, :, 0] - (actual[:, 1:2] - tp[:, :, 1]), 0.0, None)
        values.append(
            np.asarray(
                metrics.from_counts(tp, predicted, actual[:, None, :], n[:, None], spec, task, rows.n_classes), dtype=np.float64
            )
        )
    return values[0], values[1]
