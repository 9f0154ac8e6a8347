"""Simulated runs whose truth is known, for checking the combination search's honesty.

:func:`equal_truth_run` draws 50 checkpoints of exactly equal truth under accuracy: on the
"signal" rows every checkpoint predicts the same confident probability (all right with
probability 0.85), on the "noise" rows each checkpoint outputs its own random probability
while the label is a fair coin independent of every output. Any combination of them has
the same expected accuracy as any single checkpoint, so the true gain of whatever the search
picks is exactly zero: a naive gain above zero is optimism, and adopting is a false adoption.
:func:`simulate` measures both over many runs (bench/bench_combine.py prints the figures).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


def equal_truth_run(path: Path, *, checkpoints: int = 50, n: int = 1000, noise_share: float = 0.5, seed: int = 0) -> Path:
    """Write a binary probability run of ``checkpoints`` equal-truth checkpoints on ``n`` rows."""
    import json

    rng = np.random.default_rng(seed)
    noise = rng.random(n) < noise_share
    y = np.where(noise, rng.integers(0, 2, n), (rng.random(n) < 0.85).astype(np.int64))
    (path / "checkpoints").mkdir(parents=True)
    (path / "run.json").write_text(json.dumps({"format": "ckptaudit/1", "task": "binary", "output": "probability"}))
    for k in range(checkpoints):
        out = np.where(noise, rng.random(n), 0.85)
        folder = path / "checkpoints" / f"epoch-{k:04d}"
        folder.mkdir()
        (folder / "meta.json").write_text(json.dumps({"epoch": k}))
        np.savez(folder / "val.npz", target=y, output=out)
    return path


@dataclass(frozen=True)
class SimulationFigures:
    """Averages over simulated runs (true gain 0 for every combination)."""

    runs: int
    naive_gain: float  #: mean gain on the validation rows the search chose on
    corrected_gain: float  #: mean selection-corrected gain
    mean_abs_error: float  #: mean |corrected gain - true gain|
    false_adoption: float  #: share of runs where a combination was adopted


def simulate(
    root: Path, *, runs: int = 100, checkpoints: int = 50, n: int = 1000, resamples: int = 200, seed: int = 0
) -> SimulationFigures:
    """Combine ``runs`` equal-truth runs under accuracy (writing nothing) and average."""
    from ..store.reader import read_run
    from . import combine_run

    naive, corrected, adopted = [], [], 0
    for i in range(runs):
        path = equal_truth_run(root / f"sim-{i:04d}", checkpoints=checkpoints, n=n, seed=seed + i)
        result = combine_run(read_run(path), "accuracy", resamples=resamples, seed=seed + i, dry_run=True)
        naive.append(result.naive_gain)
        corrected.append(result.corrected_gain)
        adopted += bool(result.adopt)
    c = np.array(corrected)
    return SimulationFigures(runs, float(np.mean(naive)), float(c.mean()), float(np.abs(c).mean()), adopted / runs)
