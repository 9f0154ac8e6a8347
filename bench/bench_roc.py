"""Time ckptaudit's roc_auc and average_precision kernels per checkpoint (issue 10).

    python bench/bench_roc.py [--rows 100000,1000000,10000000] [--repeat 3] [--check-upto 1000000]

For each size: a binary validation set (10% positives) with float32 probability scores
(which tie at 10^7 rows, as real float32 outputs do), scored through the library's public
path (`prepare` + the kernel, exactly what `rank` calls per checkpoint). Prints the best of
--repeat wall times and the growth per 10x rows; up to --check-upto rows the values are
compared with scikit-learn's roc_auc_score / average_precision_score (and its time shown).
Beside each time: the pre-issue-10 kernel (a float64 stable argsort and a scattered write,
kept below for the comparison, up to --old-upto rows), the ratio old / new, and whether the
two values are bit for bit equal. With --multiclass, also the one-vs-rest macro ROC AUC /
average precision of one 1000-class float32-logit checkpoint (50,000 rows) against the
old kernel. Writes bench/out/bench_roc-latest.json.
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


def old_binary_auc(y: np.ndarray, s: np.ndarray) -> float:
    """The kernel before issue 10 (Mann-Whitney U from a stable argsort), for comparison."""
    pos = y.astype(bool)
    n_pos = int(np.count_nonzero(pos))
    n_neg = y.shape[0] - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    starts = np.flatnonzero(np.r_[True, sorted_s[1:] != sorted_s[:-1]])
    lengths = np.diff(np.r_[starts, s.shape[0]])
    avg_rank = starts + (lengths + 1) / 2.0
    ranks = np.empty(s.shape[0], dtype=np.float64)
    ranks[order] = np.repeat(avg_rank, lengths)
    u = ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def old_binary_ap(y: np.ndarray, s: np.ndarray) -> float:
    """The average precision kernel before issue 10, for comparison."""
    n_pos = int(np.count_nonzero(y))
    if n_pos == 0:
        return 0.0
    order = np.argsort(-s, kind="mergesort")
    s_sorted = s[order]
    y_sorted = y[order]
    ends = np.flatnonzero(np.r_[s_sorted[1:] != s_sorted[:-1], True])
    tps = np.cumsum(y_sorted)[ends].astype(np.float64)
    fps = (ends + 1) - tps
    prec = tps / (tps + fps)
    rec = tps / n_pos
    return float(np.sum(np.diff(np.r_[0.0, rec]) * prec))


OLD = {"roc_auc": old_binary_auc, "average_precision": old_binary_ap}


def old_value(metric: str, y: np.ndarray, s: np.ndarray) -> float:
    """What the old kernel computed for one checkpoint of a binary probability run."""
    prep = prepare("binary", "probability", y, s)
    return OLD[metric](prep.y, prep.score)


def old_multiclass(metric: str, prep) -> float:
    """The old one-vs-rest macro average: a one-hot matrix and one old kernel per column."""
    onehot = np.zeros((prep.y.shape[0], prep.n_classes), dtype=np.int64)
    onehot[np.arange(prep.y.shape[0]), prep.y] = 1
    s = prep.score
    return float(np.mean([OLD[metric](onehot[:, i], s[:, i]) for i in range(prep.n_classes)]))


def multiclass_case(args: argparse.Namespace) -> list[dict]:
    """One 1000-class float32-logit checkpoint: new vs old macro ROC AUC / AP."""
    rng = np.random.default_rng(1)
    rows, classes = args.mc_rows, args.mc_classes
    y = rng.integers(0, classes, rows)
    logit = rng.standard_normal((rows, classes), dtype=np.float32)
    logit[np.arange(rows), y] += np.float32(2.0)
    out = []
    for metric in METRICS:
        spec = parse_metric(metric)
        new_s, new_v = best_time(lambda m=metric, sp=spec: KERNELS[m](prepare("multiclass", "logit", y, logit), sp), args.repeat)
        old_s, old_v = best_time(lambda m=metric: old_multiclass(m, prepare("multiclass", "logit", y, logit)), 1)
        row = {
            "metric": metric + " (multiclass)",
            "rows": rows,
            "classes": classes,
            "seconds": new_s,
            "old_seconds": old_s,
            "equal_to_old": new_v == old_v,
            "value": new_v,
        }
        print(
            f"{metric + ' 1000-class':28} {rows:>10} {new_s:9.4f} {old_s:9.4f} {old_s / new_s:7.1f}x "
            f"{'equal' if new_v == old_v else 'DIFFERENT':>9}",
            flush=True,
        )
        out.append(row)
    return out


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
    parser.add_argument("--old-upto", type=int, default=10_000_000, help="time the old kernel up to this many rows")
    parser.add_argument("--multiclass", action="store_true", help="also the 1000-class one-vs-rest case")
    parser.add_argument("--mc-rows", type=int, default=50_000)
    parser.add_argument("--mc-classes", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = parser.parse_args(argv)
    sizes = [int(float(x)) for x in args.rows.split(",")]
    results = []
    print(
        f"{'metric':18} {'rows':>10} {'seconds':>9} {'x prev':>7} {'sklearn s':>10} {'|diff|':>9} {'old s':>9} {'old/new':>8} {'old==new':>8}"
    )
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
                "old_seconds": None,
                "equal_to_old": None,
            }
            if rows <= args.old_upto:
                row["old_seconds"], old = best_time(lambda m=metric, y=y, s=s: old_value(m, y, s), args.repeat)
                row["equal_to_old"] = old == value
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
            old_s = "-" if row["old_seconds"] is None else f"{row['old_seconds']:.4f}"
            ratio = "-" if row["old_seconds"] is None else f"{row['old_seconds'] / seconds:.1f}x"
            same = "-" if row["equal_to_old"] is None else ("yes" if row["equal_to_old"] else "NO")
            print(
                f"{metric:18} {rows:>10} {seconds:9.4f} {growth:>7} {sk:>10} {diff:>9} {old_s:>9} {ratio:>8} {same:>8}",
                flush=True,
            )
    if args.multiclass:
        print(f"{'case':28} {'rows':>10} {'seconds':>9} {'old s':>9} {'old/new':>8} {'old==new':>9}")
        results += multiclass_case(args)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "repeat": args.repeat, "results": results}
    (args.out / "bench_roc-latest.json").write_text(json.dumps(report, indent=1))
    mismatched = [r for r in results if r.get("sklearn_diff") is not None and r["sklearn_diff"] > 1e-10]
    mismatched += [r for r in results if r.get("equal_to_old") is False]
    return 1 if mismatched else 0


if __name__ == "__main__":
    sys.exit(main())
