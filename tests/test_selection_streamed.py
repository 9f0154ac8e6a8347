"""The selection bootstrap in blocks of checkpoints (issue 21: memory flat in checkpoints)
gives the very numbers of the in-memory path: same pick, out-of-bag values, confidence set
(every elimination step), p-values and intervals."""

from __future__ import annotations

import numpy as np
import pytest

from ckptaudit.metrics.spec import parse_metric
from ckptaudit.stats import selection, streamed


def _evaluation(metric: str, task: str, n: int, count: int, seed: int, positives: float = 0.3):
    rng = np.random.default_rng(seed)
    if task == "binary":
        y = (rng.random(n) < positives).astype(np.int64)
        # checkpoints of spread quality (several elimination steps), some exactly equal
        quality = np.repeat(np.linspace(0.2, 2.0, count // 2 + 1), 2)[:count]
        outs = [1 / (1 + np.exp(-(q * (2 * y - 1) + rng.normal(size=n)))) for q in quality]
        return selection.evaluate_arrays("binary", "probability", parse_metric(metric), y, [o.astype(np.float32) for o in outs])
    y = rng.integers(0, 4, n)
    outs = []
    for q in np.linspace(0.1, 1.5, count):
        z = rng.normal(size=(n, 4))
        z[np.arange(n), y] += q
        outs.append(z.astype(np.float32))
    return selection.evaluate_arrays("multiclass", "logit", parse_metric(metric), y, outs)


def _same(a, b) -> None:
    assert a == b  # frozen dataclasses: every value, interval, p-value and member


@pytest.mark.parametrize(
    ("metric", "task", "n", "positives"),
    [("accuracy", "binary", 300, 0.3), ("recall", "binary", 120, 0.04), ("f1", "multiclass", 400, 0.0)],
    ids=["accuracy", "recall-few-positives", "multiclass-f1"],
)
def test_blocks_of_checkpoints_give_the_in_memory_numbers(metric, task, n, positives, monkeypatch):
    evaluation = _evaluation(metric, task, n, 23, 3, positives)
    assert evaluation.rows is not None and evaluation.rows.kind == "confusion"
    whole = selection.select(evaluation, resamples=200, seed=7)
    assert not streamed.streams(evaluation.rows, 200)
    monkeypatch.setattr(streamed, "STREAM_BYTES", 2 * 8 * 200 * 4)  # blocks of 4 checkpoints
    assert streamed.streams(evaluation.rows, 200)
    blocked = selection.select(evaluation, resamples=200, seed=7)
    _same(blocked, whole)
    assert 1 < len(whole.tied_best) < 23 or whole.estimate is not None


def test_a_confidence_set_of_several_steps_is_the_same(monkeypatch):
    evaluation = _evaluation("accuracy", "binary", 2000, 40, 5)
    steps: list[int] = []
    real = streamed.step_down

    def counted(ranges_of, *args, **kwargs):
        def each(alive):
            steps.append(alive.shape[0])
            return ranges_of(alive)

        return real(each, *args, **kwargs)

    whole = selection.select(evaluation, resamples=300, seed=1)
    monkeypatch.setattr(streamed, "STREAM_BYTES", 2 * 8 * 300 * 7)
    monkeypatch.setattr(streamed, "step_down", counted)
    _same(selection.select(evaluation, resamples=300, seed=1), whole)
    assert len(steps) >= 2  # the later steps' ranges were computed again, in blocks


def test_the_trend_of_the_last_checkpoints_resamples_only_them(monkeypatch):
    """stopped-too-early's trend computes the last checkpoints' values alone (issue 21:
    every checkpoint's before): the same slope interval and p-value."""
    from ckptaudit.stats.trend import trend_at_end

    evaluation = _evaluation("accuracy", "binary", 300, 30, 9)
    asked: list[int] = []
    real = streamed.column_values

    def counted(rows, cols, *args):
        asked.append(len(cols))
        return real(rows, cols, *args)

    monkeypatch.setattr(streamed, "column_values", counted)
    alone = trend_at_end(evaluation, resamples=300, seed=2)
    assert asked == [5]  # the last checkpoints alone

    def every_column(rows, cols, spec, task, resamples, rng, state, event):
        rng.bit_generator.state = state
        v_in, v_out = selection._resampled(rows, spec, task, resamples, rng, event)
        return v_in[:, cols], v_out[:, cols]

    monkeypatch.setattr(streamed, "column_values", every_column)
    assert alone is not None and alone == trend_at_end(evaluation, resamples=300, seed=2)


@pytest.mark.parametrize(
    ("metric", "n", "positives"),
    [("roc_auc", 1000, 0.3), ("roc_auc", 1000, 0.02), ("log_loss", 300, 0.3)],
    ids=["roc_auc", "roc_auc-few-positives", "log_loss"],
)
def test_mean_rows_in_blocks_give_the_in_memory_numbers(metric, n, positives, monkeypatch):
    """Mean-type rows (the linearised ROC AUC, losses) go through a float32 product whose
    sums round with its width: both paths compute them in the same aligned blocks, so the
    streamed bootstrap gives the in-memory numbers, bit for bit (several confidence-set
    steps included), and a run of one block is one product, as before."""
    evaluation = _evaluation(metric, "binary", n, 23, 4, positives)
    rows = evaluation.rows
    assert rows is not None and rows.kind == "mean"
    monkeypatch.setattr(streamed, "STREAM_BYTES", 2 * 8 * 200 * 5)  # blocks of 5 checkpoints
    assert streamed.block_width(200) == 5 and streamed.streams(rows, 200)
    blocked = selection.select(evaluation, resamples=200, seed=3)
    monkeypatch.setattr(streamed, "streams", lambda rows, resamples: False)
    _same(blocked, selection.select(evaluation, resamples=200, seed=3))
    assert 1 < len(blocked.tied_best) < 23


@pytest.mark.parametrize("metric", ["roc_auc", "average_precision"])
def test_exact_ranking_rows_in_blocks_give_the_in_memory_numbers(metric, monkeypatch):
    """The exact ROC AUC / average precision of a small validation set (computed checkpoint
    by checkpoint) streams in blocks with the in-memory numbers."""
    evaluation = _evaluation(metric, "binary", 300, 23, 8)
    rows = evaluation.rows
    assert rows is not None and rows.kind == "ranking"
    whole = selection.select(evaluation, resamples=200, seed=4)
    monkeypatch.setattr(streamed, "STREAM_BYTES", 2 * 8 * 200 * 6)
    assert streamed.streams(rows, 200)
    _same(selection.select(evaluation, resamples=200, seed=4), whole)
    assert 1 < len(whole.tied_best) < 23


def test_a_columns_values_do_not_depend_on_which_others_are_asked_for(monkeypatch):
    """:func:`streamed.column_values` of any columns equals those columns of the run's
    whole resampled values (the trend's last checkpoints, the confidence set's later steps)."""
    evaluation = _evaluation("roc_auc", "binary", 1000, 23, 6)
    rows = evaluation.rows
    assert rows is not None and rows.kind == "mean"
    monkeypatch.setattr(streamed, "STREAM_BYTES", 2 * 8 * 100 * 4)
    spec, task = evaluation.spec, "binary"
    state = np.random.default_rng(5).bit_generator.state
    rng = np.random.default_rng(5)
    whole_in, whole_out = selection._resampled_now(rows, spec, task, 100, rng, 1, False)
    for cols in ([0, 1, 2, 3], [3, 4, 9, 22], [21, 22], list(range(23)), [7]):
        v_in, v_out = streamed.column_values(rows, np.asarray(cols), spec, task, 100, rng, state, 1)
        assert np.array_equal(v_in, whole_in[:, cols], equal_nan=True)
        assert np.array_equal(v_out, whole_out[:, cols], equal_nan=True)
    # one product of all 23 rounds differently: what the blocks are for
    monkeypatch.setattr(streamed, "STREAM_BYTES", 2 * 8 * 100 * 23)
    one_in, _ = selection._resampled_now(rows, spec, task, 100, np.random.default_rng(5), 1, False)
    assert np.allclose(one_in, whole_in, rtol=1e-5, equal_nan=True)


def test_the_trend_of_mean_rows_is_the_same_from_blocks(monkeypatch):
    """stopped-too-early's trend reads the last checkpoints' values from their blocks
    (:func:`streamed.column_values`, tested bit for bit above): the trend of every
    column's values."""
    from ckptaudit.stats.trend import trend_at_end

    evaluation = _evaluation("roc_auc", "binary", 1000, 30, 9)
    monkeypatch.setattr(streamed, "STREAM_BYTES", 2 * 8 * 300 * 10)
    alone = trend_at_end(evaluation, resamples=300, seed=2)
    monkeypatch.setattr(streamed, "STREAM_KINDS", ())
    assert alone is not None and alone == trend_at_end(evaluation, resamples=300, seed=2)
