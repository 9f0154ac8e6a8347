"""The integrations record the validation rows' group column (``val_groups=``): a real tiny
Lightning training whose every val.npz carries it, and the per-slice metric reads it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("lightning")
from sklearn.metrics import accuracy_score  # noqa: E402
from test_integration_lightning import fit, loaders  # noqa: E402  (tests/ is on sys.path under pytest)

from ckptaudit.integrations.lightning import CkptauditCallback  # noqa: E402
from ckptaudit.slices import rank_by_group  # noqa: E402
from ckptaudit.store.reader import read_predictions, read_run  # noqa: E402


def test_the_lightning_callback_records_the_group_column(tmp_path):
    _, _, (xv, yv) = loaders()
    # a slice from the data itself: rows with a large first feature (mean radius) and the rest
    groups = np.where(xv[:, 0] > np.median(xv[:, 0]), "large", "small")
    run = tmp_path / "run"
    fit(tmp_path, CkptauditCallback(run, task="binary", output="logit", weights=None, val_groups=groups), epochs=2)
    r = read_run(run)
    assert len(r.checkpoints) == 2
    for ckpt in r.checkpoints:
        preds = read_predictions(r, ckpt, "val")
        assert preds.groups is not None and set(preds.groups) == {"group"}
        assert preds.groups["group"].tolist() == groups.tolist()
        assert preds.target.tolist() == yv.tolist()  # the labels line up with the rows they label
    rows = rank_by_group([run], "accuracy", resamples=100)
    last = r.checkpoints[-1]
    out = read_predictions(r, last, "val").output[:, 0] > 0
    for name in ("large", "small"):
        row = next(x for x in rows if x.checkpoint == last.name and x.group == name)
        assert row.rows == int((groups == name).sum())
        assert row.value == pytest.approx(accuracy_score(yv[groups == name], out[groups == name]))


def test_groups_of_the_wrong_length_fail_with_the_recorders_message(tmp_path):
    from ckptaudit.errors import RunFormatError

    _, _, (xv, _) = loaders()
    cb = CkptauditCallback(tmp_path / "run", task="binary", output="logit", weights=None, val_groups=np.zeros(len(xv) - 1, int))
    with pytest.raises(RunFormatError, match="group"):
        fit(tmp_path, cb, epochs=1)


def test_a_slice_metric_judges_a_run_whose_train_sample_has_no_groups(tmp_path):
    """The callbacks record the validation rows' groups only (``val_groups``): with a train
    sample beside them, `pick`, `audit` and `check` under a slice metric judge the run (no
    train value for the slice metric) instead of failing on train.npz's missing column.
    Through the installed console script, with its exit codes."""
    _, _, (xv, _) = loaders()
    groups = np.where(xv[:, 0] > np.median(xv[:, 0]), "large", "small")
    run = tmp_path / "run"
    cb = CkptauditCallback(run, task="binary", output="logit", weights=None, val_groups=groups, train_sample=64)
    fit(tmp_path, cb, epochs=3)
    r = read_run(run)
    assert all(c.has_split("train") for c in r.checkpoints)
    assert read_predictions(r, r.checkpoints[0], "train").groups is None
    exe = shutil.which("ckptaudit", path=str(Path(sys.executable).parent)) or pytest.fail("no ckptaudit console script")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("CKPTAUDIT_DEBUG", None)

    def console(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=300, stdin=subprocess.DEVNULL)

    metric = "worst_group(accuracy)"
    picked = console("pick", str(run), "-m", metric, "-f", "json")
    assert picked.returncode == 0, picked.stderr
    (doc,) = json.loads(picked.stdout)
    assert doc["metric"] == metric and doc["checkpoint"] in {c.name for c in r.checkpoints}
    audited = console("audit", str(run), "-m", metric, "-f", "json")
    assert audited.returncode in (0, 1) and "error:" not in audited.stderr, audited.stderr
    checked = console("check", str(run), "-m", metric, "--chosen", doc["checkpoint"])
    assert checked.returncode in (0, 1) and "error:" not in checked.stderr, checked.stderr
