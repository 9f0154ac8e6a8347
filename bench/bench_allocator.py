"""The command line's allocator settings (ckptaudit.allocator) against glibc's own.

Each command runs as a fresh process (scale_sim's ``measured``: wait4), compiled, at one
process count (``--jobs``, default 1), best of --repeat, with ``CKPTAUDIT_MALLOC=system``
(glibc's dynamic thresholds) and without (ckptaudit's): CPU seconds and the peak RSS of the
process and its workers. Give runs written by bench_operating_point.py or
bench_memory.py:

    python bench/bench_allocator.py --run bench/out/op-200x100000 --run RUN20K
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scale import child_env, precompile  # noqa: E402
from scale_sim import measured  # noqa: E402

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
    rows = [measured([sys.executable, "-m", "ckptaudit", *args], env) for _ in range(repeat)]
    failed = [r for r in rows if r["exit"] not in (0, 1)]
    if failed:
        raise SystemExit(f"{' '.join(args)}: exit {failed[0]['exit']}: {failed[0]['error']}")
    return min(r["cpu_s"] for r in rows), min(r["wall_s"] for r in rows), max(r["peak_mib"] for r in rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="append", required=True)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--jobs", default="1", help="CKPTAUDIT_JOBS of every command (auto: the automatic choice)")
    a = ap.parse_args()
    precompile()
    base = {k: v for k, v in child_env(a.jobs).items() if not k.startswith("MALLOC_") and k != "CKPTAUDIT_MALLOC"}
    print(f"load average {os.getloadavg()[0]:.2f}, best of {a.repeat}, CKPTAUDIT_JOBS={a.jobs}, compiled bytecode")
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
