"""Hangs and resource exhaustion (issue 18 §14): each case runs in a child process capped
in time and address space (tests/capped.py) and must end at once with exit 2 and one line
naming the problem, never a hang, a traceback or an internal error.

A FIFO or a device as a metrics log, a metrics log without line ends, a sparse run.json or
meta.json of gigabytes, a pool worker killed mid-task, an unreachable Ray cluster, and
options that would allocate without end (a billion ECE bins, a billion resamples, also
from a repository's ckptaudit.toml).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from tests.capped import assert_one_error_line, run_capped
from tests.runfiles import write_run

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "fixtures" / "runs"

#: what the torch-writing child leaves: Lightning-style .ckpt files, plain state dicts, a
#: user module with --model and --data functions
_MAKE = r"""
import os, sys, torch
from torch import nn
root = sys.argv[1]
os.makedirs(os.path.join(root, "lightning"))
for epoch in range(2):
    torch.save({"epoch": epoch, "global_step": 10 * (epoch + 1), "state_dict": {"w": torch.ones(2) * epoch}},
               os.path.join(root, "lightning", f"epoch={epoch}.ckpt"))
os.makedirs(os.path.join(root, "weights"))
for epoch in range(3):
    torch.manual_seed(epoch)
    torch.save(nn.Sequential(nn.Linear(3, 2)).state_dict(), os.path.join(root, "weights", f"model_epoch_{epoch}.pt"))
"""

USER_MODULE = """
import numpy as np


def data():
    x = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int64)


def model():
    from torch import nn

    return nn.Sequential(nn.Linear(3, 2))


def raising():
    from torch import nn

    class Raising(nn.Sequential):
        def forward(self, x):
            raise ValueError("the input has the wrong shape\\nsecond line of the message")

    return Raising(nn.Linear(3, 2))


def broken_builder():
    raise RuntimeError("cannot build the model")


def broken_data():
    raise OSError("no data here")
"""


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Framework files written by torch in a child (this process stays free of torch)."""
    root = tmp_path_factory.mktemp("made")
    subprocess.run([sys.executable, "-c", _MAKE, str(root)], check=True, timeout=120)
    (root / "usermod.py").write_text(USER_MODULE)
    return root


def unpredicted_run(made: Path, where: Path) -> Path:
    """A run of three checkpoints with weights and no predictions (what `import` writes)."""
    run = where / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"format": "ckptaudit/1", "task": "binary", "output": "logit"}))
    for epoch in range(3):
        folder = run / "checkpoints" / f"epoch-{epoch:04d}"
        folder.mkdir()
        (folder / "meta.json").write_text(json.dumps({"epoch": epoch}))
        shutil.copy(made / "weights" / f"model_epoch_{epoch}.pt", folder / "model.pt")
    return run


# --------------------------------------------------------------------------- import's metrics log


def test_import_refuses_an_auto_discovered_metrics_csv_that_is_a_fifo(made: Path, tmp_path: Path) -> None:
    src = tmp_path / "lightning"
    shutil.copytree(made / "lightning", src)
    os.mkfifo(src / "metrics.csv")
    result = run_capped(["import", "lightning", str(src), str(tmp_path / "run")], seconds=60)
    assert_one_error_line(result, "metrics.csv", "FIFO")
    assert not (tmp_path / "run").exists()


def test_import_refuses_a_device_as_metrics_csv(made: Path, tmp_path: Path) -> None:
    result = run_capped(["import", "lightning", str(made / "lightning"), str(tmp_path / "run"), "--metrics-csv", "/dev/zero"])
    assert_one_error_line(result, "/dev/zero", "character device")


def test_import_refuses_a_metrics_csv_without_line_ends(made: Path, tmp_path: Path) -> None:
    log = tmp_path / "metrics.csv"
    with open(log, "wb") as fh:
        fh.truncate(3 << 30)  # sparse: 3 GB of NUL bytes, no line end
    result = run_capped(["import", "lightning", str(made / "lightning"), str(tmp_path / "run"), "--metrics-csv", str(log)])
    assert_one_error_line(result, "metrics.csv", "line longer than")


# --------------------------------------------------------------------------- sparse JSON


@pytest.mark.parametrize("name", ["run.json", "checkpoints/epoch-0003/meta.json"])
@pytest.mark.parametrize("verb", ["rank", "check"])
def test_a_sparse_json_file_of_gigabytes_is_refused_from_its_size(name: str, verb: str, tmp_path: Path) -> None:
    run = tmp_path / "fraud"
    shutil.copytree(RUNS / "fraud", run)
    with open(run / name, "r+b") as fh:
        fh.truncate(3 << 30)
    args = [verb, str(run), "--metric", "recall"] + (["--resamples", "100"] if verb == "check" else [])
    result = run_capped(args, cwd=tmp_path, seconds=30)
    assert_one_error_line(result, name, "3,221,225,472 bytes", "CKPTAUDIT_MAX_JSON_BYTES")


def test_the_json_size_limit_follows_the_environment(tmp_path: Path) -> None:
    run = tmp_path / "fraud"
    shutil.copytree(RUNS / "fraud", run)
    size = (run / "run.json").stat().st_size
    low = run_capped(["rank", str(run), "-m", "recall"], env={"CKPTAUDIT_MAX_JSON_BYTES": str(size - 1)})
    assert_one_error_line(low, "run.json", f"holds {size} bytes")
    assert run_capped(["rank", str(run), "-m", "recall"], env={"CKPTAUDIT_MAX_JSON_BYTES": str(size)}).exit_code == 0


def test_a_fifo_as_the_cache_index_is_passed_over_not_read(tmp_path: Path) -> None:
    run = tmp_path / "fraud"
    shutil.copytree(RUNS / "fraud", run)
    (run / ".ckptaudit-cache").mkdir()
    os.mkfifo(run / ".ckptaudit-cache" / "index.json")
    plain = run_capped(["rank", str(run), "-m", "recall", "-f", "json"], seconds=30)
    cached = run_capped(["rank", str(run), "-m", "recall", "-f", "json", "--cache"], seconds=30)
    assert not cached.timed_out, "rank --cache blocked on the FIFO"
    assert (cached.exit_code, json.loads(cached.stdout)) == (0, json.loads(plain.stdout)), cached.stderr


# --------------------------------------------------------------------------- a dead pool worker

#: rank in a child whose first pool worker to take a block SIGKILLs itself there (as the
#: OOM killer would): the block it held is lost and multiprocessing never says so.
#: argv: the marker file, the module and function to wrap, then rank's arguments
_KILL_ONE_WORKER = r"""
import importlib, os, signal, sys
marker, module, name, args = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
target = importlib.import_module(module)
parent = os.getpid()
original = getattr(target, name)
def dying(*a, **k):
    if os.getpid() != parent:
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            pass
        else:
            os.close(fd)
            os.kill(os.getpid(), signal.SIGKILL)
    return original(*a, **k)
setattr(target, name, dying)
from ckptaudit.cli import app
app(args, prog_name="ckptaudit")
"""


@pytest.mark.parametrize(
    ("wrapped", "extra"),
    [
        (("ckptaudit.metrics.evaluation", "score_segment"), []),  # workers read and score
        (("ckptaudit.store.reader", "read_predictions"), ["--ci", "--resamples", "200"]),  # workers read ahead
    ],
    ids=["scoring", "read-ahead"],
)
def test_rank_finishes_with_the_same_output_when_a_worker_is_killed(
    wrapped: tuple[str, str], extra: list[str], tmp_path: Path
) -> None:
    rng = np.random.default_rng(5)
    y = (rng.random(400) < 0.3).astype(np.int64)
    for r in range(4):
        outs = [np.clip(y * 0.3 + rng.random(400) * 0.7, 0, 1).astype(np.float32) for _ in range(8)]
        write_run(tmp_path / "sweep" / f"run-{r}", "binary", "probability", y, outs)
    args = ["rank", str(tmp_path / "sweep"), "-m", "recall", "-m", "roc_auc", "--format", "json", *extra]
    alone = run_capped([*args, "--jobs", "1"], seconds=60)
    assert alone.exit_code == 0, alone.stderr
    marker = tmp_path / "killed"
    pooled = run_capped([str(marker), *wrapped, *args, "--jobs", "2"], code=_KILL_ONE_WORKER, seconds=60)
    assert marker.exists(), "no worker was killed: the test proves nothing"
    assert not pooled.timed_out, "rank waited for the dead worker's block forever"
    assert pooled.exit_code == 0, pooled.stderr[-2000:]
    assert json.loads(pooled.stdout) == json.loads(alone.stdout)


#: rank in a child that, once the workers have scored every block and wait for more (one
#: of them holding the task queue's lock), SIGKILLs them all: stopping the pool must not
#: wait for that lock for ever
_KILL_IDLE_WORKERS = r"""
import multiprocessing, os, signal, sys, time
from ckptaudit import parallel
original = parallel.ScorePool.outcomes
def outcomes(self, run):
    if not getattr(self, "_killed", False):
        self._killed = True
        time.sleep(2.0)  # every block is scored by now
        for child in multiprocessing.active_children():
            os.kill(child.pid, signal.SIGKILL)
        open(sys.argv[1], "w").close()
    return original(self, run)
parallel.ScorePool.outcomes = outcomes
from ckptaudit.cli import app
app(sys.argv[2:], prog_name="ckptaudit")
"""


def test_rank_finishes_when_idle_workers_are_killed(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    y = (rng.random(200) < 0.3).astype(np.int64)
    for r in range(3):
        write_run(tmp_path / "sweep" / f"run-{r}", "binary", "probability", y, [rng.random(200) for _ in range(6)])
    args = ["rank", str(tmp_path / "sweep"), "-m", "recall", "--format", "json"]
    alone = run_capped([*args, "--jobs", "1"], seconds=60)
    marker = tmp_path / "killed"
    pooled = run_capped([str(marker), *args, "--jobs", "2"], code=_KILL_IDLE_WORKERS, seconds=60)
    assert marker.exists()
    assert not pooled.timed_out, "stopping the pool waited for a dead worker's lock forever"
    assert pooled.exit_code == 0, pooled.stderr[-2000:]
    assert json.loads(pooled.stdout) == json.loads(alone.stdout)


# --------------------------------------------------------------------------- an unreachable Ray cluster


def _silent_server() -> tuple[socket.socket, int]:
    """A port that accepts connections and never answers (not a Ray cluster)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    return server, server.getsockname()[1]


@pytest.mark.parametrize("kind", ["refused", "silent", "malformed"])
def test_predict_with_ray_at_an_address_nothing_answers_ends_at_once(kind: str, made: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    run = unpredicted_run(made, tmp_path)
    server = None
    if kind == "refused":
        address, fragments = "127.0.0.1:1", ["--address 127.0.0.1:1", "no Ray cluster reachable"]
    elif kind == "silent":
        server, port = _silent_server()
        address, fragments = f"127.0.0.1:{port}", ["no Ray cluster reachable", "within 3 s"]
    else:
        address, fragments = "not:an:address", ["--address 'not:an:address'", "HOST:PORT"]
    mod = made / "usermod.py"
    try:
        result = run_capped(
            ["predict", str(run), "--model", f"{mod}:model", "--data", f"{mod}:data", "--engine", "ray", "--address", address],
            seconds=90,
            env={"CKPTAUDIT_RAY_CONNECT_TIMEOUT": "3"},
        )
    finally:
        if server is not None:
            server.close()
    assert_one_error_line(result, *fragments)
    assert not list(run.glob("checkpoints/*/val.npz"))


# --------------------------------------------------------------------------- unbounded options


def test_a_billion_ece_bins_is_refused(tmp_path: Path) -> None:
    result = run_capped(["rank", str(RUNS / "fraud"), "-m", "ece:bins=1000000000"], cwd=tmp_path, seconds=30)
    assert_one_error_line(result, "bins must be from 1 to 10,000")
    assert run_capped(["rank", str(RUNS / "fraud"), "-m", "ece:bins=10000"], cwd=tmp_path).exit_code == 0


@pytest.mark.parametrize(
    "verb",
    [["rank", "--ci"], ["audit"], ["pick"], ["check"], ["report", "-o", "page.html"], ["plot", "-o", "curves.png"]],
    ids=lambda v: v[0],
)
def test_a_billion_resamples_is_refused_by_every_verb(verb: list[str], tmp_path: Path) -> None:
    args = [verb[0], str(RUNS / "fraud"), "-m", "recall", *verb[1:], "--resamples", "1000000000"]
    result = run_capped(args, cwd=tmp_path, seconds=30)
    assert_one_error_line(result, "--resamples must be an integer from 100 to 100,000, got 1000000000")


def test_a_billion_resamples_in_the_repository_policy_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ckptaudit.toml").write_text('metric = "recall"\nresamples = 1000000000\n')
    result = run_capped(["check", str(RUNS / "fraud")], cwd=tmp_path, seconds=30)
    assert_one_error_line(result, "ckptaudit.toml", "`resamples` must be an integer from 100 to 100,000")
