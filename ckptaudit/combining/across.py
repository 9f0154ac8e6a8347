"""``combine SWEEP --across``: one pool of checkpoints from every run of a sweep.

Fine-tunes of one base model (a sweep of runs validated on the same rows) are combined as
one library: ensembles of their predictions, or (with ``--model``) uniform averages and a
greedy soup of their weights (Wortsman et al.'s model soups). Every run must have the same
task and output and the very same validation rows (targets and ids), else the sweep is
refused. The pool's members are named ``RUN/CHECKPOINT`` (RUN relative to the sweep), and an
adopted combination is written as a new run ``SWEEP/combined-across`` holding one checkpoint,
so that ``rank SWEEP`` lists it beside the runs it came from.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..errors import RunFormatError, UsageError
from ..store.reader import RUN_FILE, Run
from .ensembles import Members, load_members

#: the run an adopted --across combination is written into, under the sweep's folder
ACROSS_RUN = "combined-across"


def sweep_root(runs: Sequence[Run]) -> Path:
    """The folder holding every run of the sweep."""
    return Path(os.path.commonpath([str(r.path.parent.resolve()) for r in runs]))


def pooled_members(runs: Sequence[Run]) -> Members:
    """Every run's candidate checkpoints as one :class:`Members` (names ``RUN/CHECKPOINT``)."""
    runs = [r for r in runs if r.path.name != ACROSS_RUN]
    if len(runs) < 2:
        raise UsageError("--across needs a sweep of at least 2 runs")
    root = sweep_root(runs)
    first = runs[0]
    pooled: list[Members] = []
    for run in runs:
        if (run.task, run.output, run.positive_class) != (first.task, first.output, first.positive_class):
            raise RunFormatError(f"--across: task/output differ from {first.name}", run.path)
        m = load_members(run, minimum=1)
        if pooled:
            base = pooled[0]
            same_ids = (m.ids is None and base.ids is None) or (
                m.ids is not None and base.ids is not None and np.array_equal(m.ids, base.ids)
            )
            if not np.array_equal(m.target, base.target) or not same_ids:
                raise RunFormatError(f"--across: validated on other rows than {first.name}", run.path)
        rel = os.path.relpath(run.path.resolve(), root)
        pooled.append(replace(m, checkpoints=tuple(replace(c, name=f"{rel}/{c.name}") for c in m.checkpoints)))
    base = pooled[0]
    probs = np.concatenate([m.probs for m in pooled])
    checkpoints = tuple(c for m in pooled for c in m.checkpoints)
    notes = tuple(n for m in pooled for n in m.notes)
    return replace(base, checkpoints=checkpoints, probs=probs, notes=notes)


def across_run(runs: Sequence[Run]) -> Path:
    """The folder of the run that --across writes into (created with the sweep's run.json
    keys when absent)."""
    first = [r for r in runs if r.path.name != ACROSS_RUN][0]
    path = sweep_root(runs) / ACROSS_RUN
    (path / "checkpoints").mkdir(parents=True, exist_ok=True)
    if not (path / RUN_FILE).exists():
        keep = {
            k: v for k, v in first.raw.items() if k in ("format", "task", "output", "classes", "num_classes", "positive_class")
        }
        (path / RUN_FILE).write_text(json.dumps(keep, indent=2) + "\n")
    return path
