"""Issue 21's memory target: peak RSS of the statistics verbs, flat in the number of checkpoints.

    python bench/bench_memory.py [--checkpoints 10,1000,5000,20000] [--rows 1000]
                                 [--verbs "rank --ci,pick,audit"] [--metric recall] [--out bench/out]

One run of K binary checkpoints x ROWS rows (bench_rank.build_sweep, written once under
OUT/mem-cache/), each verb a fresh process (CKPTAUDIT_JOBS=1, bytecode compiled), its peak
RSS from os.wait4, against the issue's allowance: 2 x one checkpoint's arrays + the
compact per-row data (1 byte a checkpoint's row for a label metric, 4 for a score), above
the idle interpreter (numpy and the verbs' modules imported). Prints one line per case
with the load average, wall and CPU seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
from bench_rank import build_sweep  # noqa: E402
from bench_scale import IDLE_SCRIPT, child_env, precompile  # noqa: E402


def peak(cmd: list[str], env: dict[str, str]) -> tuple[int, float, float, float]:
    """(exit code, wall s, cpu s, peak MiB) of one fresh process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        err = proc.stderr.read().decode(errors="replace").strip().splitlines() if proc.stderr else []
        print(f"    {' '.join(cmd[3:5])}: exit {code}: {err[-1] if err else ''}", flush=True)
    return code, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def measure_memory(
    counts: list[int], rows: int, verbs: list[str], metric: str, resamples: int, cache: Path, env: dict[str, str], idle: float
) -> list[dict]:
    """Each verb's peak on one run of each count of checkpoints (data written once under
    ``cache``), printed as it goes; one dict a case."""
    exe = [sys.executable, "-m", "ckptaudit"]
    results = []
    for count in counts:
        data = cache / f"binary-1r-{count}c-{rows}n"
        if not (data / "complete.json").is_file():
            start = time.perf_counter()
            build_sweep(data / "data", count, rows, 1)
            (data / "complete.json").write_text("{}")
            print(f"  wrote {count} checkpoints in {time.perf_counter() - start:.0f} s", flush=True)
        one = rows * (8 + 4 + 8)  # target int64, output float32, id int64
        per_row = 1 if metric in ("recall", "accuracy", "precision", "f1") else 4
        allowance = (2 * one + count * rows * per_row) / 2**20
        for verb in verbs:
            cmd = exe + verb.split() + [str(data / "data"), "-m", metric, "-f", "json", "--resamples", str(resamples)]
            load = os.getloadavg()[0]
            code, wall, cpu, mib = peak(cmd, env)
            ratio = max(mib - idle, 0.0) / allowance
            results.append(
                {
                    "checkpoints": count,
                    "verb": verb,
                    "metric": metric,
                    "exit": code,
                    "wall": wall,
                    "cpu": cpu,
                    "peak_mib": mib,
                    "load": load,
                    "allowance_mib": allowance,
                    "ratio": ratio,
                }
            )
            print(
                f"  {count:6d} ckpts  {verb:10}  peak {mib:7.0f} MiB  (peak-idle)/allowance {ratio:6.2f}  "
                f"allowance {allowance:6.1f} MiB  wall {wall:6.2f} s  cpu {cpu:6.2f} s  load {load:.1f}",
                flush=True,
            )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", default="10,1000,5000,20000")
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--verbs", default="rank --ci,pick,audit")
    parser.add_argument("--metric", default="recall")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=BENCH / "out")
    args = parser.parse_args(argv)
    precompile()
    env = child_env("1")
    _, _, _, idle = peak([sys.executable, "-c", IDLE_SCRIPT], env)
    print(f"idle interpreter {idle:.0f} MiB; rows {args.rows}; metric {args.metric}; resamples {args.resamples}")
    counts = [int(c) for c in args.checkpoints.split(",")]
    verbs = [v.strip() for v in args.verbs.split(",")]
    results = measure_memory(counts, args.rows, verbs, args.metric, args.resamples, args.out / "mem-cache", env, idle)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_memory-latest.json").write_text(
        json.dumps({"idle_mib": idle, "rows": args.rows, "results": results}, indent=1)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
