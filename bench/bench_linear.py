"""Cost linear in checkpoints and runs (issue 10): the per-checkpoint cost of every verb
stays flat from 1,000 to 20,000 checkpoints, in one run and spread over many runs.

    python bench/bench_linear.py [--quick] [--out /tmp] [--repeat 1] [--timeout 600]
                                 [--verbs rank,rank --ci,audit,pick,check,prune] [--jobs N]

Two series of sweeps, written once in the docs/format.md run format under
OUT/bench-linear-cache/ (tiny binary runs: ROWS rows of probabilities per checkpoint) and
reused when present:

  one run     1,000 / 5,000 / 20,000 checkpoints in a single run
  many runs   1,000 checkpoints in 100 runs / 5,000 in 1,000 runs / 20,000 in 5,000 runs

Each verb runs as a fresh process (best wall time of --repeat): `rank`, `rank --ci`,
`audit`, `pick`, `check` (one run: its winner --chosen; in the many-runs series the
first run, so only the one-run series measures it), `prune --dry-run --keep 3`. The
table gives seconds, milliseconds per checkpoint (after subtracting the verb's "floor":
the same command on a sweep of one checkpoint, i.e. start-up and imports) and the ratio of
that to the smallest sweep of the series: linear cost keeps the ratio near 1 (a quadratic step would make it
about 20 at 20,000 checkpoints). `--quick` writes tiny sweeps (20/40/80 checkpoints) for
a smoke test. Results also go to OUT/bench_linear-latest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

SIZES = (1_000, 5_000, 20_000)
RUNS = (100, 1_000, 5_000)
ROWS = 200
QUICK_SIZES = (20, 40, 80)
QUICK_RUNS = (2, 4, 8)
QUICK_ROWS = 50
VERBS = ("rank", "rank --ci", "audit", "pick", "check", "prune")


def write_sweep(root: Path, checkpoints: int, runs: int, rows: int, seed: int = 0) -> None:
    """``runs`` binary runs sharing ``checkpoints`` checkpoints of ``rows`` rows each."""
    rng = np.random.default_rng(seed)
    per_run = [checkpoints // runs + (i < checkpoints % runs) for i in range(runs)]
    run_json = json.dumps({"format": "ckptaudit/1", "task": "binary", "output": "probability"})
    for r, count in enumerate(per_run):
        run = root / f"run-{r:05d}"
        (run / "checkpoints").mkdir(parents=True)
        (run / "run.json").write_text(run_json)
        target = (rng.random(rows) < 0.3).astype(np.int64)
        for e in range(count):
            noise = rng.normal(size=rows).astype(np.float32)
            output = 1 / (1 + np.exp(-(noise + target * (0.5 + 0.001 * e))))
            ckpt = run / "checkpoints" / f"epoch-{e:05d}"
            ckpt.mkdir()
            (ckpt / "meta.json").write_text(json.dumps({"epoch": e, "logged": {"val_loss": float(noise.std())}}))
            np.savez(ckpt / "val.npz", target=target, output=output.astype(np.float32))


def ensure(cache: Path, checkpoints: int, runs: int, rows: int) -> Path:
    """The sweep's folder, written unless a complete copy is there."""
    folder = cache / f"{runs}r-{checkpoints}c-{rows}n"
    if (folder / "complete").is_file():
        return folder / "data"
    if folder.exists():
        shutil.rmtree(folder)
    start = time.perf_counter()
    write_sweep(folder / "data", checkpoints, runs, rows)
    (folder / "complete").write_text("")
    print(f"  wrote {checkpoints} checkpoints in {runs} run(s) in {time.perf_counter() - start:.1f} s", flush=True)
    return folder / "data"


def timed(cmd: list[str], timeout: float, env: dict[str, str]) -> tuple[str, float | None, str]:
    """(status, wall seconds, stdout) of one fresh process; exit 0 and 1 are results."""
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return "timeout", None, ""
    wall = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        last = (proc.stderr.strip().splitlines() or [""])[-1]
        return f"exit {proc.returncode}: {last[:80]}", None, ""
    return "ok", wall, proc.stdout


def winner(data: Path, env: dict[str, str], timeout: float) -> tuple[Path, str]:
    """The first run and its best checkpoint under recall (for check's --chosen)."""
    first = sorted(p for p in data.iterdir() if p.is_dir())[0]
    status, _, out = timed([sys.executable, "-m", "ckptaudit", "rank", str(first), "-m", "recall", "-f", "json"], timeout, env)
    if status != "ok":
        raise SystemExit(f"rank of {first} failed: {status}")
    return first, json.loads(out)[0]["checkpoint"]


def commands(data: Path, verbs: list[str], resamples: int, env: dict[str, str], timeout: float) -> dict[str, list[str]]:
    exe = [sys.executable, "-m", "ckptaudit"]
    boot = ["--resamples", str(resamples)]
    out = {
        "rank": exe + ["rank", str(data), "-m", "recall", "-f", "json"],
        "rank --ci": exe + ["rank", str(data), "-m", "recall", "--ci", "-f", "json"] + boot,
        "audit": exe + ["audit", str(data), "-m", "recall", "-f", "json"] + boot,
        "pick": exe + ["pick", str(data), "-m", "recall", "-f", "json"] + boot,
        "prune": exe + ["prune", str(data), "-m", "recall", "--keep", "3", "--dry-run", "-f", "json"],
    }
    if "check" in verbs:
        run, chosen = winner(data, env, timeout)
        out["check"] = exe + ["check", str(run), "-m", "recall", "--chosen", chosen, "-f", "json"] + boot
    return {v: out[v] for v in verbs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sweeps (20/40/80 checkpoints), for a smoke test")
    parser.add_argument("--out", type=Path, default=Path("/tmp"), help="data cache and results (default /tmp)")
    parser.add_argument("--repeat", type=int, default=1, help="best of N per command (default 1)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per command (default 600)")
    parser.add_argument("--resamples", type=int, default=200, help="bootstrap resamples of the statistics verbs (default 200)")
    parser.add_argument("--verbs", default=",".join(VERBS), help=f"comma-separated, from {', '.join(VERBS)}")
    parser.add_argument("--series", default="one,many", help="one (one run), many (many runs), or both (default)")
    parser.add_argument("--jobs", default=None, help="CKPTAUDIT_JOBS for the children (default: as set, else automatic)")
    args = parser.parse_args(argv)
    verbs = [v.strip() for v in args.verbs.split(",") if v.strip()]
    unknown = [v for v in verbs if v not in VERBS]
    if unknown:
        parser.error(f"unknown verbs {unknown}; choose from {', '.join(VERBS)}")
    sizes, runs, rows = (QUICK_SIZES, QUICK_RUNS, QUICK_ROWS) if args.quick else (SIZES, RUNS, ROWS)
    cache = args.out / ("bench-linear-quick" if args.quick else "bench-linear-cache")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    if args.jobs is not None:
        env["CKPTAUDIT_JOBS"] = str(args.jobs)
    series = []
    wanted = {s.strip() for s in args.series.split(",")}
    if "one" in wanted:
        series.append(("one run", [(n, 1) for n in sizes]))
    if "many" in wanted:
        series.append(("many runs", list(zip(sizes, runs, strict=True))))

    print(f"ckptaudit bench_linear  {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}  host load {os.getloadavg()[0]:.1f}")
    print(f"binary runs, {rows} rows per checkpoint; fresh processes, best of {args.repeat}; resamples {args.resamples}")
    results = []
    for name, shapes in series:
        datas = [(n, r, ensure(cache, n, r, rows)) for n, r in shapes]
        floor_data = ensure(cache, 1, 1, rows)
        print(f"\n== {name}")
        print(f"{'verb':<10} {'checkpoints':>11} {'runs':>5} {'status':<8} {'seconds':>8} {'ms/ckpt':>8} {'x smallest':>10}")
        for verb in verbs:
            if verb == "check" and name != "one run":
                continue  # check gates one run: nothing grows with the number of runs
            floor_cmd = commands(floor_data, [verb], args.resamples, env, args.timeout)[verb]
            floor = min(
                (w for w in (timed(floor_cmd, args.timeout, env)[1] for _ in range(max(1, args.repeat))) if w), default=0.0
            )
            print(f"{verb:<10} {1:>11,} {1:>5} {'floor':<8} {floor:8.3f}", flush=True)
            base = None
            for n, r, data in datas:
                cmd = commands(data, [verb], args.resamples, env, args.timeout)[verb]
                best = None
                status = "ok"
                for _ in range(max(1, args.repeat)):
                    status, wall, _out = timed(cmd, args.timeout, env)
                    if wall is None:
                        break
                    best = wall if best is None else min(best, wall)
                per = None if best is None else max(best - floor, 0.0) / n
                if base is None and per:
                    base = per
                ratio = None if per is None or not base else per / base  # noise can leave nothing above the floor
                results.append(
                    {
                        "series": name,
                        "verb": verb,
                        "checkpoints": n,
                        "runs": r,
                        "status": status,
                        "seconds": best,
                        "floor": floor,
                        "per_checkpoint": per,
                        "ratio": ratio,
                    }
                )
                fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
                print(
                    f"{verb:<10} {n:>11,} {r:>5} {status[:8]:<8} {fmt(best, '8.3f')} {fmt(None if per is None else per * 1e3, '8.3f')} "
                    f"{fmt(ratio, '10.2f')}",
                    flush=True,
                )
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"quick": args.quick, "rows": rows, "repeat": args.repeat, "results": results}
    (args.out / ("bench_linear-quick-latest.json" if args.quick else "bench_linear-latest.json")).write_text(
        json.dumps(report, indent=1)
    )
    return 0 if all(r["status"] == "ok" for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
