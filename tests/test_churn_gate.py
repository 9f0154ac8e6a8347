"""The churn gate: `check --baseline` counts the answers a candidate breaks, overall and per
slice, and fails on max_negative_flip_rate / max_slice_regression (console script, exit codes)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest

from ckptaudit import Recorder
from ckptaudit.churn import compare, mcnemar_p
from ckptaudit.store.reader import read_run

SLICES = np.array(["land", "water", "marsh", "city"])
ROOT = Path(__file__).resolve().parents[1]


def _labels(seed=0, n=2000):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    g = SLICES[np.arange(n) % 4]
    base = np.where(rng.random(n) < 0.9, y, 1 - y)
    return y, g, base


def _one_checkpoint_run(path, y, g, pred, ids=None):
    rec = Recorder(path, task="binary", output="label")
    rec.save(0, val_target=y, val_output=pred, val_groups=g, val_ids=ids)
    rec.choose("epoch-0000")
    return path


def _planted(y, g, base, slice_name="water", rate=0.03):
    """The baseline's answers with ``rate`` of one slice's rows flipped from right to wrong."""
    cand = base.copy()
    in_slice = np.flatnonzero(g == slice_name)
    right = in_slice[base[in_slice] == y[in_slice]]
    k = int(round(rate * in_slice.size))
    cand[right[:k]] = 1 - y[right[:k]]
    return cand, k


def _console_script() -> str:
    """The `ckptaudit` script installed beside this interpreter (exit codes are tested through it)."""
    found = shutil.which("ckptaudit", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail(f"no ckptaudit console script beside {sys.executable}: install the project (pip install -e .)")
    return found


def _check(*args):
    # NOTE: PYTHONPATH makes the installed script import this checkout whatever the venv installed
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("CKPTAUDIT_DEBUG", None)
    return subprocess.run(
        [_console_script(), "check", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


def test_a_planted_slice_flip_fails_and_an_identical_copy_passes_through_the_console_script(tmp_path):
    y, g, base = _labels()
    baseline = _one_checkpoint_run(tmp_path / "deployed", y, g, base)
    cand, k = _planted(y, g, base)
    assert k == 15 and k / y.size < 0.01  # 3% of one slice: 0.75% overall, under the limit
    candidate = _one_checkpoint_run(tmp_path / "candidate", y, g, cand)
    same = _one_checkpoint_run(tmp_path / "same", y, g, base)
    common = ["--metric", "accuracy", "--fail-on", "never", "--max-negative-flip-rate", "0.01"]
    failed = _check(candidate, "--baseline", baseline / "checkpoints" / "epoch-0000", *common)
    assert failed.returncode == 1, failed.stderr + failed.stdout
    assert "FAIL  churn" in failed.stdout or "FAIL churn" in failed.stdout
    assert "3.00% on slice 'water' (15 of 500 rows) > max_negative_flip_rate 0.01" in failed.stdout
    assert "water: 500, 15 (3.00%)" in failed.stdout  # the per-slice table
    passed = _check(same, "--baseline", baseline / "checkpoints" / "epoch-0000", *common)
    assert passed.returncode == 0, passed.stderr + passed.stdout
    assert "0 negative and 0 positive flips of 2000 rows" in passed.stdout
    # the baseline as a run (its chosen checkpoint) and as a bare val.npz on the same rows
    for base_path in (baseline, baseline / "checkpoints" / "epoch-0000" / "val.npz"):
        assert _check(candidate, "--baseline", base_path, *common).returncode == 1
        assert _check(same, "--baseline", base_path, *common).returncode == 0


def test_json_reports_the_flips_per_slice_with_mcnemar(tmp_path):
    y, g, base = _labels(1)
    ids = np.arange(1000, 1000 + y.size)
    baseline = _one_checkpoint_run(tmp_path / "deployed", y, g, base, ids)
    cand, k = _planted(y, g, base, "city", 0.05)
    run = _one_checkpoint_run(tmp_path / "candidate", y, g, cand, ids)
    out = _check(run, "--baseline", baseline, "--metric", "accuracy", "--fail-on", "never", "--format", "json")
    assert out.returncode == 0, out.stderr  # no limit set: reported, not failed
    rule = next(r for r in json.loads(out.stdout)["rules"] if r["name"] == "churn")
    details = rule["details"]
    assert details["overall"]["negative_flips"] == k and details["overall"]["positive_flips"] == 0
    by = {s["group"]: s for s in details["slices"]}
    assert by["city"]["negative_flips"] == k and by["land"]["negative_flips"] == 0
    want_city = (base[g == "city"] == y[g == "city"]).mean() - (cand[g == "city"] == y[g == "city"]).mean()
    assert by["city"]["regression"] == pytest.approx(want_city)
    assert by["city"]["mcnemar_p"] == pytest.approx(binomtest(0, k, 0.5).pvalue)
    flipped = np.flatnonzero((base == y) & (cand != y))
    assert details["flips"] == [str(ids[i]) for i in flipped]


def test_max_slice_regression_fails_a_slice_that_lost_accuracy(tmp_path):
    y, g, base = _labels(2)
    baseline = _one_checkpoint_run(tmp_path / "deployed", y, g, base)
    cand, _ = _planted(y, g, base, "marsh", 0.04)
    run = _one_checkpoint_run(tmp_path / "candidate", y, g, cand)
    common = ["--baseline", baseline, "--metric", "accuracy", "--fail-on", "never"]
    assert _check(run, *common, "--max-slice-regression", "0.03").returncode == 1
    assert _check(run, *common, "--max-slice-regression", "0.05").returncode == 0


def test_a_baseline_on_other_rows_or_a_limit_without_baseline(tmp_path):
    y, g, base = _labels(3)
    other = _one_checkpoint_run(tmp_path / "other", y[:-1], g[:-1], base[:-1])
    run = _one_checkpoint_run(tmp_path / "candidate", y, g, base)
    bad = _check(run, "--baseline", other, "--metric", "accuracy", "--fail-on", "never")
    assert bad.returncode == 2 and "validated on other rows" in bad.stderr and "Traceback" not in bad.stderr
    assert len(bad.stderr.splitlines()) == 1 and bad.stderr.startswith("ckptaudit: error: ")
    alone = _check(run, "--metric", "accuracy", "--fail-on", "never", "--max-negative-flip-rate", "0.01")
    assert alone.returncode == 1 and "no --baseline was given" in alone.stdout
    nonsense = _check(run, "--baseline", other, "--metric", "accuracy", "--max-negative-flip-rate", "2")
    assert nonsense.returncode == 2 and "in [0, 1]" in nonsense.stderr


def test_a_checkpoint_of_the_same_run_as_baseline(tmp_path):
    y, g, base = _labels(4)
    cand, k = _planted(y, g, base, "land", 0.02)
    rec = Recorder(tmp_path / "run", task="binary", output="label")
    rec.save(0, val_target=y, val_output=base, val_groups=g)
    rec.save(1, val_target=y, val_output=cand, val_groups=g)
    run = read_run(tmp_path / "run")
    churn = compare(run, run.checkpoints[1], run.checkpoints[0].path)
    assert churn.overall.negative_flips == k and {s.group: s.negative_flips for s in churn.slices}["land"] == k


@pytest.mark.parametrize(("neg", "pos"), [(0, 0), (15, 0), (7, 3), (40, 60), (500, 480)])
def test_mcnemar_equals_scipy_exact_binomial(neg, pos):
    want = 1.0 if neg + pos == 0 else binomtest(neg, neg + pos, 0.5).pvalue
    assert mcnemar_p(neg, pos) == pytest.approx(want, rel=1e-9)
