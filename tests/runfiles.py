"""Writing tiny runs in the ckptaudit/1 format for tests that score through the CLI's path."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ckptaudit.metrics.evaluation import CheckpointScore, parse_metrics
from ckptaudit.ranking import score_runs
from ckptaudit.store.reader import discover


def write_run(path: Path, task: str, output: str, target: Any, outputs: Sequence[Any], **run_json: Any) -> Path:
    """A run folder with one checkpoint per entry of ``outputs`` (all on ``target``)."""
    (path / "checkpoints").mkdir(parents=True)
    (path / "run.json").write_text(json.dumps({"format": "ckptaudit/1", "task": task, "output": output, **run_json}))
    for epoch, out in enumerate(outputs):
        ckpt = path / "checkpoints" / f"epoch-{epoch:04d}"
        ckpt.mkdir()
        (ckpt / "meta.json").write_text(json.dumps({"epoch": epoch}))
        np.savez(ckpt / "val.npz", target=np.asarray(target), output=np.asarray(out))
    return path


def score(path: Path, metrics: Sequence[str]) -> list[CheckpointScore]:
    """Every checkpoint's scores, computed as `ckptaudit rank` computes them."""
    runs = discover([path])
    return score_runs(runs, parse_metrics(list(metrics), runs))


def values(path: Path, metric: str) -> list[float | None]:
    """One metric's value per checkpoint."""
    return [s.values[0] for s in score(path, [metric])]
