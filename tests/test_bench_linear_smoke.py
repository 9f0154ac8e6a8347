"""bench/bench_linear.py still runs: --quick on tiny sweeps (one verb, to stay quick) and its JSON parses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_linear_quick_runs(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        str(ROOT / "bench" / "bench_linear.py"),
        "--quick",
        "--verbs",
        "rank",
        "--series",
        "one",
        "--resamples",
        "100",
        "--timeout",
        "60",
        "--out",
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "bench_linear-quick-latest.json").read_text())
    rows = [(r["verb"], r["checkpoints"]) for r in report["results"]]
    assert rows == [("rank", 20), ("rank", 40), ("rank", 80)]
    assert all(r["status"] == "ok" and r["seconds"] > 0 and r["per_checkpoint"] is not None for r in report["results"])
    # the sweeps were written as runs ckptaudit reads: 80 checkpoints in one run
    run = tmp_path / "bench-linear-quick" / "1r-80c-50n" / "data" / "run-00000"
    assert len(list((run / "checkpoints").iterdir())) == 80
    assert "x smallest" in proc.stdout
