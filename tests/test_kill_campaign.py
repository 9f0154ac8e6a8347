"""A randomised kill -9 campaign (issue 18, "Done when"): prune (weights only and --all),
Recorder.save, `rank --cache` while it builds the cache, and predict are each killed at a
random moment; every kept checkpoint must be whole, and the next command must recover
(finish the prune to exactly its plan, resume recording, rank as without a cache, predict
the rest).

Each class runs ``CKPTAUDIT_KILL_TRIALS`` trials (default 2, so the suite stays quick);
``CKPTAUDIT_KILL_TRIALS=25`` runs the full campaign (about 125 kills). Every trial prints a
line ``kill-campaign CLASS killed|finished``: ``pytest -s`` shows the counts.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ckptaudit.cli import app
from ckptaudit.store.reader import read_predictions, read_run
from tests.test_prune_safety import KEPT_OF_DOOMED, assert_oracle, digest, prune_json, sub

ROOT = Path(__file__).resolve().parents[1]
TRIALS = int(os.environ.get("CKPTAUDIT_KILL_TRIALS", "2"))
runner = CliRunner()


def spawn(*args: str, env: dict | None = None, script: str | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-c", script, *args] if script else [sys.executable, "-m", "ckptaudit", *args]
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.Popen(cmd, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def kill_after(proc: subprocess.Popen, delay: float) -> bool:
    """SIGKILL ``proc`` after ``delay`` seconds; True when it was still running (killed)."""
    deadline = time.time() + delay
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.005)
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert killed or proc.returncode == 0, err  # one that ended before the kill ended well
    return killed


def tally(kind: str, killed: bool) -> None:
    print(f"kill-campaign {kind} {'killed' if killed else 'finished'}")


# ------------------------------------------------------------------ prune


@pytest.mark.parametrize("mode", ["weights", "all"])
def test_kill_9_during_prune(copy_run, mode):
    rng = random.Random(f"prune-{mode}")
    extra = ["--all"] if mode == "all" else []
    for trial in range(TRIALS):
        run = copy_run("fraud", f"prune-{mode}-{trial}")
        args = ["-m", "recall", "--keep", "2", *extra]
        before, dry = digest(run), prune_json(run, *args)[0]
        proc = spawn("prune", str(run), *args, "--yes", env={"CKPTAUDIT_TEST_STEP_DELAY": "0.01"})
        killed = kill_after(proc, rng.uniform(0.5, 2.5))
        tally(f"prune-{mode}", killed)
        trash = run / "checkpoints" / ".ckptaudit-trash"
        for e in dry["entries"]:
            name, original = e["checkpoint"], sub(before, f"checkpoints/{e['checkpoint']}")
            here = run / "checkpoints" / name
            if e["action"] == "keep":
                assert digest(here) == original, name  # every kept checkpoint is whole
            elif mode == "weights":
                # predictions and meta stay in place; each weights file is whole, here or in trash
                assert {k: v for k, v in digest(here).items() if k in KEPT_OF_DOOMED} == {
                    k: v for k, v in original.items() if k in KEPT_OF_DOOMED
                }
                for rel, value in original.items():
                    if rel not in KEPT_OF_DOOMED:
                        places = [here / rel, trash / name / rel]
                        present = [p for p in places if p.exists()]
                        assert all(digest(p.parent)[p.name] == value for p in present), (name, rel)
            elif here.is_dir():
                assert digest(here) == original, name
        result = runner.invoke(app, ["prune", str(run), *args, "--yes"])  # the next prune recovers
        assert result.exit_code == 0, result.output
        assert_oracle(run, before, {**dry, "mode": mode})
        assert not trash.exists()


# ------------------------------------------------------------------ Recorder.save

SAVER = """
import sys
from pathlib import Path
import numpy as np
from ckptaudit import Recorder
run = Path(sys.argv[1])
rec = Recorder(run, task="binary", output="probability", resume=True)
y = np.array([0, 1, 0, 1, 1, 0, 0, 1])
for epoch in range(rec.next_epoch, rec.next_epoch + 40):
    blob = bytes([epoch % 256]) * 2_000_000
    def write(folder, blob=blob):
        with open(folder / "model.bin", "wb") as fh:
            for i in range(0, len(blob), 250_000):
                fh.write(blob[i:i + 250_000])
    rec.save(epoch, val_target=y, val_output=np.linspace(0.05, 0.95, 8), write=write, logged={"val_loss": 1.0 / (epoch + 1)})
"""


def _whole_checkpoints(run: Path) -> list[str]:
    parsed = read_run(run)
    for c in parsed.checkpoints:
        read_predictions(parsed, c)
        assert (c.path / "model.bin").read_bytes() == bytes([c.epoch % 256]) * 2_000_000, c.name
    return [c.name for c in parsed.checkpoints]


def test_kill_9_during_recorder_save(tmp_path):
    from ckptaudit import Recorder

    rng = random.Random("recorder")
    for trial in range(TRIALS):
        run = tmp_path / f"rec-{trial}"
        Recorder(run, task="binary", output="probability")
        killed = kill_after(spawn(str(run), script=SAVER), rng.uniform(0.4, 1.6))
        tally("recorder-save", killed)
        names = _whole_checkpoints(run)  # every checkpoint a reader sees is whole
        rec = Recorder(run, task="binary", output="probability", resume=True)  # the next writer recovers
        assert [p.name for p in (run / "checkpoints").iterdir() if p.name.endswith(".tmp")] == []
        y = np.array([0, 1, 0, 1, 1, 0, 0, 1])
        blob = bytes([rec.next_epoch % 256]) * 2_000_000
        rec.save(
            rec.next_epoch,
            val_target=y,
            val_output=np.linspace(0.05, 0.95, 8),
            write=lambda f, blob=blob: (f / "model.bin").write_bytes(blob),
        )
        assert _whole_checkpoints(run) == names + [f"epoch-{len(names):04d}"]
        assert runner.invoke(app, ["rank", str(run), "-m", "accuracy"]).exit_code == 0


# ------------------------------------------------------------------ rank --cache


def test_kill_9_during_rank_cache_build(copy_run):
    rng = random.Random("cache")
    for trial in range(TRIALS):
        run = copy_run("fraud", f"cache-{trial}")
        plain = runner.invoke(app, ["rank", str(run), "-m", "recall", "-m", "roc_auc", "--format", "json"]).stdout
        before = digest(run / "checkpoints")
        proc = spawn("rank", str(run), "-m", "recall", "-m", "roc_auc", "--cache")
        killed = kill_after(proc, rng.uniform(0.2, 1.1))
        tally("rank-cache", killed)
        assert digest(run / "checkpoints") == before
        for _ in range(2):  # rebuilds (or reads) the cache, then reads it: the same ranking
            again = runner.invoke(app, ["rank", str(run), "-m", "recall", "-m", "roc_auc", "--format", "json", "--cache"])
            assert again.exit_code == 0 and again.stdout == plain


# ------------------------------------------------------------------ predict


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    from tests import inference_models as im

    root = tmp_path_factory.mktemp("predict")
    im.train_plain(root / "weights")
    run = root / "run"
    pattern = f"{root / 'weights'}/model_epoch_*.pt"
    args = ["import", "files", pattern, str(run), "--task", "multiclass", "--epoch-pattern", "model_epoch_{epoch}.pt"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return run


def test_kill_9_during_predict(imported, tmp_path):
    models = ROOT / "tests" / "inference_models.py"
    rng = random.Random("predict")
    for trial in range(TRIALS):
        run = tmp_path / f"predict-{trial}"
        shutil.copytree(imported, run)
        weights = {k: v for k, v in digest(run / "checkpoints").items() if k.endswith(".pt")}
        args = ["predict", str(run), "--model", f"{models}:mlp", "--data", f"{models}:val_data", "--device", "cpu"]
        killed = kill_after(spawn(*args), rng.uniform(1.0, 8.0))
        tally("predict", killed)
        assert {k: v for k, v in digest(run / "checkpoints").items() if k.endswith(".pt")} == weights
        parsed = read_run(run)
        for c in parsed.checkpoints:
            if c.has_split("val"):
                read_predictions(parsed, c)  # any prediction file present is whole
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert runner.invoke(app, ["rank", str(run), "-m", "accuracy", "--format", "json"]).exit_code == 0
        assert len(json.loads(runner.invoke(app, ["rank", str(run), "-m", "accuracy", "--format", "json"]).stdout)) == 4
