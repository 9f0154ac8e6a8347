"""Speed of the operating-point metrics (issue 20) against `rank --metric roc_auc`.

Writes one binary run (CHECKPOINTS x ROWS probabilities, 5% positives) under --out and times,
each as a fresh process (best of --repeat, compiled, at one process count: --jobs, default
1): `rank --metric roc_auc`, `rank --metric
recall@precision>=0.8`, and `pick` / `check` with the operating point. The issue's target
shape is bench_scale.py's binary sweep (200 x 100,000, 4 runs); on a shared 2-core machine
use a smaller one and say so.

    python bench/bench_operating_point.py --checkpoints 50 --rows 100000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scale import child_env, precompile  # noqa: E402
from scale_sim import measured  # noqa: E402

#: the other kinds of point (--other-points): a precision or specificity target under a recall
#: bound (met from a threshold on), a recall target under a specificity bound, a cost; the
#: bench's weak checkpoints flag most rows at recall 0.9 (hundreds of rows per threshold there);
#: specificity@recall>=0.95 is issue 20's own example (a cancer screen)
OTHER_POINTS = (
    "precision@recall>=0.5",
    "precision@recall>=0.9",
    "specificity@recall>=0.95",
    "specificity@recall>=0.5",
    "recall@specificity>=0.95",
    "cost:fn=10,fp=1",
)


def write(root: Path, checkpoints: int, rows: int) -> Path:
    run = root / f"op-{checkpoints}x{rows}"
    if (run / "run.json").exists():
        return run
    rng = np.random.default_rng(0)
    y = (rng.random(rows) < 0.05).astype(np.int8)
    (run / "checkpoints").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"format": "ckptaudit/1", "task": "binary", "output": "probability"}))
    z = rng.normal(size=rows)
    for k in range(checkpoints):
        d = run / "checkpoints" / f"epoch-{k:04d}"
        d.mkdir()
        (d / "meta.json").write_text(json.dumps({"epoch": k}))
        s = (1.5 + k / checkpoints) * y + 0.9 * z + 0.44 * rng.normal(size=rows)
        np.savez(d / "val.npz", target=y, output=(1 / (1 + np.exp(-(s - 3)))).astype(np.float32))
    return run


def timed(args: list[str], repeat: int, env: dict[str, str]) -> tuple[float, float]:
    """Best of ``repeat`` fresh processes (scale_sim's ``measured``): (wall seconds, CPU
    seconds of the process and its workers). The CPU time is the steadier figure on a shared
    machine (the wall time grows with its load)."""
    rows = [measured([sys.executable, "-m", "ckptaudit", *args], env) for _ in range(repeat)]
    bad = [r for r in rows if r["exit"] not in (0, 1)]
    if bad:
        raise SystemExit(f"{' '.join(args)}: exit {bad[0]['exit']}: {bad[0]['error']}")
    return min(r["wall_s"] for r in rows), min(r["cpu_s"] for r in rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", type=int, default=50)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    ap.add_argument("--jobs", default="1", help="CKPTAUDIT_JOBS of every command (auto: the automatic choice)")
    ap.add_argument(
        "--other-points",
        action="store_true",
        help=f"also `rank` and `pick` with each of {', '.join(OTHER_POINTS)}, each against `rank` with itself",
    )
    a = ap.parse_args()
    precompile()
    env = child_env(a.jobs)
    run = write(a.out, a.checkpoints, a.rows)
    op = "recall@precision>=0.8"
    rs = ["--resamples", str(a.resamples)]
    cases = {
        "rank roc_auc": ["rank", str(run), "--metric", "roc_auc"],
        f"rank {op}": ["rank", str(run), "--metric", op],
        "pick roc_auc": ["pick", str(run), "--metric", "roc_auc", *rs],
        f"pick {op}": ["pick", str(run), "--metric", op, *rs],
        f"check {op}": ["check", str(run), "--metric", op, "--chosen", "epoch-0000", "--allow-unchosen", *rs],
    }
    load = os.getloadavg()[0]
    times = {name: timed(args, a.repeat, env) for name, args in cases.items()}
    others = {
        p: [timed([verb, str(run), "--metric", p, *extra], a.repeat, env) for verb, extra in (("rank", []), ("pick", rs))]
        for p in (OTHER_POINTS if a.other_points else ())
    }
    print(
        f"{a.checkpoints} checkpoints x {a.rows:,} rows, best of {a.repeat}, {a.resamples} resamples, "
        f"CKPTAUDIT_JOBS={a.jobs}, compiled bytecode, load average {load:.2f} -> {os.getloadavg()[0]:.2f}"
    )
    for i, unit in enumerate(("wall", "CPU")):
        base, rank_op = times["rank roc_auc"][i], times[f"rank {op}"][i]
        for name, tt in times.items():
            t = tt[i]
            print(f"  {unit:4s} {name:40s} {t:7.2f} s  {t / base:5.2f}x rank roc_auc  {t / rank_op:5.2f}x rank {op}")
        for p, (rank_t, pick_t) in others.items():
            print(
                f"  {unit:4s} {'pick ' + p:40s} {pick_t[i]:7.2f} s  {pick_t[i] / base:5.2f}x rank roc_auc  "
                f"{pick_t[i] / rank_t[i]:5.2f}x rank {p} ({rank_t[i]:.2f} s)"
            )


if __name__ == "__main__":
    main()
