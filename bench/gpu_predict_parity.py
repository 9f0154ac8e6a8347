"""Device check: does `ckptaudit predict` on a GPU give the same outputs and the same ranking as on CPU?

Builds bench_predict's run (an MLP, --checkpoints checkpoints, --rows validation rows), predicts it
three ways — `--device cpu`, `--device cuda`, `--device cuda --autocast` — each into its own copy,
and prints, per way: wall time, the largest |output - cpu output| over every checkpoint, how many
label predictions (sign of the logit) differ from CPU's, and whether `rank -m accuracy -m roc_auc`
orders the checkpoints identically to CPU. Needs a CUDA machine; CI never runs it.
Usage: python bench/gpu_predict_parity.py [--checkpoints 50] [--rows 100000]
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

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))
import bench_predict as bp  # noqa: E402


def _ranking(run: Path, env: dict[str, str]) -> list[tuple[str, float, float]]:
    cmd = [sys.executable, "-m", "ckptaudit", "rank", str(run), "-m", "accuracy", "-m", "roc_auc", "-f", "json"]
    rows = json.loads(subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout)
    return [(r["checkpoint"], r["accuracy"], r["roc_auc"]) for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=int, default=50)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    env = {**os.environ, "CKPTAUDIT_BENCH_ROWS": str(args.rows), "PYTHONPATH": str(HERE.parents[1])}
    spec = ["--model", f"{bp.HERE}:model", "--data", f"{bp.HERE}:data", "-f", "json"]
    ways = {"cpu": ["--device", "cpu"], "cuda": ["--device", "cuda"], "cuda-autocast": ["--device", "cuda", "--autocast"]}
    with tempfile.TemporaryDirectory() as tmp:
        base = bp.build_run(Path(tmp), args.checkpoints)
        outputs: dict[str, dict[str, np.ndarray]] = {}
        rankings: dict[str, object] = {}
        for way, flags in ways.items():
            run = Path(tmp) / way
            shutil.copytree(base, run)
            t = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-m", "ckptaudit", "predict", str(run), *spec, *flags], capture_output=True, text=True, env=env
            )
            wall = time.perf_counter() - t
            if proc.returncode != 0:
                print(f"{way}: predict failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
                continue
            outputs[way] = {c.name: np.load(c / "val.npz")["output"] for c in sorted((run / "checkpoints").iterdir())}
            try:
                rankings[way] = _ranking(run, env)
            except Exception as exc:  # the figure is what matters; say why it is missing
                rankings[way] = f"rank failed: {exc}"
            print(f"{way:14s} predict {wall:6.2f} s")
        ref = outputs.get("cpu")
        for way, outs in outputs.items():
            if way == "cpu" or ref is None:
                continue
            diff = max(float(np.max(np.abs(outs[k].astype(np.float64) - ref[k]))) for k in ref)
            flips = sum(int(np.sum((outs[k] > 0) != (ref[k] > 0))) for k in ref)
            same = rankings.get(way) == rankings.get("cpu")
            order_same = (
                [r[0] for r in rankings[way]] == [r[0] for r in rankings["cpu"]] if isinstance(rankings.get(way), list) else False
            )
            print(
                f"{way:14s} max|out-cpu| {diff:.3g}  label flips {flips} of {len(ref) * args.rows}  "
                f"rank values identical: {same}  rank order identical: {order_same}"
            )


if __name__ == "__main__":
    main()
