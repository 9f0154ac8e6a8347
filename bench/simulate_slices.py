"""Simulation: selection statistics of worst_group(accuracy), with known truth (issue 24).

Every run has 50 checkpoints that are equal in truth: each predicts each row's label
correctly with the probability of that row's group (4 groups of equal size), independently
per checkpoint. So no checkpoint is worse than another (a checkpoint called worse,
outside the model confidence set, is a false alarm), and the worst-group accuracy of any
checkpoint on new data is the lowest group accuracy (the truth the selection-corrected
estimate of the winner should meet).

Designs: ``distinct`` (group accuracies 0.90, 0.85, 0.80, 0.70: one slice is clearly the
hardest, as in Waterbirds) and ``equal`` (all 0.80: every slice is equally hard, the
plug-in minimum of four noisy group accuracies is then biased low whatever the
selection; printed as a limitation).

    python bench/simulate_slices.py                 # 100 runs per design at n=4,000
    python bench/simulate_slices.py --runs 20       # quicker
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ckptaudit.metrics.spec import parse_metric
from ckptaudit.stats import selection

DESIGNS = {"distinct": (0.90, 0.85, 0.80, 0.70), "equal": (0.80, 0.80, 0.80, 0.80)}


def null_run(rng: np.random.Generator, n: int, checkpoints: int, accuracies: tuple[float, ...]):
    """Targets, group labels and ``checkpoints`` equal-in-truth predictions."""
    y = rng.integers(0, 2, n)
    groups = np.arange(n) % len(accuracies)
    p = np.asarray(accuracies)[groups]
    return y, groups, [np.where(rng.random(n) < p, y, 1 - y) for _ in range(checkpoints)]


def trials(
    n: int = 4000, checkpoints: int = 50, design: str = "distinct", runs: int = 100, resamples: int = 500, seed: int = 0
) -> dict[str, float]:
    """Error rates of worst_group(accuracy) over ``runs`` null runs: false-alarm rate (any
    checkpoint outside the confidence set), mean error of the raw winner value and of the
    selection-corrected estimate against the truth, and the estimate interval's coverage."""
    accuracies = DESIGNS[design]
    truth = min(accuracies)
    spec = parse_metric("worst_group(accuracy)")
    rng = np.random.default_rng([seed, n, checkpoints])
    alarms = covered = 0
    raw_err, new_err = [], []
    for r in range(runs):
        y, groups, preds = null_run(rng, n, checkpoints, accuracies)
        ev = selection.evaluate_arrays("binary", "label", spec, y, preds, groups=groups)
        sel = selection.select(ev, resamples=resamples, seed=r)
        alarms += len(sel.tied_best) < checkpoints
        e = sel.estimate
        assert e is not None
        raw_err.append(e.raw - truth)
        new_err.append(e.expected - truth)
        covered += e.interval[0] <= truth <= e.interval[1]
    return {
        "false_alarm_rate": alarms / runs,
        "raw_error": float(np.mean(raw_err)),
        "corrected_error": float(np.mean(new_err)),
        "coverage": covered / runs,
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--resamples", type=int, default=500)
    args = parser.parse_args()
    for design in DESIGNS:
        start = time.perf_counter()
        got = trials(args.n, 50, design, args.runs, args.resamples)
        print(
            f"{design:>8} groups {DESIGNS[design]}, n={args.n}, 50 equal checkpoints, {args.runs} runs: "
            f"false alarms {got['false_alarm_rate']:.1%}, raw winner {got['raw_error']:+.4f}, "
            f"corrected {got['corrected_error']:+.4f}, interval coverage {got['coverage']:.0%} "
            f"({time.perf_counter() - start:.0f} s)"
        )


if __name__ == "__main__":
    main()
