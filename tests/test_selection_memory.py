"""The selection statistics' memory (issue 21): what grows with the number of checkpoints
is one (resamples, checkpoints) array of in-bag and out-of-bag values, nothing else of that
size beside it (before: the chunk's values and their concatenated copies, then oriented,
centred and partitioned copies: 1.2-1.5 GB at 20,000 checkpoints x 1,000 resamples)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from ckptaudit.metrics.spec import parse_metric
from ckptaudit.stats import selection


def _peak(metric: str, checkpoints: int, rows: int, resamples: int) -> int:
    rng = np.random.default_rng(0)
    y = (rng.random(rows) < 0.3).astype(np.int64)
    outputs = [
        (1 / (1 + np.exp(-(rng.standard_normal(rows) + y * (0.5 + 0.001 * k))))).astype(np.float32) for k in range(checkpoints)
    ]
    ev = selection.evaluate_arrays("binary", "probability", parse_metric(metric), y, outputs)
    del outputs
    tracemalloc.start()
    try:
        result = selection.select(ev, resamples=resamples, seed=0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.winner is not None and len(result.checkpoints) == checkpoints
    return peak


@pytest.mark.parametrize("metric", ["recall", "log_loss"])
def test_select_memory_grows_by_one_values_pair_per_checkpoint(metric: str) -> None:
    rows, resamples, small, large = 300, 400, 2000, 6000
    grown = _peak(metric, large, rows, resamples) - _peak(metric, small, rows, resamples)
    pair = 2 * resamples * (large - small) * 8  # in-bag and out-of-bag float64 values
    # NOTE: the bounded per-group temporaries of the weighted counts do not grow, a mean
    # metric's float32 product (half a pair) is freed before the rest; before
    # this change the growth was 3.5-4 pairs
    assert grown < 1.6 * pair, (grown / pair, metric)


def test_select_memory_of_a_label_metric_is_flat_in_checkpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 21: beyond a bound the bootstrap runs in blocks of checkpoints
    (:mod:`ckptaudit.stats.streamed`); what still grows is per checkpoint (its entry, its
    interval), a small fraction of the values pair."""
    from ckptaudit.stats import streamed

    monkeypatch.setattr(streamed, "STREAM_BYTES", 4 * 2**20)
    rows, resamples, small, large = 300, 400, 3000, 9000
    grown = _peak("recall", large, rows, resamples) - _peak("recall", small, rows, resamples)
    pair = 2 * resamples * (large - small) * 8
    assert grown < 0.25 * pair, grown / pair
