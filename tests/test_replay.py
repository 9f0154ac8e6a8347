"""``ckptaudit replay``: the rule grammar, Prechelt's criteria, smoothing, the regret from the
verdict's values (checked against scikit-learn), saved epochs and time, errors and --sweep."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from replay_runs import SEQUENCES, replayed, write_sequence_run
from sklearn.metrics import accuracy_score
from typer.testing import CliRunner

from ckptaudit.cli import app
from ckptaudit.errors import UsageError
from ckptaudit.replay import parse_rule
from ckptaudit.replay.rules import simulate, smooth

runner = CliRunner()


def _replay(*args):
    result = runner.invoke(app, ["replay", *[str(a) for a in args]])
    return result


def _accuracy(run, name):
    data = np.load(run / "checkpoints" / name / "val.npz")
    return accuracy_score(data["target"], data["output"] >= 0.5)


def test_regret_is_the_target_metric_gap_to_the_post_hoc_best(tmp_path):
    run = write_sequence_run(tmp_path / "run", SEQUENCES[0])
    result = _replay(run, "--rule", "patience=1", "--rule", "save_top_k=1", "--metric", "accuracy", "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    scores = {n: _accuracy(run, n) for n in names}
    best = max(names, key=lambda n: (scores[n], -names.index(n)))
    for row in doc["results"]:
        assert row["best"] == best
        assert row["shipped_value"] == pytest.approx(scores[row["shipped"]])
        assert row["regret"] == pytest.approx(scores[best] - scores[row["shipped"]])
        low, high = row["regret_ci95"]
        assert 0 <= low <= high
    patience = doc["results"][0]
    # patience=1 on [1.0, 0.9, 0.95, ...] stops at epoch 2 and ships epoch 1 (the best val_loss)
    assert (patience["stop_epoch"], patience["shipped"], patience["stopped"]) == (2, "epoch-0001", True)
    assert patience["epochs_saved"] == len(SEQUENCES[0]) - 1 - 2
    assert patience["seconds_saved"] == pytest.approx(10.0 * (len(SEQUENCES[0]) - 1 - 2))  # logged wall_time
    assert patience["not_trained"] == names[3:]


def test_the_post_hoc_best_has_zero_regret_and_lies_within_noise(tmp_path):
    run = write_sequence_run(tmp_path / "run", SEQUENCES[4])
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    scores = {n: _accuracy(run, n) for n in names}
    best = max(names, key=lambda n: (scores[n], -names.index(n)))
    monitor = [0.0 if n == best else 1.0 for n in names]  # a monitor that points at the best
    shutil.rmtree(run)
    run = write_sequence_run(tmp_path / "run", monitor)
    r = replayed(run, "keras:save_best_only")
    assert (r.shipped, r.regret, r.within_noise) == (best, 0.0, True)
    assert r.regret_ci95[0] == 0.0


@pytest.mark.parametrize(
    ("rule", "sequence", "stop"),
    [
        ("gl=5", [1.0, 0.8, 0.83, 0.85, 0.7], 3),  # GL(3) = 100 (0.85 / 0.8 - 1) = 6.25 > 5
        ("gl=10", [1.0, 0.8, 0.83, 0.85, 0.7], None),
        ("up=1,strip=2", [1.0, 0.9, 0.8, 0.95, 0.7, 0.6], 3),  # E(3) = 0.95 > E(1) = 0.9
        ("up=2,strip=2", [1.0, 0.9, 0.8, 0.95, 0.7, 0.96, 0.5, 0.4], 5),  # increases at strip ends 3 and 5
        ("up=2,strip=2", [1.0, 0.9, 0.8, 0.95, 0.7, 0.6, 0.5, 0.7], None),  # 3 up, 5 down, 7 up: never two in a row
    ],
)
def test_prechelt_gl_and_up_follow_the_definitions(rule, sequence, stop):
    out = simulate(parse_rule(rule), sequence, False, list(range(len(sequence))))
    assert out.stop == (len(sequence) - 1 if stop is None else stop)
    assert out.stopped == (stop is not None)
    upto = sequence[: out.stop + 1]
    assert out.shipped == upto.index(min(upto))


def test_prechelt_pq_divides_generalisation_loss_by_training_progress():
    val = [1.0, 0.8, 0.9, 0.95, 0.97, 0.99]
    train = [1.0, 0.5, 0.49, 0.488, 0.487, 0.4869]
    # strip of 3 ending at 2: GL = 12.5, P = 1000 ((1.0 + 0.5 + 0.49) / (3 * 0.49) - 1) = 353.7: 0.035
    # strip ending at 5: GL = 23.75, P = 1000 ((0.488 + 0.487 + 0.4869) / (3 * 0.4869) - 1) = 0.68: 34.9
    for alpha, stop in [(0.03, 2), (1.0, 5), (100.0, None)]:
        out = simulate(parse_rule(f"pq={alpha},strip=3"), val, False, list(range(6)), train)
        assert out.stop == (5 if stop is None else stop) and out.stopped == (stop is not None)


def test_ema_is_pandas_ewm_without_adjustment():
    values = [1.0, 0.5, 0.8, 0.3, 0.9, 0.2]
    assert smooth(values, 0.3) == pytest.approx(pd.Series(values).ewm(alpha=0.3, adjust=False).mean().tolist())


def test_an_ema_monitor_changes_when_patience_stops(tmp_path):
    noisy = [1.0, 0.8, 0.9, 0.7, 0.85, 0.6, 0.75, 0.55, 0.7, 0.5]
    run = write_sequence_run(tmp_path / "run", noisy)
    assert replayed(run, "patience=1").stop_epoch == 2
    smoothed = replayed(run, "patience=1,ema=0.3")
    assert smoothed.stop_epoch > 2 and smoothed.monitor == "val_loss (ema 0.3)"


@pytest.mark.parametrize(
    ("rule", "words"),
    [
        ("patiense=3", "did you mean 'patience'"),
        ("patience=x", "must be an integer"),
        ("hf:save_top_k=2", "hf rules have no option 'save_top_k'"),
        ("gl=5,up=2", "one of gl, pq, up"),
        ("mode=min", "neither stops nor keeps"),
        ("tf:patience=2", "unknown framework"),
        ("patience=2,ema=1.5", "ema is the weight"),
        ("patience=2,monitor=nope,mode=min", "no checkpoint logged 'nope'"),
    ],
)
def test_a_bad_rule_is_one_line_and_exit_2(tmp_path, rule, words):
    run = write_sequence_run(tmp_path / "run", SEQUENCES[0])
    result = _replay(run, "--rule", rule, "--metric", "accuracy")
    assert result.exit_code == 2
    assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_parse_rule_reads_flags_prefixes_and_numbers():
    spec = parse_rule("hf:save_total_limit=2,load_best_model_at_end,patience=3,threshold=0.01")
    assert spec.family == "hf" and spec.options == {
        "save_total_limit": 2,
        "load_best_model_at_end": True,
        "patience": 3,
        "threshold": 0.01,
    }
    assert parse_rule("pq=0.5,strip=5").family == "prechelt"
    with pytest.raises(UsageError):
        parse_rule("")


def test_sweep_ranks_rules_and_reports_a_broken_run(tmp_path):
    for i, seq in enumerate(SEQUENCES):
        write_sequence_run(tmp_path / "sweep" / f"run{i}", seq, seed=i)
    write_sequence_run(tmp_path / "sweep" / "broken", SEQUENCES[0], name="other")  # no val_loss logged
    rules = ["patience=1", "patience=3", "save_top_k=1"]
    args = [tmp_path / "sweep", "--sweep", "--metric", "accuracy", "--format", "json"]
    for r in rules:
        args += ["--rule", r]
    result = _replay(*args)
    assert result.exit_code == 2  # the broken run, after the table
    assert "broken" in result.stderr and "no checkpoint logged 'val_loss'" in result.stderr
    doc = json.loads(result.stdout)
    summaries = {s["rule"]: s for s in doc["rules"]}
    assert {s["runs"] for s in summaries.values()} == {len(SEQUENCES)}
    for rule, s in summaries.items():
        regrets = [r["regret"] for r in doc["results"] if r["rule"] == rule]
        assert s["mean_regret"] == pytest.approx(np.mean(regrets))
        assert s["regret_ci95"][0] <= s["mean_regret"] <= s["regret_ci95"][1]
    assert sorted(s["rank"] for s in summaries.values()) == [1, 2, 3]
    assert sum(s["p_best"] for s in summaries.values()) == pytest.approx(1.0)
    best = min(summaries.values(), key=lambda s: s["rank"])
    assert best["mean_regret"] == min(s["mean_regret"] for s in summaries.values())


def test_replay_table_lists_one_row_per_rule(tmp_path):
    run = write_sequence_run(tmp_path / "run", SEQUENCES[2])
    result = _replay(
        run, "-r", "patience=2", "-r", "gl=5", "-r", "hf:save_total_limit=2,load_best_model_at_end", "-m", "accuracy"
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert sum(str(run) in line and "post-hoc best" not in line for line in lines) == 3
    assert any("post-hoc best" in line for line in lines)
