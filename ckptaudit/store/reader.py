"""Reading the run format ``ckptaudit/1`` (see docs/format.md).

A *run* is any folder holding ``run.json``; its checkpoints are the folders directly
inside ``checkpoints/``, each with ``meta.json`` and, to be scored, ``val.npz``. This
module finds runs under the paths a user gives, reads their metadata eagerly (it is
small) and their prediction arrays lazily, one checkpoint at a time, so memory stays
bounded by one checkpoint whatever the size of a sweep. Prediction files are read with
``allow_pickle=False``: nothing in a run can execute code.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard, cast

import numpy as np

from ..errors import RunFormatError, ValSetChangedError
from .safeio import ReadBuffers, read_json, read_npz

FORMAT = "ckptaudit/1"
TASKS = ("binary", "multiclass", "multilabel", "regression")
OUTPUTS = ("probability", "logit", "label", "value")
RUN_FILE = "run.json"
META_FILE = "meta.json"
CHECKPOINTS_DIR = "checkpoints"
SPLITS = ("val", "train")


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
    task: str
    output: str
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
    ``ids`` and ``input_hash`` arrays."""

    path: Path
    target: np.ndarray
    output: np.ndarray
    ids: np.ndarray | None = None
    input_hash: np.ndarray | None = None

    @property
    def n(self) -> int:
        """Number of rows."""
        return int(self.target.shape[0])


def _read_json(path: Path) -> Any:
    try:
        return read_json(path)
    except FileNotFoundError:
        raise RunFormatError(f"no {path.name}", path.parent) from None


def _is_int(v: Any) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def read_checkpoint(path: Path) -> Checkpoint:
    """Read one checkpoint folder's meta.json."""
    meta_path = os.path.join(path, META_FILE)
    try:
        meta = read_json(meta_path)
    except FileNotFoundError:
        raise RunFormatError(f"no {META_FILE}", path) from None
    return _checkpoint_from(path, meta_path, meta)


def _checkpoint_from(path: Path, meta_path: str, meta: Any) -> Checkpoint:
    """A checkpoint from its parsed meta.json (checked here)."""
    if not isinstance(meta, dict):
        raise RunFormatError("must hold a JSON object", meta_path)
    epoch = meta.get("epoch")
    if not _is_int(epoch):
        raise RunFormatError("'epoch' is required and must be an integer", meta_path)
    if not 0 <= epoch <= MAX_COUNTER:
        raise RunFormatError(f"'epoch' must be from 0 to 2**63-1, got {epoch}", meta_path)
    step = meta.get("step")
    if step is not None and not _is_int(step):
        raise RunFormatError("'step' must be an integer", meta_path)
    if step is not None and not 0 <= step <= MAX_COUNTER:
        raise RunFormatError(f"'step' must be from 0 to 2**63-1, got {step}", meta_path)
    logged_raw = meta.get("logged") or {}
    if not isinstance(logged_raw, dict):
        raise RunFormatError("'logged' must be an object of metric name to number", meta_path)
    logged: dict[str, float] = {}
    for key, value in logged_raw.items():
        if value is None:
            continue  # null is no value (as a missing key), not NaN: the gate must not pass over it
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            logged[key] = float(value)
        else:
            raise RunFormatError(f"logged {key!r} must be a number, got {value!r}", meta_path)
    metrics_only = meta.get("metrics_only", False)
    if not isinstance(metrics_only, bool):
        raise RunFormatError("'metrics_only' must be true or false", meta_path)
    return Checkpoint(path=path, name=path.name, epoch=epoch, step=step, logged=logged, metrics_only=metrics_only)


def _read_num_classes(raw: dict[str, Any], task: str, output: str, classes: tuple[str, ...] | None, run_file: Path) -> int | None:
    """The number of classes run.json declares: ``num_classes``, else the length of
    ``classes``, 2 for binary. A multiclass run of hard labels must declare it: labels
    alone cannot tell how many classes exist, and every average depends on it."""
    declared = raw.get("num_classes")
    if declared is not None:
        if task == "regression":
            raise RunFormatError("'num_classes' does not apply to a regression run", run_file)
        if not _is_int(declared) or declared < 1:
            raise RunFormatError("'num_classes' must be a positive integer", run_file)
        if classes is not None and len(classes) != declared:
            raise RunFormatError(f"'num_classes' is {declared} but 'classes' names {len(classes)}", run_file)
        if task == "binary" and declared != 2:
            raise RunFormatError("a binary run has exactly 2 classes", run_file)
        if task == "multiclass" and declared < 2:
            raise RunFormatError("a multiclass run has at least 2 classes", run_file)
        return declared
    if classes is not None:
        return len(classes)
    if task == "binary":
        return 2
    if task == "multiclass" and output == "label":
        raise RunFormatError(
            "a multiclass run with output 'label' must declare its classes: add 'classes' (names) or 'num_classes'", run_file
        )
    return None


def read_run(path: str | Path, name: str | None = None) -> Run:
    """Read a run folder: run.json and every checkpoint's meta.json."""
    path = Path(path)
    run_file = path / RUN_FILE
    raw = _read_json(run_file)
    if not isinstance(raw, dict):
        raise RunFormatError("must hold a JSON object", run_file)
    fmt = raw.get("format")
    if fmt != FORMAT:
        raise RunFormatError(f"unknown format {fmt!r} (this ckptaudit reads {FORMAT!r})", run_file)
    task = raw.get("task")
    if task is None and "imported_from" in raw:
        raise RunFormatError(
            "no 'task' yet: `ckptaudit predict` reads it from the data (or give --task to import/predict)", run_file
        )
    if task not in TASKS:
        raise RunFormatError(f"'task' must be one of {', '.join(TASKS)}, got {task!r}", run_file)
    output = raw.get("output")
    if output not in OUTPUTS:
        raise RunFormatError(f"'output' must be one of {', '.join(OUTPUTS)}, got {output!r}", run_file)
    if (task == "regression") != (output == "value"):
        raise RunFormatError(f"output {output!r} does not fit task {task!r} (regression runs use 'value')", run_file)
    classes = raw.get("classes")
    if classes is not None:
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise RunFormatError("'classes' must be a list of names", run_file)
        if task == "binary" and len(classes) != 2:
            raise RunFormatError("a binary run has exactly 2 classes", run_file)
        classes = tuple(classes)
    num_classes = _read_num_classes(raw, task, output, classes, run_file)
    positive = raw.get("positive_class", 1)
    if not _is_int(positive) or positive not in (0, 1):
        raise RunFormatError("'positive_class' must be 0 or 1", run_file)
    selected = raw.get("selected_by")
    selected_by = None
    if selected is not None:
        if not isinstance(selected, dict) or not isinstance(selected.get("metric"), str):
            raise RunFormatError('\'selected_by\' must be {"metric": NAME, "mode": "min"|"max"}', run_file)
        mode = selected.get("mode")
        if mode not in (None, "min", "max"):
            raise RunFormatError("'selected_by.mode' must be 'min' or 'max'", run_file)
        selected_by = SelectedBy(selected["metric"], mode)
    chosen = raw.get("chosen")
    if chosen is not None and not isinstance(chosen, str):
        raise RunFormatError("'chosen' must be a checkpoint name", run_file)

    ckpt_dir = path / CHECKPOINTS_DIR
    checkpoints: list[Checkpoint] = []
    skipped: list[Skipped] = []
    if ckpt_dir.is_dir():
        for entry in sorted(os.scandir(ckpt_dir), key=lambda e: e.name):
            # NOTE: a symbolic link (best -> epoch-0009) is an alias, never a checkpoint of its own
            if is_in_progress(entry.name) or entry.is_symlink() or not entry.is_dir():
                continue
            folder = ckpt_dir / entry.name  # the same path as Path(entry.path), parsed in part only
            meta_path = os.path.join(entry.path, META_FILE)
            # NOTE: meta.json is read straight away (one Path and no stat per checkpoint
            # more: discovery is most of `rank`'s per-run cost in a big sweep); only a
            # missing one asks whether anything of that name exists at all.
            try:
                meta = read_json(meta_path)
            except FileNotFoundError:
                not_a_checkpoint = _not_a_checkpoint(folder, name if name is not None else str(path))
                if not_a_checkpoint is not None:
                    skipped.append(not_a_checkpoint)
                    continue
                raise RunFormatError(f"no {META_FILE}", folder) from None  # a dangling link named meta.json
            checkpoints.append(_checkpoint_from(folder, meta_path, meta))
    checkpoints.sort(key=lambda c: c.order_key)
    return Run(
        path=path,
        name=name if name is not None else str(path),
        task=task,
        output=output,
        classes=classes,
        positive_class=positive,
        selected_by=selected_by,
        chosen=chosen,
        checkpoints=tuple(checkpoints),
        raw=raw,
        num_classes=num_classes,
        skipped=tuple(skipped),
    )


def _not_a_checkpoint(folder: Path, run_name: str) -> Skipped | None:
    """A folder under checkpoints/ without meta.json (a Hugging Face checkpoint still
    being written, a TensorBoard log folder) is not a checkpoint: it is left out with a
    note, and the run stays readable."""
    if os.path.lexists(folder / META_FILE):
        return None
    reason = "no meta.json: not a checkpoint (still being written, or another tool's folder)"
    return Skipped(run_name, str(folder), reason, "skipped", checkpoint=folder.name)


def _walk_runs(root: Path) -> Iterator[Path]:
    """Every folder below ``root`` holding run.json; a run's own subfolders are not
    searched, and symlinked folders are not followed."""
    for dirpath, dirnames, filenames in os.walk(root):
        if RUN_FILE in filenames:
            dirnames[:] = []
            yield Path(dirpath)
            continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))


def discover_sweep(paths: Iterable[str | Path]) -> tuple[list[Run], list[Skipped]]:
    """Read every run named by ``paths``, leaving out the ones that cannot be used.

    Each path may be a run, one checkpoint folder (the run is read with just that
    checkpoint) or any folder holding runs at any depth (a sweep). A run whose run.json
    or meta.json cannot be read, or that has no checkpoint yet, is returned as a
    :class:`Skipped` record with the reason, as is each folder under checkpoints/ that is
    not a checkpoint; the other runs are read as usual. A path that does not exist or
    holds no run at all is still an error.
    """
    runs: list[Run] = []
    skipped: list[Skipped] = []
    seen: set[Path] = set()

    def add(run_path: Path, only: str | None = None, key: Path | None = None) -> None:
        key = run_path.resolve() if key is None else key
        if key in seen:
            return
        seen.add(key)
        try:
            run = read_run(run_path, str(run_path))
        except RunFormatError as exc:
            skipped.append(Skipped(str(run_path), exc.path or str(run_path), exc.problem, "error"))
            return
        skipped.extend(run.skipped)
        if only is not None:
            named = run.checkpoint(only)  # an alias folder (checkpoints/best) reads as its target
            chosen = () if named is None else (named,)
            if not chosen:
                raise RunFormatError("checkpoint is still being written (in-progress name)", run_path / CHECKPOINTS_DIR / only)
            run = Run(**{**run.__dict__, "checkpoints": chosen})
        if not run.checkpoints:
            reason = "the run has no checkpoints (training may have stopped before its first save)"
            skipped.append(Skipped(run.name, str(run.path / CHECKPOINTS_DIR), reason, "skipped"))
            return
        runs.append(run)

    for given in paths:
        path = Path(given)
        if not path.exists():
            raise RunFormatError("no such file or folder", path)
        if not path.is_dir():
            raise RunFormatError("not a folder (give a run, a checkpoint folder or a folder of runs)", path)
        if (path / RUN_FILE).is_file():
            add(path)
        elif (path / META_FILE).is_file() and path.parent.name == CHECKPOINTS_DIR and (path.parent.parent / RUN_FILE).is_file():
            add(path.parent.parent, only=path.name)
        else:
            found = list(_walk_runs(path))
            if not found:
                raise RunFormatError("no run.json found here or below", path)
            # NOTE: the walk follows no symbolic link, so below the given folder every
            # path is already real: one resolve for the folder, not one per run.
            real = path.resolve()
            for run_path in found:
                add(run_path, key=real.joinpath(run_path.relative_to(path)))
    return runs, skipped


def discover(paths: Iterable[str | Path]) -> list[Run]:
    """Read every run named by ``paths`` (see :func:`discover_sweep`); any run that
    cannot be used is an error. Folders under checkpoints/ that are not checkpoints
    are left out (``Run.skipped``)."""
    runs, skipped = discover_sweep(paths)
    for item in skipped:
        if item.checkpoint is None:
            raise RunFormatError(item.reason, item.path)
    return runs


def _integers_at_most(values: np.ndarray, high: int) -> bool:
    """True when ``values`` are integers (or bools) from 0 to ``high``, by one max over
    their unsigned view; False where that cannot tell (floats, strided arrays)."""
    if values.dtype.kind not in "biu" or not values.flags.c_contiguous or values.size == 0:
        return False
    return bool(values.view(f"u{values.dtype.itemsize}").max() <= high)


def _check_shapes(run: Run, path: Path, target: np.ndarray, output: np.ndarray, target_checked: bool = False) -> None:
    task, kind = run.task, run.output
    n = target.shape[0] if target.ndim else 0
    if target.ndim == 0 or n == 0:
        raise RunFormatError("'target' is empty", path)
    if output.ndim == 0 or output.shape[0] != n:
        raise RunFormatError(f"'target' has {n} rows but 'output' has {output.shape[0] if output.ndim else 0}", path)
    if target.dtype.kind not in "biuf" or output.dtype.kind not in "biuf":
        raise RunFormatError("'target' and 'output' must be numeric arrays", path)
    if task == "regression":
        if target.shape != output.shape or target.ndim > 2:
            raise RunFormatError(
                f"regression 'target' {target.shape} and 'output' {output.shape} must have the same shape, (N,) or (N, D)", path
            )
        return
    if task in ("binary", "multiclass"):
        if target.ndim != 1:
            raise RunFormatError(f"'target' must be (N,) class indices, got shape {target.shape}", path)
        if not target_checked and target.dtype.kind == "f" and not np.all(np.mod(target, 1) == 0):
            raise RunFormatError("'target' must hold integer class indices", path)
        # NOTE: 0/1 integers pass with one unsigned max (negatives wrap above 1); a target
        # already checked (the same array as the checkpoint before) passed all of this.
        binary_ok = task == "binary" and (target_checked or _integers_at_most(target, 1))
        if not binary_ok and not target_checked and target.min() < 0:
            raise RunFormatError("'target' holds a negative class index", path)
    if task == "binary":
        if not binary_ok and target.max() > 1:
            raise RunFormatError(f"a binary 'target' holds class {int(target.max())}; only 0 and 1 exist", path)
        if kind == "label" and output.ndim != 1:
            raise RunFormatError(f"label 'output' must be (N,), got {output.shape}", path)
        if output.ndim == 2 and output.shape[1] not in (1, 2) or output.ndim > 2:
            raise RunFormatError(f"binary 'output' must be (N,), (N, 1) or (N, 2), got {output.shape}", path)
    elif task == "multiclass":
        if kind == "label":
            if output.ndim != 1:
                raise RunFormatError(f"label 'output' must be (N,), got {output.shape}", path)
            return
        if output.ndim != 2:
            raise RunFormatError(f"multiclass 'output' must be (N, C), got {output.shape}", path)
        c = output.shape[1]
        if run.classes is not None and len(run.classes) != c:
            raise RunFormatError(f"'output' has {c} columns but run.json names {len(run.classes)} classes", path)
        if target.max() >= c:
            raise RunFormatError(f"'target' holds class {int(target.max())} but 'output' has only {c} columns", path)
    elif task == "multilabel":
        if target.ndim != 2 or output.shape != target.shape:
            raise RunFormatError(f"multilabel 'target' {target.shape} and 'output' {output.shape} must both be (N, L)", path)
        if not target_checked and not _integers_at_most(target, 1) and not np.isin(target, (0, 1)).all():
            raise RunFormatError("multilabel 'target' must hold 0/1", path)


#: how far a probability row's sum may stray from 1: max(1e-3, sqrt(eps)) of the
#: stored float type (float16: 0.031), so float32 or float16 softmax output passes
PROBABILITY_SUM_TOLERANCE = 1e-3


def _sum_tolerance(dtype: np.dtype) -> float:
    return max(PROBABILITY_SUM_TOLERANCE, float(np.sqrt(np.finfo(dtype).eps))) if dtype.kind == "f" else PROBABILITY_SUM_TOLERANCE


def _first_bad(values: np.ndarray, low: float, high: float, integer: bool) -> float | None:
    """The first value outside [low, high] (or not a whole number, where ``integer``),
    ignoring NaN and infinity, which the scorer reports as unscorable; else None."""
    if values.dtype.kind == "b" or values.size == 0:
        return None
    # NOTE: two reductions settle the common case; NaN fails them and takes the slow path.
    whole = not integer or values.dtype.kind in "iu" or bool(np.all(np.mod(values, 1) == 0))
    if values.min() >= low and values.max() <= high and whole:
        return None
    with np.errstate(invalid="ignore"):
        bad = (values < low) | (values > high)
        if integer and values.dtype.kind == "f":
            bad |= np.mod(values, 1) != 0
        if values.dtype.kind == "f":
            bad &= np.isfinite(values)
    hits = np.flatnonzero(bad.ravel())
    return None if hits.size == 0 else values.ravel()[hits[0]].item()


#: float type -> (unsigned integer type of its width, the bit pattern of 1.0)
_UNIT_BITS = {
    np.dtype(np.float16): (np.uint16, 0x3C00),
    np.dtype(np.float32): (np.uint32, 0x3F800000),
    np.dtype(np.float64): (np.uint64, 0x3FF0000000000000),
}


def _in_unit_interval(values: np.ndarray) -> bool:
    """True when every value is in [0, 1], by one unsigned-integer max: the IEEE bit
    patterns of +0.0 to 1.0 are exactly the integers up to that of 1.0, and negative
    numbers, NaN and infinity all lie above it. (False may still be fine: -0.0, NaN.)"""
    bits = _UNIT_BITS.get(values.dtype)
    if bits is None or not values.flags.c_contiguous or values.size == 0:
        return False
    return bool(values.view(bits[0]).max() <= bits[1])


def _check_values(run: Run, path: Path, target: np.ndarray, output: np.ndarray) -> None:
    """Values the shapes cannot catch: class indices outside the run's classes, hard
    labels that are not class indices (or 0/1), probabilities outside [0, 1] and
    probability rows that do not sum to 1 (docs/format.md gives the tolerance)."""
    task, kind = run.task, run.output
    if task == "regression":
        return
    if task == "multiclass":
        n_classes = run.num_classes if kind == "label" else output.shape[1]
        assert n_classes is not None
        if kind != "label" and run.num_classes is not None and run.num_classes != n_classes:
            raise RunFormatError(f"'output' has {n_classes} columns but run.json declares {run.num_classes} classes", path)
        if int(target.max()) >= n_classes:
            raise RunFormatError(
                f"'target' holds class {int(target.max())}, but the run has {n_classes} classes (0 to {n_classes - 1})", path
            )
    elif task == "multilabel" and run.num_classes is not None and target.shape[1] != run.num_classes:
        raise RunFormatError(f"'target' has {target.shape[1]} labels but run.json declares {run.num_classes}", path)
    if kind == "label":
        high = 1 if task in ("binary", "multilabel") else cast(int, n_classes) - 1
        bad = _first_bad(output, 0, high, integer=True)
        if bad is not None:
            allowed = "0 or 1" if high == 1 else f"a class index from 0 to {high}"
            raise RunFormatError(f"'output' holds label {bad:g}; each label must be {allowed}", path)
    elif kind == "probability":
        # NOTE: the bit-pattern test keeps this check off the profile of `rank`.
        bad = None if _in_unit_interval(output) else _first_bad(output, 0.0, 1.0, integer=False)
        if bad is not None:
            raise RunFormatError(
                f"'output' holds probability {bad:g}, outside [0, 1] (were logits stored as output 'probability'?)", path
            )
        # NOTE: a binary (N, 1) output is the positive class's column alone, not a full row.
        if output.ndim == 2 and output.shape[1] > 1 and task in ("binary", "multiclass"):
            sums = output.sum(axis=1, dtype=np.float64)
            tol = _sum_tolerance(output.dtype)
            off = np.abs(sums - 1.0) > tol
            if off.any():
                # NOTE: a row with a NaN/inf output is reported by the scorer, not here.
                off &= np.isfinite(sums)
                rows = np.flatnonzero(off)
                if rows.size:
                    raise RunFormatError(
                        f"'output' row {int(rows[0])} sums to {sums[rows[0]]:.6g}; probabilities of one row must sum to 1 "
                        f"(within {tol:g}); {rows.size} of {sums.size} rows do not",
                        path,
                    )


def check_arrays(
    run: Run,
    path: Path,
    target: np.ndarray,
    output: np.ndarray,
    ids: np.ndarray | None = None,
    hashes: np.ndarray | None = None,
    *,
    target_checked: bool = False,
) -> None:
    """The reader's checks of one split's arrays against run.json; raise :class:`RunFormatError`
    naming ``path``. The recorder calls this same function before it writes a file.
    ``target_checked``: ``target`` is an array that passed these checks for this run
    before (the checks of it alone are skipped; those against ``output`` still run)."""
    _check_shapes(run, path, target, output, target_checked)
    if not target_checked:
        _check_hostile_values(run, path, target, output)
    _check_values(run, path, target, output)
    for label, arr in (("id", ids), ("input_hash", hashes)):
        if arr is not None and (arr.ndim != 1 or arr.shape[0] != target.shape[0]):
            raise RunFormatError(f"'{label}' must be (N,) with N = {target.shape[0]}", path)
        if arr is not None and arr.dtype.kind not in "iuUS":
            raise RunFormatError(f"'{label}' must hold integers or strings, got dtype {arr.dtype}", path)


def _check_hostile_values(run: Run, path: Path, target: np.ndarray, output: np.ndarray) -> None:
    """NaN or infinite regression targets: a NaN never equals itself, so it looked like a
    changed validation set, and an infinite target scored nothing with exit 0."""
    if run.task == "regression":
        bad = ~np.isfinite(target)
        if bad.any():
            rows = np.flatnonzero(bad.reshape(target.shape[0], -1).any(axis=1))
            raise RunFormatError(
                f"'target' holds NaN or infinite values in {rows.size} row(s) (first: row {int(rows[0])}); "
                "regression targets must be finite",
                path,
            )


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
        arrays = read_npz(path, ("target", "output"), ("id", "input_hash"), reuse=self.buffers)
        target, output = arrays["target"], arrays["output"]
        ids, hashes = arrays.get("id"), arrays.get("input_hash")
        known = target is self._checked_target
        check_arrays(self.run, path, target, output, ids, hashes, target_checked=known)
        self._checked_target = target
        return Predictions(path=path, target=target, output=output, ids=ids, input_hash=hashes)


def read_predictions(run: Run, checkpoint: Checkpoint, split: str = "val", reader: PassReader | None = None) -> Predictions:
    """Load and validate one split's arrays; raise :class:`RunFormatError` on any problem.

    With ``reader`` (a :class:`PassReader` of ``run``) memory is reused from one call to
    the next, as that class describes; without, every array is new and the caller's."""
    if reader is not None:
        return reader.read(checkpoint, split)
    path = checkpoint.split_file(split)
    arrays = read_npz(path, ("target", "output"), ("id", "input_hash"))
    target, output = arrays["target"], arrays["output"]
    ids, hashes = arrays.get("id"), arrays.get("input_hash")
    check_arrays(run, path, target, output, ids, hashes)
    return Predictions(path=path, target=target, output=output, ids=ids, input_hash=hashes)


class ValSetGuard:
    """Checks that every checkpoint of a run was validated on the same rows.

    Keeps only the first checkpoint's targets and ids, so memory stays bounded.
    """

    def __init__(self, run: Run) -> None:
        self.run = run
        self._first: tuple[Checkpoint, np.ndarray, np.ndarray | None] | None = None

    def problem(self, checkpoint: Checkpoint, preds: Predictions) -> str | None:
        """A description of how ``preds`` differs from the first checkpoint's, or None."""
        if self._first is None:
            self._first = (checkpoint, preds.target, preds.ids)
            return None
        first, target, ids = self._first
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
