"""Time ckptaudit's roc_auc and average_precision kernels per checkpoint (issue 10).

    python bench/bench_roc.py [--rows 100000,1000000,10000000] [--repeat 3] [--check-upto 1000000]

For each size: a binary validation set (10% positives) with float32 probability scores
(which tie at 10^7 rows, as real float32 outputs do), scored through the library's public
path (`prepare` + the kernel, exactly what `rank` calls per checkpoint). Prints the best of
--repeat wall times and the growth per 10x rows; up to --check-upto rows the values are
compared with scikit-learn's roc_auc_score / average_precision_score (and its time shown).
Writes bench/out/bench_roc-latest.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ckptaudit.metrics.kernels import KERNELS, prepare  # noqa: E402
from ckptaudit.metrics.spec import parse_metric  # noqa: E402

METRICS = ("roc_auc", "average_precision")


def data(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Targets (int64, 10% positive) and float32 probabilities that separate them a little."""
    rng = np.random.default_rng(seed)
    y = (rng.random(rows) < 0.1).astype(np.int64)
    logit = rng.standard_normal(rows, dtype=np.float32) + y.astype(np.float32) - 1.5
    return y, (1 / (1 + np.exp(-logit))).astype(np.float32)


def ckptaudit_value(metric: str, y: np.ndarray, s: np.ndarray) -> float:
    """The value `rank` computes for one checkpoint of a binary probability run."""
    return KERNELS[metric](prepare("binary", "probability", y, s), parse_metric(metric))


def best_time(fn, repeat: int) -> tuple[float, float]:
    """(best seconds, last value) of ``repeat`` calls."""
    times, value = [], float("nan")
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return min(times), value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="100000,1000000,10000000", help="comma-separated sizes")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--check-upto", type=int, default=1_000_000, help="compare with scikit-learn up to this many rows")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = parser.parse_args(argv)
    sizes = [int(float(x)) for x in args.rows.split(",")]
    results = []
    print(f"{'metric':18} {'rows':>10} {'seconds':>9} {'x prev':>7} {'sklearn s':>10} {'|diff|':>9}")
    for metric in METRICS:
        previous = None
        for rows in sizes:
            y, s = data(rows)
            seconds, value = best_time(lambda m=metric, y=y, s=s: ckptaudit_value(m, y, s), args.repeat)
            row = {
                "metric": metric,
                "rows": rows,
                "seconds": seconds,
                "value": value,
                "growth": None,
                "sklearn_seconds": None,
                "sklearn_diff": None,
            }
            if previous is not None:
                row["growth"] = seconds / previous
            previous = seconds
            if rows <= args.check_upto:
                from sklearn.metrics import average_precision_score, roc_auc_score

                reference = roc_auc_score if metric == "roc_auc" else average_precision_score
                row["sklearn_seconds"], expected = best_time(lambda f=reference, y=y, s=s: float(f(y, s)), args.repeat)
                row["sklearn_diff"] = abs(value - expected)
                if row["sklearn_diff"] > 1e-10:
                    print(f"MISMATCH: {metric} at {rows} rows: ckptaudit {value!r}, scikit-learn {expected!r}")
            results.append(row)
            growth = "-" if row["growth"] is None else f"{row['growth']:.1f}"
            sk = "-" if row["sklearn_seconds"] is None else f"{row['sklearn_seconds']:.3f}"
            diff = "-" if row["sklearn_diff"] is None else f"{row['sklearn_diff']:.1e}"
            print(f"{metric:18} {rows:>10} {seconds:9.4f} {growth:>7} {sk:>10} {diff:>9}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "repeat": args.repeat, "results": results}
    (args.out / "bench_roc-latest.json").write_text(json.dumps(report, indent=1))
    mismatched = [r for r in results if r["sklearn_diff"] is not None and r["sklearn_diff"] > 1e-10]
    return 1 if mismatched else 0


if __name__ == "__main__":
    sys.exit(main())
