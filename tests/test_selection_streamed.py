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
    alone = trend_at_end(evaluation, resamples=300, seed=2)
    monkeypatch.setattr(streamed, "STREAM_KINDS", ())
    assert alone is not None and alone == trend_at_end(evaluation, resamples=300, seed=2)
