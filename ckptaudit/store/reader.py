"""Reading the run format ``ckptaudit/1`` (see docs/format.md): prediction arrays, and the front door.

A *run* is any folder holding ``run.json``; its checkpoints are the folders directly
inside ``checkpoints/``, each with ``meta.json`` and, to be scored, ``val.npz``. This
module owns the lazy read of a checkpoint's prediction arrays (:func:`read_predictions`,
:class:`PassReader`, one checkpoint at a time, so memory stays bounded whatever the size of
a sweep) and the guard that the validation rows did not change between checkpoints
(:class:`ValSetGuard`). It re-exports the format's records (:mod:`~ckptaudit.store.runformat`),
discovery and metadata (:mod:`~ckptaudit.store.discovery`) and the array checks
(:mod:`~ckptaudit.store.arraycheck`), so callers import the run format from here.
Prediction files are read with ``allow_pickle=False``: nothing in a run can execute code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ValSetChangedError
from .arraycheck import (
    PROBABILITY_SUM_TOLERANCE as PROBABILITY_SUM_TOLERANCE,
)
from .arraycheck import (
    check_arrays as check_arrays,
)
from .discovery import (
    discover as discover,
)
from .discovery import (
    discover_sweep as discover_sweep,
)
from .discovery import (
    read_checkpoint as read_checkpoint,
)
from .discovery import (
    read_run as read_run,
)
from .groups import check_groups, is_group_key
from .runformat import (
    CHECKPOINTS_DIR as CHECKPOINTS_DIR,
)
from .runformat import (
    FORMAT as FORMAT,
)
from .runformat import (
    MAX_COUNTER as MAX_COUNTER,
)
from .runformat import (
    META_FILE as META_FILE,
)
from .runformat import (
    OUTPUTS as OUTPUTS,
)
from .runformat import (
    RUN_FILE as RUN_FILE,
)
from .runformat import (
    SPLITS as SPLITS,
)
from .runformat import (
    TASKS as TASKS,
)
from .runformat import (
    Checkpoint as Checkpoint,
)
from .runformat import (
    Predictions as Predictions,
)
from .runformat import (
    Run as Run,
)
from .runformat import (
    SelectedBy as SelectedBy,
)
from .runformat import (
    Skipped as Skipped,
)
from .runformat import (
    is_in_progress as is_in_progress,
)
from .safeio import ReadBuffers, read_npz


class PassReader:
    """Reads one run's prediction files one after another, reusing memory (a pass).

    Each :meth:`read` returns what :func:`read_predictions` returns, except that
    ``output`` lies in a buffer that the next read overwrites (copy what must outlive the
    checkpoint), and ``target``, ``ids`` and ``input_hash`` equal to the previous
    checkpoint's are that same (read-only) array: a run's checkpoints share one copy of
    their validation targets, and the checks of a target already checked are not repeated.
    """

    def __init__(self, run: Run) -> None:
        self.run = run
        self.buffers = ReadBuffers()
        self._checked_target: np.ndarray | None = None

    def read(self, checkpoint: Checkpoint, split: str = "val") -> Predictions:
        """One split's arrays, read and validated (:class:`RunFormatError` on any problem)."""
        path = checkpoint.split_file(split)
        arrays = read_npz(path, ("target", "output"), ("id", "input_hash"), reuse=self.buffers, matching=is_group_key)
        target, output = arrays["target"], arrays["output"]
        ids, hashes = arrays.get("id"), arrays.get("input_hash")
        known = target is self._checked_target
        check_arrays(self.run, path, target, output, ids, hashes, target_checked=known)
        self._checked_target = target
        groups = _groups(path, arrays, target)
        return Predictions(path=path, target=target, output=output, ids=ids, input_hash=hashes, groups=groups)


def read_predictions(run: Run, checkpoint: Checkpoint, split: str = "val", reader: PassReader | None = None) -> Predictions:
    """Load and validate one split's arrays; raise :class:`RunFormatError` on any problem.

    With ``reader`` (a :class:`PassReader` of ``run``) memory is reused from one call to
    the next, as that class describes; without, every array is new and the caller's."""
    if reader is not None:
        return reader.read(checkpoint, split)
    path = checkpoint.split_file(split)
    arrays = read_npz(path, ("target", "output"), ("id", "input_hash"), matching=is_group_key)
    target, output = arrays["target"], arrays["output"]
    ids, hashes = arrays.get("id"), arrays.get("input_hash")
    check_arrays(run, path, target, output, ids, hashes)
    return Predictions(path=path, target=target, output=output, ids=ids, input_hash=hashes, groups=_groups(path, arrays, target))


def _groups(path: Path, arrays: dict[str, np.ndarray], target: np.ndarray) -> dict[str, np.ndarray] | None:
    """The file's group columns, checked (docs/format.md), or None when it has none."""
    groups = {k: v for k, v in arrays.items() if is_group_key(k)}
    if not groups:
        return None
    check_groups(path, groups, target.shape[0])
    return groups


def _same_groups(a: dict[str, np.ndarray] | None, b: dict[str, np.ndarray] | None) -> bool:
    """Whether two checkpoints' group columns are the same (a PassReader shares equal arrays)."""
    if a is b:
        return True
    if not a or not b:
        return not a and not b
    return a.keys() == b.keys() and all(a[k] is b[k] or np.array_equal(a[k], b[k]) for k in a)


class ValSetGuard:
    """Checks that every checkpoint of a run was validated on the same rows.

    Keeps only the first checkpoint's targets and ids, so memory stays bounded.
    """

    def __init__(self, run: Run) -> None:
        self.run = run
        self._first: tuple[Checkpoint, np.ndarray, np.ndarray | None] | None = None
        self._groups: dict[str, np.ndarray] | None = None  #: the first checkpoint's group columns

    def problem(self, checkpoint: Checkpoint, preds: Predictions) -> str | None:
        """A description of how ``preds`` differs from the first checkpoint's, or None."""
        if self._first is None:
            self._first = (checkpoint, preds.target, preds.ids)
            self._groups = preds.groups
            return None
        first, target, ids = self._first
        if not _same_groups(self._groups, preds.groups):
            return f"the validation set changed at epoch {checkpoint.epoch} ({checkpoint.name}): its group columns differ from epoch {first.epoch}"
        if preds.target is target and preds.ids is ids:
            return None  # NOTE: the very arrays (a PassReader shares equal ones): nothing to compare
        if target.shape != preds.target.shape:
            return f"the validation set changed at epoch {checkpoint.epoch} ({checkpoint.name}): {preds.n} rows, {target.shape[0]} at epoch {first.epoch}"
        if not np.array_equal(target, preds.target):
            changed = int(np.count_nonzero(np.any((target != preds.target).reshape(preds.n, -1), axis=1)))
            return f"the validation set changed at epoch {checkpoint.epoch} ({checkpoint.name}): {changed} of {preds.n} targets differ from epoch {first.epoch}"
        same_ids = (
            ids is None and preds.ids is None or (ids is not None and preds.ids is not None and np.array_equal(ids, preds.ids))
        )
        if not same_ids:
            return f"the validation set changed at epoch {checkpoint.epoch} ({checkpoint.name}): sample ids differ from epoch {first.epoch}"
        return None

    def check(self, checkpoint: Checkpoint, preds: Predictions) -> None:
        """Raise :class:`ValSetChangedError` when the validation set changed."""
        problem = self.problem(checkpoint, preds)
        if problem:
            raise ValSetChangedError(problem, self.run.name)
