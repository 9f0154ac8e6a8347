"""Writers that share a run, and outputs that must stay regular files (issue 18, items 5,
6 and 18): run.json updated under a lock by two real processes; the recorder's stale
temporaries cleared, a live one never; `pick --copy` and `report -o` never read or write a
device or write through a link."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from ckptaudit import Recorder
from ckptaudit.store.reader import read_run

ROOT = Path(__file__).resolve().parents[1]


def child(script: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert time.time() < deadline, f"timed out waiting for {path}"
        time.sleep(0.01)


def record(path: Path, epochs: int = 3) -> Path:
    rec = Recorder(path, task="binary", output="probability")
    y = np.array([0, 1, 0, 1, 1, 0])
    for epoch in range(epochs):
        rec.save(epoch, val_target=y, val_output=np.linspace(0.1, 0.9, 6))
    return path


# ------------------------------------------------------------------ 5. two writers on one run.json

WRITER = """
import sys, time
from pathlib import Path
from ckptaudit import Recorder
run, role, sync = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
rec = Recorder(run, task="binary", output="probability", resume=True)
(sync / f"{role}-ready").touch()
while not (sync / "go").exists():
    time.sleep(0.005)
if role == "trainer":
    rec.choose("epoch-0001")
    (sync / "chosen").touch()
    for _ in range(200):
        rec.choose("epoch-0001")
else:
    while not (sync / "chosen").exists():
        time.sleep(0.005)
    for i in range(200):
        rec.select_by("val_loss" if i % 2 else "val_auc", "min" if i % 2 else "max")
    rec.select_by("val_loss", "min")
"""


def test_two_processes_updating_run_json_never_lose_each_others_keys(tmp_path):
    run = record(tmp_path / "run")
    sync = tmp_path / "sync"
    sync.mkdir()
    procs = [child(WRITER, str(run), role, str(sync)) for role in ("trainer", "evaluator")]
    wait_for(sync / "trainer-ready")
    wait_for(sync / "evaluator-ready")  # both hold a copy of run.json without 'chosen'
    (sync / "go").touch()
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    final = read_run(run)
    assert final.chosen == "epoch-0001"  # the evaluator's stale copy did not erase it
    assert final.selected_by is not None and final.selected_by.metric == "val_loss"


# ------------------------------------------------------------------ 18. the recorder's stale temporaries

KILLED_SAVE = """
import sys, time
from pathlib import Path
import numpy as np
from ckptaudit import Recorder
run = Path(sys.argv[1])
rec = Recorder(run, task="binary", output="probability", resume=True)
def write(folder):
    (folder / "model.bin").write_bytes(b"w" * 1_000_000)
    (Path(sys.argv[2])).touch()
    time.sleep(600)
rec.save(rec.next_epoch, val_target=np.array([0, 1, 0, 1, 1, 0]), val_output=np.linspace(0.1, 0.9, 6), write=write)
"""


def test_a_killed_save_leaves_a_temporary_that_the_next_recorder_clears_but_never_a_live_one(tmp_path):
    run = record(tmp_path / "run")
    ckpts = run / "checkpoints"
    # a killed writer: its temporary stays behind with the weights
    proc = child(KILLED_SAVE, str(run), str(tmp_path / "writing-1"))
    wait_for(tmp_path / "writing-1")
    proc.kill()
    proc.communicate(timeout=60)
    stale = [p.name for p in ckpts.iterdir() if p.name.endswith(".tmp")]
    assert len(stale) == 1 and (ckpts / stale[0] / "model.bin").is_file()
    # a live writer, mid-save, and folders that are not the recorder's
    live = child(KILLED_SAVE, str(run), str(tmp_path / "writing-2"))
    wait_for(tmp_path / "writing-2")
    others = [ckpts / ".hf-upload.tmp", ckpts / "tmp-checkpoint-5", ckpts / ".epoch-0009.zzzzzzzz.tmp"]
    for folder in others:
        folder.mkdir()
        (folder / "data").write_bytes(b"someone else's")
    try:
        live_tmp = [p.name for p in ckpts.iterdir() if p.name.endswith(".tmp") and p.name != stale[0] and p not in others]
        assert len(live_tmp) == 1
        Recorder(run, task="binary", output="probability", resume=True)
        assert not (ckpts / stale[0]).exists()  # the dead writer's weights are gone
        assert (ckpts / live_tmp[0] / "model.bin").is_file()  # the live writer's are not
        assert all((folder / "data").read_bytes() == b"someone else's" for folder in others)
        assert [c.name for c in read_run(run).checkpoints] == ["epoch-0000", "epoch-0001", "epoch-0002"]
    finally:
        live.kill()
        live.communicate(timeout=60)


# ------------------------------------------------------------------ 6. devices and links


def _device(path: Path, major: int, minor: int) -> Path:
    try:
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(major, minor))
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot create a device node here: {exc}")
    return path


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "ckptaudit", *map(str, args)], env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize("kind", ["chardev", "fifo"])
def test_pick_copy_refuses_a_device_or_fifo_inside_the_winner(copy_run, tmp_path, kind):
    run = copy_run("fraud")
    winner = run / "checkpoints" / "epoch-0009"
    if kind == "chardev":
        _device(winner / "zero", 1, 5)  # /dev/zero: reads never end
    else:
        os.mkfifo(winner / "pipe")  # opening it for reading blocks forever
    try:
        result = cli("pick", run, "-m", "recall", "--copy", tmp_path / "export", timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("pick --copy did not end")
    assert result.returncode == 2 and "not a regular file" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "export").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".export")]


def test_report_output_onto_a_device_is_refused_and_the_device_stays(copy_run, tmp_path):
    run = copy_run("tiny-val")
    full = _device(tmp_path / "full", 1, 7)  # /dev/full
    result = cli("report", run, "-m", "accuracy", "-o", full)
    assert result.returncode == 2 and "not a regular file" in result.stderr
    assert stat.S_ISCHR(os.lstat(full).st_mode)


def test_report_never_writes_through_a_planted_temporary_link(copy_run, tmp_path):
    run = copy_run("tiny-val")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "r.html"
    os.symlink(victim, tmp_path / ".r.html.tmp")  # the predictable name of earlier versions
    result = cli("report", run, "-m", "accuracy", "-o", out)
    assert result.returncode == 0, result.stderr
    assert victim.read_text() == "precious"
    assert out.is_file() and not out.is_symlink() and out.read_text().startswith("<!")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".r.html") and p.name != ".r.html.tmp"] == []
