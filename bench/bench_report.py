"""Time `ckptaudit report` end to end on a generated sweep written in the run format.

    python bench/bench_report.py [--runs 20] [--checkpoints 500] [--rows 1000] [--out bench/out]

Writes RUNS runs of CHECKPOINTS binary checkpoints (val.npz with ROWS rows of logits whose
quality follows a noisy learning curve; logged train/val loss), then times gathering the
report (scoring, audit with its bootstrap, intervals, diagnostics) and rendering the page,
and prints the page's size. The page itself is checked in a browser by
tests/test_report_browser.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def write_sweep(root: Path, runs: int, checkpoints: int, rows: int, seed: int = 0) -> None:
    """A sweep of binary runs whose separation grows then plateaus, with noise."""
    rng = np.random.default_rng(seed)
    for r in range(runs):
        run = root / f"lr-{r:02d}"
        y = (rng.random(rows) < 0.1).astype(np.int64)
        noise = rng.normal(size=rows)
        (run / "checkpoints").mkdir(parents=True, exist_ok=True)
        chosen = None
        for e in range(1, checkpoints + 1):
            sep = 2.5 * (1 - np.exp(-e / (40 + 5 * r))) - 0.0008 * e
            logits = (sep * (2 * y - 1) + noise + rng.normal(scale=0.4, size=rows) - 1.5).astype(np.float32)
            ck = run / "checkpoints" / f"epoch-{e:04d}"
            ck.mkdir(exist_ok=True)
            np.savez(ck / "val.npz", target=y, output=logits, id=np.arange(rows))
            loss = 0.6 * np.exp(-e / 60) + 0.2 + 0.0002 * e + rng.normal(scale=0.005)
            meta = {"epoch": e, "step": e * 10, "logged": {"train_loss": loss * 0.8 - 0.0003 * e, "val_loss": loss}}
            (ck / "meta.json").write_text(json.dumps(meta))
            chosen = f"epoch-{min(e, checkpoints // 2):04d}"
        spec = {"format": "ckptaudit/1", "task": "binary", "output": "logit", "classes": ["no", "yes"], "chosen": chosen}
        (run / "run.json").write_text(json.dumps(spec))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--checkpoints", type=int, default=500)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from ckptaudit.render.html import write_html
    from ckptaudit.reporting import build_report

    sweep = args.out / f"report-sweep-{args.runs}x{args.checkpoints}x{args.rows}"
    if not (sweep / f"lr-{args.runs - 1:02d}" / "run.json").is_file():
        t = time.perf_counter()
        write_sweep(sweep, args.runs, args.checkpoints, args.rows)
        print(f"wrote the sweep in {time.perf_counter() - t:.1f} s: {sweep}")
    t = time.perf_counter()
    report = build_report([sweep], ["recall", "roc_auc"], resamples=args.resamples)
    gathered = time.perf_counter() - t
    t = time.perf_counter()
    size = write_html(report, args.out / "report-sweep.html")
    rendered = time.perf_counter() - t
    n = args.runs * args.checkpoints
    print(
        f"{args.runs} runs x {args.checkpoints} checkpoints x {args.rows} rows: gather {gathered:.1f} s "
        f"({1e3 * gathered / n:.1f} ms per checkpoint), render {rendered:.2f} s, page {size / 1e6:.2f} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
