"""The command line's allocator settings (ckptaudit.allocator) against glibc's own.

Each command runs as a fresh process, best of --repeat, with ``CKPTAUDIT_MALLOC=system``
(glibc's dynamic thresholds) and without (ckptaudit's): CPU seconds, wall seconds and the peak
RSS of the process (and its workers, by wait4). Give runs written by bench_operating_point.py or
bench_memory.py:

    python bench/bench_allocator.py --run bench/out/op-200x100000 --run RUN20K
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

COMMANDS = (
    ["rank", "{run}", "-m", "roc_auc"],
    ["rank", "{run}", "-m", "recall@precision>=0.8"],
    ["rank", "{run}", "--ci", "-m", "roc_auc"],
    ["rank", "{run}", "--ci", "-m", "recall"],
    ["pick", "{run}", "-m", "roc_auc"],
    ["pick", "{run}", "-m", "recall"],
    ["pick", "{run}", "-m", "recall@precision>=0.8"],
)


def timed(args: list[str], env: dict[str, str], repeat: int) -> tuple[float, float, float]:
    """Best (CPU s, wall s) and the largest peak RSS (MiB) over ``repeat`` fresh processes."""
    cpu, wall, rss = float("inf"), float("inf"), 0.0
    for _ in range(repeat):
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "ckptaudit", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = min(wall, time.perf_counter() - started)
        if os.waitstatus_to_exitcode(status) not in (0, 1):
            raise SystemExit(f"{' '.join(args)}: exit {os.waitstatus_to_exitcode(status)}")
        cpu = min(cpu, usage.ru_utime + usage.ru_stime)
        rss = max(rss, usage.ru_maxrss / 1024)
    return cpu, wall, rss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="append", required=True)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    base = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "CKPTAUDIT_MALLOC"}
    print(f"load average {os.getloadavg()[0]:.2f}, best of {a.repeat}, CKPTAUDIT_JOBS={base.get('CKPTAUDIT_JOBS', 'auto')}")
    print(f"{'command':55s} {'glibc CPU s':>11s} {'ours CPU s':>10s} {'ratio':>6s} {'glibc MiB':>9s} {'ours MiB':>8s}")
    for run in a.run:
        for cmd in COMMANDS:
            args = [x.format(run=run) for x in cmd]
            glibc = timed(args, {**base, "CKPTAUDIT_MALLOC": "system"}, a.repeat)
            ours = timed(args, base, a.repeat)
            name = " ".join(args).replace(run, os.path.basename(run.rstrip("/")) or run)
            print(f"{name:55s} {glibc[0]:11.2f} {ours[0]:10.2f} {ours[0] / glibc[0]:6.2f} {glibc[2]:9.0f} {ours[2]:8.0f}")


if __name__ == "__main__":
    main()
