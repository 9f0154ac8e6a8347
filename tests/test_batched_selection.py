"""Issue 21: the selections of a sweep's runs that resample alike are computed in wide
products across runs (ckptaudit.stats.batched); every statistic is the one a run computes
alone, bit for bit, and runs that do not resample alike are left to themselves."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from ckptaudit.cli import app
from ckptaudit.metrics.spec import parse_metric
from ckptaudit.stats import batched, selection
from ckptaudit.store.recorder import Recorder


def _evaluations(text, task, n_runs, rows, k=2, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for r in range(n_runs):
        n = rows if isinstance(rows, int) else rows[r]
        y = rng.integers(0, k, n)
        if task == "binary":
            outputs = [np.clip(y * 0.3 + rng.random(n) * 0.7, 0, 1) for _ in range(4)]
            out.append(selection.evaluate_arrays("binary", "probability", parse_metric(text), y, outputs, name=f"r{r}"))
        else:
            outputs = [np.where(rng.random(n) < 0.6, y, rng.integers(0, k, n)) for _ in range(4)]
            out.append(
                selection.evaluate_arrays("multiclass", "label", parse_metric(text), y, outputs, name=f"r{r}", n_classes=k)
            )
    return out


@pytest.mark.parametrize(
    ("text", "task", "k"),
    [
        ("recall", "binary", 2),
        ("precision", "binary", 2),
        ("f1", "binary", 2),
        ("f1:average=macro", "multiclass", 4),
        ("mcc", "multiclass", 3),
    ],
)
def test_batched_selections_are_the_runs_own(text, task, k):
    evaluations = _evaluations(text, task, 7, 400, k)
    alone = [selection.select(ev, resamples=300, seed=3) for ev in evaluations]
    batched.precompute(evaluations, 300, 3)
    try:
        assert len(batched._PRECOMPUTED) == len(evaluations)  # every run batched
        together = [selection.select(ev, resamples=300, seed=3) for ev in evaluations]
    finally:
        batched.release()
    assert together == alone


def test_runs_that_do_not_resample_alike_are_left_alone():
    """Different validation sizes: no two runs share weights, so nothing is batched; a
    ranking metric (stratified by class, float sums) is never batched."""
    evaluations = _evaluations("recall", "binary", 3, [300, 301, 302])
    batched.precompute(evaluations, 200, 0)
    assert not batched._PRECOMPUTED
    batched.precompute(_evaluations("roc_auc", "binary", 3, 300), 200, 0)
    assert not batched._PRECOMPUTED


def test_a_value_kept_for_other_resampling_is_not_served():
    evaluations = _evaluations("recall", "binary", 3, 300)
    batched.precompute(evaluations, 200, 0)
    try:
        other = selection.select(evaluations[0], resamples=200, seed=1)  # another seed: its own draws
    finally:
        batched.release()
    assert other == selection.select(evaluations[0], resamples=200, seed=1)


def _sweep(root, n_runs=5, rows=300):
    rng = np.random.default_rng(7)
    for r in range(n_runs):
        y = (rng.random(rows) < 0.3).astype(np.int64)
        rec = Recorder(root / f"run-{r}", task="binary", output="probability")
        for epoch in range(4):
            rec.save(epoch, val_target=y, val_output=np.clip(y * (0.2 + 0.1 * epoch) + rng.random(rows) * 0.6, 0, 1))
    return root


@pytest.mark.parametrize("verb", [["pick"], ["audit"], ["rank", "--ci"]])
def test_a_sweep_gives_the_same_json_batched_or_not(tmp_path, monkeypatch, verb):
    root = _sweep(tmp_path / "sweep")
    args = [*verb, str(root), "-m", "recall", "--resamples", "200", "--format", "json"]
    runner = CliRunner()
    calls = []
    real = batched.precompute
    monkeypatch.setattr(batched, "precompute", lambda evs, *a: calls.append(len(evs)) or real(evs, *a))
    together = runner.invoke(app, args)
    monkeypatch.setattr(batched, "precompute", lambda *a: None)
    alone = runner.invoke(app, args)
    assert together.exit_code == alone.exit_code and together.exit_code in (0, 1), together.output
    assert calls and calls[0] == 5
    json.loads(together.stdout)
    assert _stamped_out(together.stdout) == _stamped_out(alone.stdout)


def _stamped_out(text: str) -> list[str]:
    """The output's lines but its time stamp (two commands may straddle a second)."""
    return [line for line in text.splitlines() if '"time"' not in line]


def test_resamples_without_the_event_class_are_undefined_batched_too():
    """Two positives in 60 rows: many out-of-bag draws hold none; precision there is NaN
    in a run's own selection and in the batched one alike."""
    rng = np.random.default_rng(8)
    evaluations = []
    for r in range(4):
        y = np.zeros(60, dtype=np.int64)
        y[[3 + r, 40]] = 1
        outputs = [np.clip(y * 0.5 + rng.random(60) * 0.6, 0, 1) for _ in range(4)]
        evaluations.append(selection.evaluate_arrays("binary", "probability", parse_metric("precision"), y, outputs))
    alone = [selection.select(ev, resamples=300, seed=0) for ev in evaluations]
    assert any(s.estimate is not None and s.estimate.skipped_draws for s in alone)
    batched.precompute(evaluations, 300, 0)
    try:
        assert len(batched._PRECOMPUTED) == 4
        together = [selection.select(ev, resamples=300, seed=0) for ev in evaluations]
    finally:
        batched.release()
    assert together == alone


def test_a_report_of_a_sweep_is_the_same_batched_or_not(tmp_path, monkeypatch):
    from ckptaudit.reporting import build_report

    root = _sweep(tmp_path / "sweep")
    calls = []
    real = batched.precompute
    monkeypatch.setattr(batched, "precompute", lambda evs, *a: calls.append(len(evs)) or real(evs, *a))
    together = build_report([root], ["recall"], resamples=200)
    monkeypatch.setattr(batched, "precompute", lambda *a: None)
    alone = build_report([root], ["recall"], resamples=200)
    assert calls == [5]
    import re

    from ckptaudit.render.html import render_report

    stamp = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC")
    assert stamp.sub("T", render_report(together)) == stamp.sub("T", render_report(alone))
