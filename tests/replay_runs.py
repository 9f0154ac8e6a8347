"""Recorded runs whose logged monitor follows a given sequence, for the replay tests."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ckptaudit.replay import parse_rule, replay_run
from ckptaudit.store.reader import read_run

#: scripted monitor sequences: ties, plateaus, small improvements (below and above min_delta)
SEQUENCES = [
    [1.0, 0.9, 0.95, 0.97, 0.96, 0.98, 0.99, 0.85, 0.9],
    [1.0, 0.9, 0.9, 0.9, 0.8, 0.8, 0.8, 0.8, 0.81],
    [0.5, 0.6, 0.4, 0.4001, 0.3995, 0.45, 0.3, 0.31, 0.32, 0.33],
    [0.3, 0.31, 0.29, 0.295, 0.2899, 0.2898, 0.35, 0.36],
    [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2],
]


def write_sequence_run(path: Path, monitor: Sequence[float], name: str = "val_loss", seed: int = 0) -> Path:
    """A binary run with one checkpoint per value of ``monitor`` (logged as ``name``, epoch
    = index) and random probability outputs on 60 rows."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 60)
    (path / "checkpoints").mkdir(parents=True)
    (path / "run.json").write_text(json.dumps({"format": "ckptaudit/1", "task": "binary", "output": "probability"}))
    for epoch, value in enumerate(monitor):
        ckpt = path / "checkpoints" / f"epoch-{epoch:04d}"
        ckpt.mkdir()
        logged = {name: float(value), "train_loss": 1.0 / (epoch + 1), "wall_time": 10.0 * (epoch + 1)}
        (ckpt / "meta.json").write_text(json.dumps({"epoch": epoch, "step": epoch + 1, "logged": logged}))
        p = np.clip(0.5 + 0.3 * (2 * y - 1) * rng.random(60), 0, 1)
        np.savez(ckpt / "val.npz", target=y, output=p)
    return path


def replayed(path: Path, rule: str, metric: str = "accuracy"):
    """The one :class:`~ckptaudit.replay.RuleResult` of ``rule`` on the run at ``path``."""
    (result,) = replay_run(read_run(path), [parse_rule(rule)], metric, resamples=200)
    return result


def epochs_of(names: Sequence[str]) -> set[int]:
    """Epoch numbers of checkpoint names written by :func:`write_sequence_run`."""
    return {int(n.split("-")[1]) for n in names}
