"""The run format's vocabulary: the names, limits and plain records of ``ckptaudit/1``.

This module owns the constants of the format (file and folder names, tasks, output kinds,
the largest epoch or step) and the frozen records a read produces (:class:`Run`,
:class:`Checkpoint`, :class:`Predictions`, :class:`Skipped`, :class:`SelectedBy`). It reads
nothing itself; :mod:`ckptaudit.store.discovery` builds these records from disk and
:mod:`ckptaudit.store.reader` re-exports them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "ckptaudit/1"
TASKS = ("binary", "multiclass", "multilabel", "regression")
OUTPUTS = ("probability", "logit", "label", "value")
RUN_FILE = "run.json"
META_FILE = "meta.json"
CHECKPOINTS_DIR = "checkpoints"
#: the folder-name prefix of every checkpoint ``combine`` writes (:mod:`ckptaudit.combining.marks`)
COMBINED_PREFIX = "combined-"
SPLITS = ("val", "train")


#: why an imported run without a task cannot be scored by a metric that needs predictions
#: (run.json gets its task from ``ckptaudit predict``; logged metrics rank it before that)
NO_TASK_YET = "no 'task' yet: `ckptaudit predict` reads it from the data (or give --task to import/predict)"

#: epochs and steps are integers from 0 to this (they must fit a 64-bit signed integer)
MAX_COUNTER = 2**63 - 1


def is_in_progress(name: str) -> bool:
    """A checkpoint folder still being written: ignored by every command."""
    return name.startswith(".") or name.endswith(".tmp")


@dataclass(frozen=True)
class SelectedBy:
    """What training used to pick its best checkpoint (run.json ``selected_by``)."""

    metric: str
    mode: str | None


@dataclass(frozen=True)
class Skipped:
    """An input a command left out, with the reason (plain data).

    ``kind`` is ``"error"`` when something is broken (an unreadable run.json, a changed
    validation set: exit 2) and ``"skipped"`` when nothing is wrong but there is nothing
    to score (a run with no checkpoint yet, a metric that does not apply to the run, a
    folder under checkpoints/ that is not a checkpoint: exit 0 unless ``--strict``).
    """

    run: str
    path: str
    reason: str
    kind: str = "error"
    checkpoint: str | None = None  #: the folder under checkpoints/, when one folder (not the run) is left out

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"

    def as_dict(self) -> dict[str, str | None]:
        """JSON shape: run, checkpoint (null for a whole run), path, reason, kind."""
        return {"run": self.run, "checkpoint": self.checkpoint, "path": self.path, "reason": self.reason, "kind": self.kind}


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint folder and its meta.json."""

    path: Path
    name: str
    epoch: int
    step: int | None
    logged: dict[str, float]
    #: meta.json "metrics_only": logged metrics without weights or predictions (an HF
    #: evaluation whose folder rotation deleted); a missing val.npz is then not an error
    metrics_only: bool = False

    @property
    def order_key(self) -> tuple[int, int, str]:
        """Checkpoints are ordered by epoch, then step, never by name or mtime."""
        return (self.epoch, -1 if self.step is None else self.step, self.name)

    def split_file(self, split: str) -> Path:
        """Path of ``val.npz`` or ``train.npz``."""
        return self.path / f"{split}.npz"

    def has_split(self, split: str) -> bool:
        """Whether the checkpoint recorded predictions for ``split`` (anything of that name
        counts: a FIFO or folder named val.npz is then refused with a message when read)."""
        return os.path.lexists(os.path.join(self.path, f"{split}.npz"))  # no Path built: called per checkpoint


@dataclass(frozen=True)
class Run:
    """A run: its run.json fields and its checkpoints in epoch order."""

    path: Path
    name: str
    #: "" (no task yet) only for an imported run not yet predicted (run.json without a
    #: task): such a run has no prediction files and is ranked by its logged metrics only
    task: str
    output: str  #: "" when run.json has none (an imported run not yet predicted)
    classes: tuple[str, ...] | None
    positive_class: int
    selected_by: SelectedBy | None
    chosen: str | None
    checkpoints: tuple[Checkpoint, ...]
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    #: the number of classes (labels) run.json declares (``classes`` or ``num_classes``;
    #: 2 for binary), or None where only the output width can tell
    num_classes: int | None = None
    #: folders under checkpoints/ that are not checkpoints (no meta.json), left out with a note
    skipped: tuple[Skipped, ...] = field(default=(), compare=False)
    #: the name index of :meth:`checkpoint`, built on first use (a cache, not data: a copy
    #: made with ``replace`` or ``Run(**run.__dict__)`` rebuilds it for its own checkpoints)
    _lookup: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def _by_name(self) -> dict[str, Checkpoint]:
        """Checkpoint name -> checkpoint (the first of a name), built once per tuple of checkpoints."""
        # NOTE: keyed on the identity of ``checkpoints``, so that a copy sharing this dict
        # with other checkpoints never reads a stale index.
        if self._lookup.get("of") is not self.checkpoints:
            index: dict[str, Checkpoint] = {}
            for c in self.checkpoints:
                index.setdefault(c.name, c)
            self._lookup.clear()
            self._lookup.update(of=self.checkpoints, by_name=index)
        return self._lookup["by_name"]

    def checkpoint(self, name: str) -> Checkpoint | None:
        """The checkpoint called ``name`` (an alias such as ``best -> epoch-0009`` names its
        target), or None. A dictionary lookup, whatever the number of checkpoints."""
        found = self._by_name().get(name)
        if found is not None or name in ("", ".", "..") or "/" in name:
            return found
        link = self.path / CHECKPOINTS_DIR / name
        if not link.is_symlink():
            return None
        target = os.path.realpath(link)
        # NOTE: an alias normally points into checkpoints/ itself: look its target up by
        # name; anything else falls back to comparing every checkpoint's real path.
        head, base = os.path.split(target)
        candidate = self._by_name().get(base)
        if candidate is not None and head == os.path.realpath(self.path / CHECKPOINTS_DIR):
            if os.path.realpath(candidate.path) == target:
                return candidate
        return next((c for c in self.checkpoints if os.path.realpath(c.path) == target), None)

    def logged_names(self) -> set[str]:
        """Every metric name logged by any checkpoint."""
        return {k for c in self.checkpoints for k in c.logged}


@dataclass(frozen=True)
class Predictions:
    """One split of one checkpoint: ``target``, ``output`` and the optional
    ``ids``, ``input_hash`` and group columns (:mod:`ckptaudit.store.groups`)."""

    path: Path
    target: np.ndarray
    output: np.ndarray
    ids: np.ndarray | None = None
    input_hash: np.ndarray | None = None
    #: the group columns (``group`` / ``group:<name>`` -> (N,) array), None when the file has none
    groups: dict[str, np.ndarray] | None = None

    @property
    def n(self) -> int:
        """Number of rows."""
        return int(self.target.shape[0])
