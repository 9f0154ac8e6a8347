"""The issue-10 bench harness still runs: bench_scale.py --quick on a tiny shape, and the
lower-bound script's values against scikit-learn (so that the floor `rank` is measured
against computes the same thing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, mean_squared_error, recall_score

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))

import bench_scale  # noqa: E402
import lower_bound  # noqa: E402


def test_bench_scale_quick_runs_and_its_table_parses(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH / "bench_scale.py"),
            "--quick",
            "--shapes",
            "binary",
            "--metrics",
            "label",
            "--no-sklearn",
            "--repeat",
            "1",
            "--resamples",
            "100",
            "--timeout",
            "60",
            "--memory-checkpoints",
            "10,40",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "bench_scale-quick-latest.json").read_text())
    assert report["complete"]
    (shape,) = report["shapes"]
    cases = {r["case"]: r for r in shape["results"]}
    expected = {
        "lower bound",
        "tight lower bound",
        "numpy stack script",
        "np.load floor",
        "rank",
        "rank --ci",
        "audit",
        "pick",
        "check",
        "report",
        "rank --cache (build)",
        "rank --cache (warm)",
    }
    assert expected <= cases.keys()
    for case in expected:
        assert cases[case]["status"] == "ok", cases[case]
        assert cases[case]["seconds"] > 0 and cases[case]["peak_mib"] > 0
    # the lower bound and the numpy script compute exactly what rank printed
    assert cases["lower bound"]["detail"].startswith("values match rank"), cases["lower bound"]["detail"]
    assert cases["numpy stack script"]["detail"].startswith("values match rank")
    assert cases["tight lower bound"]["detail"].startswith("values match rank"), cases["tight lower bound"]["detail"]
    assert cases["rank"]["vs_tight_bound"] == cases["rank"]["seconds"] / cases["tight lower bound"]["seconds"]
    # issue 21's hygiene: every command at the bench's one process count (CKPTAUDIT_JOBS=1),
    # with its CPU seconds and the load average beside the wall time
    for case in expected:
        assert cases[case]["processes"] == 1, cases[case]
        assert cases[case]["cpu_seconds"] > 0 and cases[case]["load"] is not None
    assert cases["rank"]["vs_lower_bound"] == cases["rank"]["seconds"] / cases["lower bound"]["seconds"]
    assert cases["audit"]["vs_rank"] == cases["audit"]["seconds"] / cases["rank"]["seconds"]
    # the printed table: one line per case, and the target rows
    text = (tmp_path / "bench_scale-quick-latest.txt").read_text()
    rows = {}
    for line in text.splitlines():
        if line[:22].strip() in cases:
            metric, status, seconds, _cpu, _load, _procs, peak, *_ = line[22:].split()
            rows[line[:22].strip()] = (metric, status, float(seconds), float(peak))
    assert rows.keys() == cases.keys()
    for case, (metric, status, seconds, peak) in rows.items():
        assert (metric, status) == ("recall", "ok")
        assert seconds == round(cases[case]["seconds"], 3) and peak == round(cases[case]["peak_mib"])
    targets = [r["target"] for r in report["summary"]]
    assert "rank -m recall / lower bound" in targets and "worst of ci/audit/pick/check/report / rank (recall)" in targets
    assert "rank -m recall / tight lower bound" in targets
    assert "rank -m recall / lower bound" in text
    # memory flat in checkpoints: each statistics verb on one run of each count, both metrics
    memory = {(c["checkpoints"], c["verb"], c["metric"]): c for c in report["memory"]}
    assert memory.keys() == {(n, v, m) for n in (10, 40) for v in ("rank --ci", "pick", "audit") for m in ("recall", "roc_auc")}
    assert all(c["exit"] == 0 and c["peak_mib"] > 0 and c["allowance_mib"] > 0 for c in memory.values())
    assert "peak growth 10->40 / per-row data (roc_auc)" in targets and "40 ckpts (peak - idle) / allowance (recall)" in targets


def _values(root: Path, metric: str, method: str, tmp_path: Path) -> dict[tuple[str, str], float]:
    out = tmp_path / f"{metric}-{method}.json"
    assert lower_bound.main([str(root), "--metric", metric, "--method", method, "--values-out", str(out)]) == 0
    return {(Path(run).name, name): value for run, name, value in json.loads(out.read_text())}


def test_lower_bound_matches_scikit_learn_on_every_shape(tmp_path: Path) -> None:
    for name, metric in (("binary", "recall"), ("multiclass", "accuracy"), ("multilabel", "accuracy"), ("regression", "mse")):
        shape = bench_scale.QUICK[name]
        data = bench_scale.ensure_data(tmp_path / "cache", shape)
        direct = _values(data, metric, "direct", tmp_path)
        stack = _values(data, metric, "stack", tmp_path)
        assert direct == stack and len(direct) == shape.checkpoints
        for (run, ckpt), value in direct.items():
            with np.load(data / run / "checkpoints" / ckpt / "val.npz") as npz:
                y, out = npz["target"], npz["output"]
            if name == "binary":
                expected = recall_score(y, out > 0.5)
            elif name == "multiclass":
                expected = accuracy_score(y, out.argmax(axis=1))
            elif name == "multilabel":
                expected = accuracy_score(y, (out > 0).astype(int))
            else:
                expected = mean_squared_error(y.astype(np.float64), out.astype(np.float64))
            assert abs(value - expected) < 1e-12, (name, run, ckpt, value, expected)


def test_lower_bound_refuses_a_changed_validation_set(tmp_path: Path) -> None:
    data = bench_scale.ensure_data(tmp_path / "cache", bench_scale.QUICK["binary"])
    run = bench_scale.runs_of(data)[0]
    last = sorted((run / "checkpoints").iterdir())[-1] / "val.npz"
    with np.load(last) as npz:
        arrays = dict(npz)
    arrays["target"] = arrays["target"].copy()
    arrays["target"][0] = 1 - arrays["target"][0]
    np.savez(last, **arrays)
    for method in ("direct", "stack"):
        try:
            lower_bound.main([str(data), "--metric", "recall", "--method", method])
        except SystemExit as exc:
            assert "validation set changed" in str(exc)
        else:
            raise AssertionError(f"{method}: a changed target was not noticed")


def test_tight_lower_bound_gives_the_lower_bounds_values_on_every_shape(tmp_path: Path) -> None:
    import lower_bound_tight

    for name, metric in (("binary", "recall"), ("multiclass", "accuracy"), ("multilabel", "accuracy"), ("regression", "mse")):
        data = bench_scale.ensure_data(tmp_path / "cache", bench_scale.QUICK[name])
        direct = _values(data, metric, "direct", tmp_path)
        out = tmp_path / f"{name}-tight.json"
        assert lower_bound_tight.main([str(data), "--metric", metric, "--values-out", str(out)]) == 0
        tight = {(Path(run).name, ckpt): value for run, ckpt, value in json.loads(out.read_text())}
        assert tight == direct, name


def test_tight_lower_bound_refuses_a_changed_validation_set(tmp_path: Path) -> None:
    import lower_bound_tight

    data = bench_scale.ensure_data(tmp_path / "cache", bench_scale.QUICK["binary"])
    run = bench_scale.runs_of(data)[0]
    last = sorted((run / "checkpoints").iterdir())[-1] / "val.npz"
    with np.load(last) as npz:
        arrays = dict(npz)
    arrays["target"] = arrays["target"].copy()
    arrays["target"][0] = 1 - arrays["target"][0]
    np.savez(last, **arrays)
    try:
        lower_bound_tight.main([str(data), "--metric", "recall"])
    except SystemExit as exc:
        assert "validation set changed" in str(exc)
    else:
        raise AssertionError("a changed target was not noticed")


def test_pools_report_their_workers_when_asked(tmp_path: Path) -> None:
    """The bench's process count: CKPTAUDIT_REPORT_JOBS makes a pool say its workers; none
    is said without it, nor when one process scores."""
    import os

    data = bench_scale.ensure_data(tmp_path / "cache", bench_scale.QUICK["hpo"])
    env = {k: v for k, v in os.environ.items() if k not in ("CKPTAUDIT_JOBS", "CKPTAUDIT_REPORT_JOBS")}
    cmd = [sys.executable, "-m", "ckptaudit", "rank", str(data), "-m", "recall", "-f", "json"]

    def stderr(**extra: str) -> str:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT, env={**env, **extra})
        assert proc.returncode == 0, proc.stderr
        return proc.stderr

    assert bench_scale._processes(stderr(CKPTAUDIT_JOBS="2", CKPTAUDIT_REPORT_JOBS="1")) == 3
    assert "ckptaudit-jobs" not in stderr(CKPTAUDIT_JOBS="2")
    assert bench_scale._processes(stderr(CKPTAUDIT_JOBS="1", CKPTAUDIT_REPORT_JOBS="1")) == 1


def test_scale_sim_runs_on_disk_and_in_the_s3_server(tmp_path: Path) -> None:
    """bench/scale_sim.py end to end on a tiny sweep: disk and the moto server behind the
    counting proxy; both stores rank the same checkpoints, and the S3 rows count requests."""
    import pytest

    pytest.importorskip("moto.server")
    pytest.importorskip("s3fs")
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH / "scale_sim.py"),
            "--sizes",
            "20",
            "--s3-sizes",
            "20",
            "--per-run",
            "10",
            "--rows",
            "30",
            "--verbs",
            "rank",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads((tmp_path / "scale_sim-latest.json").read_text())["results"]
    assert [(r["store"], r["checkpoints"], r["exit"]) for r in rows] == [("disk", 20, 0), ("s3", 20, 0)]
    s3 = rows[1]
    # one GET of meta.json and one of val.npz per checkpoint, plus the listing and run.json
    assert 2 * 20 <= s3["requests"] <= 2 * 20 + 10
