"""Simulation: how often does ``stopped-too-early`` fire on a run whose metric has stopped improving?

Known truth by construction: a binary task whose N validation rows each have a latent
probability q_i (Beta-distributed, mean ``--accuracy``) of being predicted correctly, drawn
once per row, so the checkpoints' errors are correlated across checkpoints as on real
validation sets; each checkpoint then predicts each row correctly with probability q_i + d_t,
where d_t is the checkpoint's true improvement. Under the null the last five checkpoints
have d_t = 0 (the three before them improve, which the window must ignore); under the
alternative the metric keeps rising by ``--gain`` per epoch. The finding's test
(:func:`ckptaudit.stats.trend.trend_at_end`) runs on the same per-row data and resampling
engine as the audit.

Usage: python bench/simulate_stopped_too_early.py [--runs 400] [--rows 1000] [--seed 0]
Target: false alarms <= 5% (the test's one-sided level) for accuracy and log_loss.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from ckptaudit.metrics.spec import parse_metric
from ckptaudit.stats.rows import evaluate_arrays
from ckptaudit.stats.trend import trend_at_end


def _run(rng: np.random.Generator, rows: int, accuracy: float, gains: list[float]) -> tuple[np.ndarray, list[np.ndarray]]:
    y = rng.integers(0, 2, rows)
    q = rng.beta(8 * accuracy, 8 * (1 - accuracy), rows)
    outputs = []
    for d in gains:
        correct = rng.random(rows) < np.clip(q + d, 0, 1)
        confidence = rng.uniform(0.55, 0.95, rows)
        p_true = np.where(correct, confidence, 1 - confidence)
        outputs.append(np.where(y == 1, p_true, 1 - p_true))
    return y, outputs


def fire_rate(
    metric: str, *, runs: int, rows: int, seed: int, accuracy: float = 0.8, gain: float = 0.0, resamples: int = 500
) -> float:
    """Share of simulated runs on which the finding's test fires (``gain`` 0: the null)."""
    rng = np.random.default_rng(seed)
    spec = parse_metric(metric)
    # three improving epochs, then five with a true improvement of ``gain`` per epoch
    gains = [-0.09, -0.06, -0.03] + [gain * t for t in range(5)]
    fired = 0
    for k in range(runs):
        y, outputs = _run(rng, rows, accuracy, gains)
        trend = trend_at_end(evaluate_arrays("binary", "probability", spec, y, outputs), resamples=resamples, seed=k)
        fired += trend is not None and trend.improving
    return fired / runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = {}
    for metric in ("accuracy", "log_loss"):
        out[metric] = {
            "false_alarm_flat": fire_rate(metric, runs=args.runs, rows=args.rows, seed=args.seed),
            "power_gain_0.01_per_epoch": fire_rate(metric, runs=args.runs // 4, rows=args.rows, seed=args.seed + 1, gain=0.01),
        }
    print(json.dumps({"runs": args.runs, "rows": args.rows, **out}, indent=1))


if __name__ == "__main__":
    main()
