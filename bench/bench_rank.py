"""Benchmark: `ckptaudit rank` against the script a user would write, and the I/O floor.

Builds a synthetic binary sweep (default 200 checkpoints x 100,000 validation rows) and
times, each as a fresh process so start-up counts:

  (a) ckptaudit rank --metric recall            (and ckptaudit audit, when available)
  (b) a script: load each val.npz, call sklearn.metrics.recall_score
  (c) a script that only loads every array of every val.npz (the format's I/O floor)
  (d) bench/lower_bound.py, the fastest honest script (direct zip reads into one matrix,
      the validation-set check kept): issue 10's target is rank <= 1.5 x (d)
  and `rank --cache`, once to build the derived cache and then warm.

It prints wall times (best of --repeat), peak memory of each process, and the ratios.
Usage: python bench/bench_rank.py [--checkpoints 200] [--rows 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SKLEARN_SCRIPT = """
import sys, json, pathlib
import numpy as np
from sklearn.metrics import recall_score
root = pathlib.Path(sys.argv[1])
scores = []
for run in sorted(root.iterdir()):
    for ckpt in sorted((run / "checkpoints").iterdir()):
        with np.load(ckpt / "val.npz") as npz:
            scores.append((recall_score(npz["target"], npz["output"] > 0.5), ckpt.name))
scores.sort(key=lambda s: -s[0])
print(scores[0])
"""

LOAD_ONLY_SCRIPT = """
import sys, pathlib
import numpy as np
root = pathlib.Path(sys.argv[1])
n = 0
for run in sorted(root.iterdir()):
    for ckpt in sorted((run / "checkpoints").iterdir()):
        with np.load(ckpt / "val.npz") as npz:
            for key in npz.files:
                n += npz[key].size
print(n)
"""


def build_sweep(root: Path, checkpoints: int, rows: int, runs: int, seed: int = 0) -> None:
    """Write ``runs`` runs sharing ``checkpoints`` checkpoints of ``rows`` binary rows each."""
    rng = np.random.default_rng(seed)
    per_run = [checkpoints // runs + (i < checkpoints % runs) for i in range(runs)]
    for r, count in enumerate(per_run):
        run = root / f"run-{r:02d}"
        (run / "checkpoints").mkdir(parents=True)
        (run / "run.json").write_text(json.dumps({"format": "ckptaudit/1", "task": "binary", "output": "probability"}))
        target = (rng.random(rows) < 0.1).astype(np.int64)
        ids = np.arange(rows, dtype=np.int64)
        for e in range(count):
            noise = rng.normal(size=rows).astype(np.float32)
            output = 1 / (1 + np.exp(-(noise + target * (0.5 + e * 0.05))))
            ckpt = run / "checkpoints" / f"epoch-{e:04d}"
            ckpt.mkdir()
            (ckpt / "meta.json").write_text(json.dumps({"epoch": e, "logged": {"val_loss": float(noise.std())}}))
            np.savez(ckpt / "val.npz", target=target, output=output.astype(np.float32), id=ids)


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one fresh process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {err}")
    return wall, usage.ru_maxrss / 1024


def best_of(cmd: list[str], repeat: int) -> tuple[float, float]:
    results = [timed(cmd) for _ in range(repeat)]
    return min(r[0] for r in results), max(r[1] for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", type=int, default=200)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=4, help="runs in the sweep (checkpoints are split among them)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where to build the sweep (default: a temp folder)")
    parser.add_argument("--no-audit", action="store_true", help="skip timing `ckptaudit audit`")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="ckptaudit-bench-")) if args.dir is None else args.dir
    root = tmp / "sweep"
    if root.exists():
        shutil.rmtree(root)
    t0 = time.perf_counter()
    build_sweep(root, args.checkpoints, args.rows, args.runs)
    size = sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) / 2**20
    print(
        f"sweep: {args.checkpoints} checkpoints x {args.rows} rows in {args.runs} runs, {size:.0f} MiB, built in {time.perf_counter() - t0:.1f}s"
    )

    exe = [sys.executable, "-m", "ckptaudit"]
    cases = {
        "(c) load only": [sys.executable, "-c", LOAD_ONLY_SCRIPT, str(root)],
        "(b) sklearn script": [sys.executable, "-c", SKLEARN_SCRIPT, str(root)],
        "(d) lower bound": [
            sys.executable,
            str(Path(__file__).resolve().parent / "lower_bound.py"),
            str(root),
            "--metric",
            "recall",
        ],
        "(a) ckptaudit rank": exe + ["rank", str(root), "--metric", "recall", "--format", "json"],
        "ckptaudit --help": exe + ["--help"],
    }
    if not args.no_audit:
        cases["ckptaudit audit"] = exe + ["audit", str(root), "--metric", "recall", "--format", "json"]
        # check gates one run: compared with rank of that same run
        one = str(root / "run-00")
        cases["rank (one run)"] = exe + ["rank", one, "--metric", "recall", "--format", "json"]
        cases["check (one run)"] = exe + ["check", one, "--metric", "recall", "--chosen", "epoch-0000", "--format", "json"]
    # warm the page cache so every case reads from memory, as a repeated run would
    timed(cases["(c) load only"])
    results = {name: best_of(cmd, args.repeat) for name, cmd in cases.items()}
    cache_cmd = exe + ["rank", str(root), "--metric", "recall", "--format", "json", "--cache"]
    results["rank --cache (builds)"] = timed(cache_cmd)
    results["rank --cache (warm)"] = best_of(cache_cmd, args.repeat)
    floor = results["(c) load only"][0]
    print(f"{'case':24} {'seconds':>8} {'x (c)':>7} {'peak MiB':>9}")
    for name, (wall, rss) in results.items():
        print(f"{name:24} {wall:8.3f} {wall / floor:7.2f} {rss:9.0f}")
    a = results["(a) ckptaudit rank"][0]
    print(
        f"ratios: rank/(c) = {a / floor:.2f}, sklearn/(c) = {results['(b) sklearn script'][0] / floor:.2f}, "
        f"sklearn/rank = {results['(b) sklearn script'][0] / a:.2f}"
    )
    lower = results["(d) lower bound"][0]
    print(f"lower bound: rank/(d) = {a / lower:.2f} (target <= 1.5), (d)/(c) = {lower / floor:.2f}")
    warm = results["rank --cache (warm)"][0]
    print(f"cache: warm rank/(c) = {warm / floor:.2f}, warm/plain rank = {warm / a:.2f}")
    if "ckptaudit audit" in results:
        print(f"audit/rank = {results['ckptaudit audit'][0] / a:.2f} (target <= 3, with the selection statistics)")
        check_ratio = results["check (one run)"][0] / results["rank (one run)"][0]
        print(f"check/rank on one run = {check_ratio:.2f} (target <= 3)")
    if args.dir is None:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
