"""Figures for `combine`: the honesty simulation and the greedy search's speed against rank.

python bench/bench_combine.py sim [--runs 100] [--resamples 200]
python bench/bench_combine.py speed
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def _sim(args: argparse.Namespace) -> None:
    from ckptaudit.combining.simulation import simulate

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        f = simulate(Path(tmp), runs=args.runs, resamples=args.resamples)
        print(
            f"{f.runs} runs x 50 equal-truth checkpoints, n=1000, accuracy, {args.resamples} resamples: "
            f"naive gain {100 * f.naive_gain:+.2f} points, corrected {100 * f.corrected_gain:+.2f} points "
            f"(mean |error| {100 * f.mean_abs_error:.2f}; truth 0), false adoption {100 * f.false_adoption:.1f}% "
            f"({time.perf_counter() - t:.0f} s)"
        )


def _write(path: Path, k: int, n: int, c: int, seed: int = 0) -> Path:
    import json

    rng = np.random.default_rng(seed)
    y = rng.integers(0, max(c, 2), n)
    (path / "checkpoints").mkdir(parents=True)
    task = "binary" if c == 1 else "multiclass"
    (path / "run.json").write_text(json.dumps({"format": "ckptaudit/1", "task": task, "output": "probability"}))
    for e in range(k):
        if c == 1:
            out = (1 / (1 + np.exp(-((2 * y - 1) + rng.normal(0, 2, n))))).astype(np.float32)
        else:
            lg = rng.normal(0, 1, (n, c)).astype(np.float32)
            lg[np.arange(n), y] += 1.0
            out = np.exp(lg)
            out /= out.sum(axis=1, keepdims=True)
        folder = path / "checkpoints" / f"epoch-{e:04d}"
        folder.mkdir()
        (folder / "meta.json").write_text(json.dumps({"epoch": e}))
        np.savez(folder / "val.npz", target=y, output=out)
    return path


def _speed(args: argparse.Namespace) -> None:
    import ckptaudit
    from ckptaudit.combining.adoption import Searcher
    from ckptaudit.combining.ensembles import load_members
    from ckptaudit.metrics.evaluation import parse_metrics
    from ckptaudit.store.reader import read_run

    for k, n, c in ((200, 100_000, 1), (50, 50_000, 100)):
        with tempfile.TemporaryDirectory() as tmp:
            path = _write(Path(tmp) / "run", k, n, c)
            t = time.perf_counter()
            ckptaudit.rank(path, "log_loss")
            rank_s = time.perf_counter() - t
            t = time.perf_counter()
            run = read_run(path)
            members = load_members(run)
            read_s = time.perf_counter() - t
            searcher = Searcher(members, parse_metrics(["log_loss"], [run])[0], families=("greedy",))
            res = searcher.search(np.ones(n))
            greedy_s = time.perf_counter() - t
            print(
                f"{k} checkpoints x {n} rows x {c} {'class' if c == 1 else 'classes'}: rank {rank_s:.1f} s, "
                f"greedy ensemble (read {read_s:.1f} s + search, {len(res.found['greedy'].members)} steps) {greedy_s:.1f} s "
                f"= {greedy_s / rank_s:.2f}x rank"
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="what", required=True)
    sim = sub.add_parser("sim")
    sim.add_argument("--runs", type=int, default=100)
    sim.add_argument("--resamples", type=int, default=200)
    sub.add_parser("speed")
    args = parser.parse_args()
    _sim(args) if args.what == "sim" else _speed(args)


if __name__ == "__main__":
    main()
