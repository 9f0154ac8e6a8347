"""Selection statistics batched across the runs of a sweep that resample alike (issue 21).

An HPO sweep's runs are often scored on validation sets of one size, with the same seed:
every run then draws the same row weights (:func:`~ckptaudit.stats.weights._weight_chunks`
remembers the matrix), and its confusion counts are one product of those weights with the
run's 0/1 features. One run's product is narrow (8 packed columns against 2,000 x 1,000
weights: OpenBLAS runs it at a fraction of its speed); the runs of a window together make one
wide product, and each run's counts, values and event mask are then computed as its own
selection would (:func:`~ckptaudit.stats.selection._resampled_now`). Whole-count weights
make every sum exact, so a run's counts are the same bits in any product: the statistics are
unchanged (tests/test_batched_selection.py). :func:`precompute` leaves each run's in-bag and
out-of-bag values where :func:`~ckptaudit.stats.selection._resampled` looks first;
:func:`release` drops them once the window's verdicts are built.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..metrics import kernels as metrics
from .gaussian import gaussian_ok
from .intervals import event_class
from .rows import RowData, RunEvaluation
from .weighted import _DENSE_CLASSES, _PACK_BASE, _count_features, _counts_of, _packed, _unpacked, dense_group_size
from .weights import _by_stratum, _state_key, _weight_chunks, whole_counts

#: packed feature columns of one wide product (a window's runs in as many products as this needs)
_PRODUCT_COLUMNS = 512

#: id(row data) -> (row data, resampling key, (in-bag, out-of-bag) values, generator state after)
_PRECOMPUTED: dict[int, tuple[RowData, tuple, tuple[np.ndarray, np.ndarray], Any]] = {}


def eligible(evaluation: RunEvaluation, resamples: int) -> bool:
    """Whether a run's selection would take the whole-count confusion path in one group of
    checkpoints (see :func:`~ckptaudit.stats.weighted._confusion_values`)."""
    rows = evaluation.rows
    if rows is None or rows.kind != "confusion" or rows.group_div or rows.n_classes > _DENSE_CLASSES:
        return False
    n_rows = rows.data.shape[1]
    if not 2 <= n_rows < _PACK_BASE or gaussian_ok(rows, resamples) or _by_stratum(rows, resamples) is not rows:
        return False
    from .streamed import streams

    if streams(rows, resamples):
        return False
    return rows.data.shape[0] <= dense_group_size(2 * resamples, rows.n_classes, n_rows)


def precompute(evaluations: Sequence[RunEvaluation], resamples: int, seed: int) -> None:
    """Compute the resampled values of every eligible run among ``evaluations`` that shares
    its strata with another, by wide products (see the module docstring)."""
    groups: dict[tuple, list[RunEvaluation]] = {}
    for ev in evaluations:
        if eligible(ev, resamples):
            assert ev.rows is not None
            groups.setdefault((ev.rows.strata.dtype.str, ev.rows.strata.tobytes()), []).append(ev)
    for evs in groups.values():
        if len(evs) < 2:
            continue
        rng = np.random.default_rng(seed)
        start = _state_key(rng.bit_generator.state)
        strata = evs[0].rows.strata  # type: ignore[union-attr]
        chunks = list(_weight_chunks(strata, resamples, rng, out_of_bag=True))
        if len(chunks) != 1 or not whole_counts(chunks[0]) or chunks[0].shape[0] != 2 * resamples:
            continue  # (several chunks, or rescaled weights: each run draws its own, as before)
        w, after = chunks[0], rng.bit_generator.state
        batch: list[tuple[RunEvaluation, np.ndarray, np.ndarray]] = []
        width = 0
        for ev in evs:
            assert ev.rows is not None
            features = _count_features(ev.rows, np.arange(ev.rows.data.shape[0]))
            packed = _packed(features)
            if batch and width + packed.shape[1] > _PRODUCT_COLUMNS:
                _finish(batch, w, resamples, start, after)
                batch, width = [], 0
            batch.append((ev, features, packed))
            width += packed.shape[1]
        _finish(batch, w, resamples, start, after)


def _finish(
    batch: list[tuple[RunEvaluation, np.ndarray, np.ndarray]], w: np.ndarray, resamples: int, start: Any, after: Any
) -> None:
    """One wide product for ``batch``, then each run's counts, values and event mask."""
    from .selection import _one_blas_thread

    with _one_blas_thread():  # (as the selection's own products: one process, one thread)
        product = w @ np.concatenate([packed for _, _, packed in batch], axis=1)
    at = 0
    for ev, features, packed in batch:
        rows, spec, task = ev.rows, ev.spec, ev.run.task
        assert rows is not None
        sums = _unpacked(product[:, at : at + packed.shape[1]], features.shape[1])
        at += packed.shape[1]
        tp, predicted, actual, n = _counts_of(sums, rows.n_classes, rows.data.shape[0])
        values = metrics.from_counts(tp, predicted, actual[:, None, :], n[:, None], spec, task, rows.n_classes)
        event = event_class(spec, task, rows.kind)
        if event is not None:
            values[actual[:, event] == 0] = np.nan
        key = (spec, task, resamples, event, False, start)
        _PRECOMPUTED[id(rows)] = (rows, key, (values[:resamples], values[resamples:]), after)


def precomputed(rows: RowData, key: tuple) -> tuple[tuple[np.ndarray, np.ndarray], Any] | None:
    """The values :func:`precompute` left for ``rows`` under resampling ``key``, and the
    generator state its draws leave (None: none)."""
    kept = _PRECOMPUTED.get(id(rows))
    if kept is None or kept[0] is not rows or kept[1] != key:
        return None
    return kept[2], kept[3]


def release() -> None:
    """Drop every precomputed value."""
    _PRECOMPUTED.clear()
