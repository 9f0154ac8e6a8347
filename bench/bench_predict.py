"""Benchmark: `ckptaudit predict` serial vs --workers 2 vs Ray, and against a hand-written loop.

Builds a run of --checkpoints (default 50) checkpoints of a small MLP (20 -> 64 -> 64 -> 2,
weights only, like `ckptaudit import files` leaves) and a validation set of --rows (default
100,000) rows, then times, each as a fresh process so start-up (torch import, model build,
data hashing) counts:

  (a) ckptaudit predict RUN                       (serial, one process)
  (b) ckptaudit predict RUN --workers 2           (local process pool)
  (c) ckptaudit predict RUN --engine ray          (a local Ray started by the command)
  (d) a hand-written loop: for each checkpoint torch.load(weights_only=True),
      load_state_dict, forward in batches under inference_mode, np.savez val.npz

and the time per checkpoint of (a) against (d), from predict's own per-checkpoint timing
and from the totals. Usage:
  python bench/bench_predict.py [--checkpoints 50] [--rows 100000] [--device cpu] [--skip-ray]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
FEATURES = 20


def model():
    """The benchmark's architecture (no weights)."""
    from torch import nn

    return nn.Sequential(nn.Linear(FEATURES, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))


def data():
    """Validation rows: deterministic, --rows from the environment (set by this script)."""
    rows = int(os.environ.get("CKPTAUDIT_BENCH_ROWS", "100000"))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, FEATURES), dtype=np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)
    return x, y, np.arange(rows)


LOOP = """
import sys, time, json, pathlib
import numpy as np, torch
sys.path.insert(0, {bench_dir!r})
import bench_predict as b
run = pathlib.Path(sys.argv[1]); device = sys.argv[2]
net = b.model().to(device).eval()
x, y, ids = b.data()
X = torch.from_numpy(x)
per = []
for ckpt in sorted((run / "checkpoints").iterdir()):
    t = time.perf_counter()
    net.load_state_dict(torch.load(ckpt / "model.pt", map_location="cpu", weights_only=True))
    outs = []
    with torch.inference_mode():
        for i in range(0, len(X), 1024):
            outs.append(net(X[i:i + 1024].to(device)).cpu().numpy())
    with open(ckpt / "val.npz", "wb") as fh:
        np.savez(fh, target=y, output=np.concatenate(outs), id=ids)
    per.append(time.perf_counter() - t)
print(json.dumps(per))
"""


def build_run(root: Path, checkpoints: int) -> Path:
    import torch

    run = root / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"format": "ckptaudit/1", "task": "binary", "output": "logit"}))
    torch.manual_seed(0)
    net = model()
    for epoch in range(1, checkpoints + 1):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.01 * torch.randn_like(p))
        folder = run / "checkpoints" / f"epoch-{epoch:04d}"
        folder.mkdir()
        torch.save(net.state_dict(), folder / "model.pt")
        (folder / "meta.json").write_text(json.dumps({"epoch": epoch}))
    return run


def clear(run: Path) -> None:
    for npz in run.rglob("*.npz"):
        npz.unlink()


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return wall, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=int, default=50)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()
    env = {**os.environ, "CKPTAUDIT_BENCH_ROWS": str(args.rows), "PYTHONPATH": str(HERE.parents[1])}
    exe = [sys.executable, "-m", "ckptaudit"]
    spec = ["--model", f"{HERE}:model", "--data", f"{HERE}:data", "--device", args.device, "-f", "json"]
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        run = build_run(Path(tmp), args.checkpoints)
        wall, out = timed(exe + ["predict", str(run)] + spec, env)
        results["serial"] = wall
        per_ckpt = [e["seconds"] for e in json.loads(out)["entries"] if e["action"] == "predicted"]
        clear(run)
        results["workers2"], _ = timed(exe + ["predict", str(run), "--workers", "2"] + spec, env)
        clear(run)
        if not args.skip_ray:
            results["ray"], _ = timed(exe + ["predict", str(run), "--engine", "ray", "--workers", "2"] + spec, env)
            clear(run)
        wall, out = timed([sys.executable, "-c", LOOP.format(bench_dir=str(HERE.parent)), str(run), args.device], env)
        results["loop"] = wall
        loop_per = json.loads(out)
    n = args.checkpoints
    print(f"{n} checkpoints x {args.rows} rows, device {args.device}, {os.cpu_count()} CPUs")
    for key in ("serial", "workers2", "ray", "loop"):
        if key in results:
            print(f"  {key:9s} {results[key]:7.2f} s  ({results[key] / results['serial']:.2f}x serial)")
    med = float(np.median(per_ckpt))
    loop_med = float(np.median(loop_per))
    print(
        f"  per checkpoint (median, inside the process): predict {med * 1000:.1f} ms, hand loop {loop_med * 1000:.1f} ms,"
        f" ratio {med / loop_med:.2f}"
    )
    print(
        f"  per checkpoint (total wall / {n}): predict {results['serial'] / n * 1000:.1f} ms,"
        f" hand loop {results['loop'] / n * 1000:.1f} ms, ratio {results['serial'] / results['loop']:.2f}"
    )


if __name__ == "__main__":
    main()
