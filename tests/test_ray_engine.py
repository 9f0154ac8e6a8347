"""The Ray engine of the read-heavy verbs (issue 25): ``--engine ray`` gives the local
engine's output byte for byte (stdout of every format, exit codes, the error lines), on the
shipped fixtures, on a sweep holding every kind of broken run and on a 1,000-checkpoint
sweep; tasks run on a real local Ray cluster of 2 CPUs (started once for the module), and
every block is computed in a Ray task (none falls back to this process)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ckptaudit.cli import app
from ckptaudit.parallel import REPORT_JOBS_ENV
from tests.runfiles import write_run
from tests.test_parallel import _sweep

ray = pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "fixtures" / "runs"
runner = CliRunner()
#: pick's provenance carries the wall-clock time of the pick (not the engine's doing)
_TIME = re.compile(r'"time": "[^"]*"')


@pytest.fixture(scope="module", autouse=True)
def cluster():
    """One local Ray cluster of 2 CPUs for the module (Ray takes seconds to start)."""
    if not ray.is_initialized():
        # NOTE: the workers import the test's tracing predictor (tests/ray_predict_probe.py)
        # when they unpickle an actor's arguments, before any code of ckptaudit runs there.
        path = os.pathsep.join([str(ROOT / "tests"), str(ROOT), os.environ.get("PYTHONPATH", "")])
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield
    ray.shutdown()


def _both(args: list[str]) -> tuple[object, object]:
    """The command on the local engine, then on Ray: (local result, ray result); checks
    that the Ray run did start Ray tasks and computed no block here."""
    local = runner.invoke(app, args, env={REPORT_JOBS_ENV: ""})
    remote = runner.invoke(app, [*args, "--engine", "ray"], env={REPORT_JOBS_ENV: "1"})
    assert "ray CPUs" in remote.stderr, remote.stderr
    assert "ray task failed" not in remote.stderr
    return local, remote


def _same(args: list[str], mask_time: bool = False) -> str:
    local, remote = _both(args)
    assert remote.exit_code == local.exit_code, (remote.stdout, remote.stderr)
    a, b = local.stdout, remote.stdout
    if mask_time:
        a, b = _TIME.sub('"time": ""', a), _TIME.sub('"time": ""', b)
    assert b == a
    strip = [line for line in remote.stderr.splitlines() if not line.startswith("ckptaudit-jobs:")]
    assert strip == local.stderr.splitlines()
    return a


# --------------------------------------------------------------------------- the shipped fixtures


@pytest.mark.parametrize("fmt", ["table", "json", "csv", "markdown"])
def test_rank_on_the_fixtures(fmt: str) -> None:
    out = _same(["rank", str(RUNS), "-m", "accuracy", "-m", "log_loss", "-f", fmt])
    assert "epoch-" in out


@pytest.mark.parametrize(
    "extra",
    [["-m", "mse"], ["-m", "balanced_accuracy", "--ci", "--resamples", "200"], ["-m", "accuracy", "--flags"], ["-m", "val_loss"]],
)
def test_rank_with_statistics_and_findings_on_the_fixtures(extra: list[str]) -> None:
    _same(["rank", str(RUNS), *extra, "-f", "json"])


@pytest.mark.parametrize("extra", [[], ["--across"]])
def test_pick_on_the_fixtures(extra: list[str]) -> None:
    args = ["pick", str(RUNS / "digits"), str(RUNS / "fraud"), "-m", "accuracy", "--resamples", "200"]
    assert '"checkpoint"' in _same([*args, *extra, "-f", "json"], mask_time=True)
    _same([*args, *extra])


@pytest.mark.parametrize("fmt", ["json", "table"])
def test_audit_on_the_fixtures(fmt: str) -> None:
    _same(["audit", str(RUNS), "--resamples", "200", "-f", fmt])


@pytest.mark.parametrize("run", ["fraud", "overfit", "leak-ids"])
def test_check_on_the_fixtures(run: str) -> None:
    metric = "mse" if run == "overfit" else "balanced_accuracy"
    _same(["check", str(RUNS / run), "-m", metric, "--resamples", "200", "-f", "json"])


def test_report_json_on_the_fixtures(tmp_path: Path) -> None:
    files = []
    for engine in ("local", "ray"):
        out = tmp_path / f"{engine}.json"
        result = runner.invoke(
            app, ["report", str(RUNS), "-m", "accuracy", "--resamples", "200", "-o", str(out), "--engine", engine]
        )
        assert result.exit_code == 0, result.output
        files.append(out.read_bytes())
    assert files[0] == files[1] and len(files[0]) > 1000


@pytest.mark.parametrize("run", ["fraud", "digits"])
def test_combine_on_the_fixtures(run: str) -> None:
    out = _same(["combine", str(RUNS / run), "-m", "log_loss", "--dry-run", "--resamples", "20", "-f", "json"])
    assert json.loads(out)["runs"]


# --------------------------------------------------------------------------- broken input


@pytest.mark.parametrize("metrics", [["recall"], ["roc_auc", "val_loss"], ["recall:class=1", "accuracy"]])
def test_a_sweep_of_broken_runs_gives_the_same_errors(tmp_path: Path, metrics: list[str]) -> None:
    root = _sweep(tmp_path)
    args = [a for m in metrics for a in ("-m", m)]
    for fmt in ("json", "table"):
        _same(["rank", str(root), *args, "-f", fmt])
    _same(["rank", str(root), *args, "--ci", "--resamples", "100", "-f", "json"])
    _same(["audit", str(root), "--resamples", "100", "-f", "json"])


# --------------------------------------------------------------------------- 1,000 checkpoints


@pytest.fixture(scope="module")
def thousand(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sweep of 10 runs x 100 checkpoints of 64 binary rows (small rows: the test is about
    blocks, order and reduction, not about bytes)."""
    rng = np.random.default_rng(25)
    root = tmp_path_factory.mktemp("thousand")
    for r in range(10):
        y = (rng.random(64) < 0.3).astype(np.int64)
        outs = [np.clip(y * (0.2 + e / 400) + rng.random(64) * 0.7, 0, 1).astype(np.float32) for e in range(100)]
        write_run(root / f"run-{r:02d}", "binary", "probability", y, outs)
    return root


def test_rank_on_a_thousand_checkpoints(thousand: Path) -> None:
    out = _same(["rank", str(thousand), "-m", "roc_auc", "-m", "accuracy", "-f", "json"])
    assert len(json.loads(out)) == 1000


def test_rank_ci_and_pick_across_on_a_thousand_checkpoints(thousand: Path) -> None:
    _same(["rank", str(thousand), "-m", "accuracy", "--ci", "--resamples", "100", "--per-run", "-f", "csv"])
    _same(["pick", str(thousand), "-m", "roc_auc", "--across", "--resamples", "100", "-f", "json"], mask_time=True)


def test_audit_on_a_thousand_checkpoints(thousand: Path) -> None:
    _same(["audit", str(thousand), "--resamples", "100", "-f", "json"])


# --------------------------------------------------------------------------- one-line errors


def test_an_unreachable_address_is_one_line_at_once(tmp_path: Path) -> None:
    start = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ckptaudit",
            "rank",
            str(RUNS / "fraud"),
            "-m",
            "accuracy",
            "--engine",
            "ray",
            "--address",
            "127.0.0.1:1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CKPTAUDIT_RAY_CONNECT_TIMEOUT": "3"},
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "ckptaudit: error: --address 127.0.0.1:1: no Ray cluster reachable there within 3 s (Connection refused)"
    ]
    assert time.perf_counter() - start < 30
    result = runner.invoke(app, ["audit", str(RUNS / "fraud"), "--address", "127.0.0.1:1"])
    assert result.exit_code == 2 and "--engine ray" in result.stderr


def test_ray_missing_is_one_line_naming_the_extra() -> None:
    code = "import sys; sys.modules['ray'] = None; from ckptaudit.cli import run; run()"
    proc = subprocess.run(
        [sys.executable, "-c", code, "pick", str(RUNS / "fraud"), "-m", "accuracy", "--engine", "ray"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == ["ckptaudit: error: --engine ray needs Ray: pip install 'ckptaudit[ray]'"]


# --------------------------------------------------------------------------- predict --engine ray


def test_predict_actors_build_once_read_ahead_and_write_where_they_predict(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    import functools
    import shutil

    import inference_models as im
    import ray_predict_probe as probe

    from ckptaudit.inference.engines import run_jobs
    from ckptaudit.inference.predict import plan
    from ckptaudit.inference.predictor import Options, _data
    from ckptaudit.store.reader import read_run

    models = Path(im.__file__)
    recorded = tmp_path / "recorded"
    im.train_plain(tmp_path / "weights", epochs=6, recorder_run=recorded)
    run_path = tmp_path / "run"
    shutil.copytree(recorded, run_path)
    for npz in run_path.rglob("*.npz"):
        npz.unlink()
    trace = tmp_path / "trace"
    trace.mkdir()
    datasets = {"val": _data(f"{models}:val_data", "--data")}
    options = Options(model=f"{models}:mlp", device="cpu", batch_size=1024, autocast=False, trust_pickle=False)
    run = read_run(run_path)
    jobs, _ = plan(run, datasets)
    got: dict[str, object] = {}

    def on_result(job, written, seconds, error):  # type: ignore[no-untyped-def]
        got[job.checkpoint] = (written, error)

    make = functools.partial(probe.TracingPredictor, trace_to=str(trace))
    run_jobs(jobs, datasets, options, make, on_result, write=probe.TracingWriter(run, str(trace)), engine="ray")
    assert len(got) == 6 and all(w == {"val": None} and e is None for w, e in got.values()), got
    seen = probe.traces(trace)
    builds = [pid for kind, pid, _, _ in seen if kind == "build"]
    assert 1 <= len(builds) == len(set(builds)) <= 2  # one model per actor (2 CPUs), never one per checkpoint
    writers = {pid for kind, pid, _, _ in seen if kind == "write"}
    assert writers <= set(builds) and os.getpid() not in writers  # written by the actors, not here
    reads = [(thread, name) for kind, _, thread, name in seen if kind == "read"]
    assert sorted(name for _, name in reads) == sorted(j.checkpoint for j in jobs)  # each file read once
    ahead = [name for thread, name in reads if thread.startswith("ckptaudit-weights")]
    assert len(ahead) == len(jobs) - len(builds)  # all but each actor's first were read ahead
    for ckpt in sorted((recorded / "checkpoints").iterdir()):
        with np.load(ckpt / "val.npz") as a, np.load(run_path / "checkpoints" / ckpt.name / "val.npz") as b:
            assert np.array_equal(a["output"], b["output"]) and np.array_equal(a["input_hash"], b["input_hash"])
