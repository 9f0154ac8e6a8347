"""Both cores (issue 10): worker processes read and score checkpoints, and the output is
the one a single process gives: the same values, order, notes, errors and exit codes,
on healthy sweeps and on every kind of broken input a sweep can hold."""

from __future__ import annotations

import json
import os
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
from ckptaudit.errors import UsageError
from ckptaudit.parallel import JOBS_ENV, _blocks, auto_jobs, resolve_jobs
from ckptaudit.ranking import rank_checkpoints
from tests.runfiles import write_run

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _sweep(tmp: Path) -> Path:
    """Runs of every kind, healthy and broken, in one folder."""
    rng = np.random.default_rng(3)
    root = tmp / "sweep"
    y = (rng.random(300) < 0.3).astype(np.int64)
    for r in range(4):
        outs = [np.clip(y * 0.3 + rng.random(300) * 0.7, 0, 1).astype(np.float32) for _ in range(7)]
        write_run(root / f"bin-{r}", "binary", "probability", y, outs)
    # a changed validation set at epoch 4 (the run is left out, exit 2)
    changed = write_run(root / "changed", "binary", "probability", y, [rng.random(300)] * 6)
    y2 = y.copy()
    y2[:5] = 1 - y2[:5]
    np.savez(changed / "checkpoints" / "epoch-0004" / "val.npz", target=y2, output=rng.random(300))
    # the same targets stored as int32 at one checkpoint: not a change
    same = write_run(root / "int32", "binary", "probability", y, [rng.random(300)] * 5)
    np.savez(same / "checkpoints" / "epoch-0003" / "val.npz", target=y.astype(np.int32), output=rng.random(300))
    # an unreadable file, a non-finite output, a metrics-only checkpoint
    broken = write_run(root / "broken", "binary", "probability", y, [rng.random(300)] * 6)
    (broken / "checkpoints" / "epoch-0002" / "val.npz").write_bytes(b"not a zip")
    nan = rng.random(300)
    nan[7] = np.nan
    np.savez(broken / "checkpoints" / "epoch-0003" / "val.npz", target=y, output=nan)
    only = broken / "checkpoints" / "epoch-0005"
    (only / "val.npz").unlink()
    (only / "meta.json").write_text(json.dumps({"epoch": 5, "metrics_only": True, "logged": {"val_loss": 0.3}}))
    # a multiclass run (recall:class=3 does not exist in a 3-class run: an error there)
    y3 = rng.integers(0, 3, 200)
    probs = rng.dirichlet(np.ones(3), size=200)
    write_run(root / "multi", "multiclass", "probability", y3, [probs] * 5)
    # a run with no checkpoint, and a run.json that is not JSON
    (root / "empty" / "checkpoints").mkdir(parents=True)
    (root / "empty" / "run.json").write_text(json.dumps({"format": "ckptaudit/1", "task": "binary", "output": "probability"}))
    (root / "bad").mkdir()
    (root / "bad" / "run.json").write_text("{")
    return root


def _rank(args: list[str], jobs: int, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["rank", *args, "--jobs", str(jobs)], env=env)


@pytest.mark.parametrize(
    "metrics",
    [["recall"], ["roc_auc", "val_loss"], ["recall:class=1", "accuracy"], ["log_loss"]],
)
def test_rank_output_is_the_same_with_workers(tmp_path: Path, metrics: list[str]) -> None:
    root = _sweep(tmp_path)
    args = [str(root), *[a for m in metrics for a in ("-m", m)]]
    for fmt in ("json", "table"):
        one = _rank([*args, "-f", fmt], 1)
        for jobs in (2, 3):
            many = _rank([*args, "-f", fmt], jobs)
            assert many.exit_code == one.exit_code == 2  # the broken runs
            assert many.stdout == one.stdout
            assert many.stderr == one.stderr


def test_the_pooled_path_reports_the_changed_set_and_read_errors(tmp_path: Path) -> None:
    root = _sweep(tmp_path)
    ranking = rank_checkpoints([root], ["recall"], jobs=2)
    reasons = {s.run.rsplit("/", 1)[-1]: s.reason for s in ranking.skipped}
    assert "changed at epoch 4" in reasons["changed"] and "5 of 300 targets differ" in reasons["changed"]
    assert "int32" not in reasons  # equal values stored as another type are the same set
    assert any("not a zip" in p or "epoch-0002" in p for p in ranking.problems)
    single = rank_checkpoints([root], ["recall"], jobs=1)
    assert ranking.rows == single.rows and ranking.problems == single.problems and ranking.skipped == single.skipped


def test_an_error_past_the_first_block_is_raised_at_its_checkpoint(tmp_path: Path) -> None:
    # one big run split over several blocks, its validation set changing in a later block
    rng = np.random.default_rng(0)
    y = (rng.random(50) < 0.5).astype(np.int64)
    run = write_run(tmp_path / "long", "binary", "probability", y, [rng.random(50) for _ in range(40)])
    y2 = y.copy()
    y2[0] = 1 - y2[0]
    for e in (33, 34):
        np.savez(run / "checkpoints" / f"epoch-{e:04d}" / "val.npz", target=y2, output=rng.random(50))
    assert len(_blocks([40], 2)) > 2
    results = [runner.invoke(app, ["rank", str(run), "-m", "recall", "-j", str(j)]) for j in (1, 2)]
    assert results[0].exit_code == results[1].exit_code == 2
    assert results[0].stderr == results[1].stderr
    assert "changed at epoch 33" in results[1].stderr


def test_observers_get_a_read_ahead_and_cache_keeps_one_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ckptaudit.parallel as parallel

    started: list[tuple[int, bool]] = []
    real = parallel.ScorePool.__init__

    def counting(self, runs, specs, jobs, **kw):  # type: ignore[no-untyped-def]
        started.append((jobs, kw.get("read_only", False)))
        real(self, runs, specs, jobs, **kw)

    monkeypatch.setattr(parallel.ScorePool, "__init__", counting)
    root = _sweep(tmp_path)
    rank_checkpoints([root], ["recall"], jobs=2)
    assert started == [(2, False)]  # workers score
    rank_checkpoints([root], ["recall"], jobs=2, ci=True, resamples=100)
    assert started[1:] == [(2, True)]  # observers: workers only read ahead
    rank_checkpoints([root], ["recall"], jobs=2, cache=True)
    assert len(started) == 2  # --cache keeps one process
    monkeypatch.delenv(JOBS_ENV, raising=False)
    rank_checkpoints([root], ["recall"], ci=True, resamples=100)
    assert len(started) == 2  # no read-ahead unless asked for
    monkeypatch.setattr(parallel, "READ_AHEAD_MAX_FILE", 10)
    rank_checkpoints([root], ["recall"], jobs=2, ci=True, resamples=100)
    assert len(started) == 2  # big files are not sent back and forth


@pytest.mark.parametrize(
    "verb",
    [
        ["rank", "-m", "recall", "--ci", "--resamples", "200"],
        ["rank", "-m", "roc_auc", "--ci", "--resamples", "200", "-f", "json"],
        ["pick", "-m", "recall", "--resamples", "200", "-f", "json"],
        ["pick", "-m", "log_loss", "--resamples", "200"],
    ],
)
def test_read_ahead_gives_the_same_statistics(tmp_path: Path, verb: list[str]) -> None:
    root = _sweep(tmp_path)
    one = runner.invoke(app, [*verb, str(root), "-j", "1"])
    many = runner.invoke(app, [*verb, str(root), "-j", "2"])
    assert one.exit_code == many.exit_code == 2
    assert "bin-3" in one.stdout and "changed at epoch 4" in one.stderr  # results, and the broken runs
    assert _no_time(one.stdout) == _no_time(many.stdout)
    assert one.stderr == many.stderr


def _no_time(text: str) -> str:
    """pick's JSON records the time it ran."""
    return "\n".join(line for line in text.splitlines() if '"time"' not in line)


def test_jobs_from_the_option_the_environment_or_the_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(JOBS_ENV, raising=False)
    assert resolve_jobs(1, 10_000, 1 << 40) == 1
    assert resolve_jobs(3, 2, 0) == 2  # never more workers than checkpoints
    monkeypatch.setenv(JOBS_ENV, "1")
    assert resolve_jobs(None, 10_000, 1 << 40) == 1
    assert resolve_jobs(2, 10_000, 0) == 2  # the option wins
    monkeypatch.setenv(JOBS_ENV, "many")
    with pytest.raises(UsageError, match=JOBS_ENV):
        resolve_jobs(None, 10, 0)
    monkeypatch.setenv(JOBS_ENV, "auto")
    assert resolve_jobs(None, 3, 1 << 40) == 1  # too few checkpoints to pay
    assert resolve_jobs(None, 50, 1000) == 1  # too few bytes
    import ckptaudit.parallel as parallel

    monkeypatch.setattr(parallel, "usable_cores", lambda: 8)
    monkeypatch.setattr(parallel.os, "getloadavg", lambda: (1.0, 1.0, 1.0))  # only this process
    assert auto_jobs(10_000, 0) == 4 and auto_jobs(50, 1 << 30) == 4 and auto_jobs(50, 1000) == 1
    monkeypatch.setattr(parallel.os, "getloadavg", lambda: (7.2, 7.0, 7.0))  # other work on the cores
    assert auto_jobs(10_000, 0) == 2
    monkeypatch.setattr(parallel.os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    assert auto_jobs(10_000, 1 << 40) == 1


def test_blocks_cover_every_checkpoint_once_in_order() -> None:
    for sizes, jobs in [([5] * 1000, 2), ([200], 4), ([1, 0, 3, 50, 2], 3), ([], 2)]:
        flat = [(r, i) for task in _blocks(sizes, jobs) for r, a, b in task for i in range(a, b)]
        assert flat == [(r, i) for r, n in enumerate(sizes) for i in range(n)]


def test_an_environment_value_that_is_not_a_number_is_a_usage_error(tmp_path: Path) -> None:
    root = _sweep(tmp_path)
    result = runner.invoke(app, ["rank", str(root / "bin-0"), "-m", "recall"], env={JOBS_ENV: "lots"})
    assert result.exit_code == 2
    assert JOBS_ENV in result.stderr and "Traceback" not in result.stderr


def _children(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals and ps as on Linux")
def test_ctrl_c_exits_130_without_traceback_or_orphans(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    y = (rng.random(20_000) < 0.5).astype(np.int64)
    root = tmp_path / "big"
    write_run(root / "run", "binary", "probability", y, [rng.random(20_000) for _ in range(40)])
    for i in range(1, 6):  # enough files to be interrupted while scoring
        shutil.copytree(root / "run", root / f"run-{i}")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ckptaudit", "rank", str(root), "-m", "roc_auc", "-j", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    workers: set[int] = set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(workers) < 2 and proc.poll() is None:
        workers |= _children(proc.pid)
        time.sleep(0.02)
    assert workers, "no worker process was started"
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert b"Traceback" not in err and b"KeyboardInterrupt" not in err
    time.sleep(0.2)
    alive = [p for p in workers if Path(f"/proc/{p}").exists() and "Z" not in Path(f"/proc/{p}/stat").read_text().split()[2]]
    assert not alive, f"workers left behind: {alive}"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SIGPIPE as on Linux")
def test_a_closed_pipe_still_exits_141(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    y = (rng.random(50) < 0.5).astype(np.int64)
    for r in range(8):  # 400 checkpoints: the automatic choice would start workers too
        write_run(tmp_path / "many" / f"run-{r}", "binary", "probability", y, [rng.random(50) for _ in range(50)])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for jobs in (1, 2):
        cmd = [sys.executable, "-m", "ckptaudit", "rank", str(tmp_path / "many"), "-m", "recall", "-j", str(jobs)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        assert proc.stdout is not None
        proc.stdout.close()  # the reader is gone before anything is written
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 141, err
        assert err == b"", err


def test_a_fork_server_when_torch_is_imported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    import ckptaudit.parallel as parallel

    monkeypatch.setitem(sys.modules, "torch", types.ModuleType("torch"))  # as after `predict`
    assert parallel._context().get_start_method() == "forkserver"
    root = _sweep(tmp_path)
    many = rank_checkpoints([root], ["recall", "val_loss"], jobs=2)
    monkeypatch.delitem(sys.modules, "torch")
    one = rank_checkpoints([root], ["recall", "val_loss"], jobs=1)
    assert many.rows == one.rows and many.problems == one.problems and many.skipped == one.skipped
