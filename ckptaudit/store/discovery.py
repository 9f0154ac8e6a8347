"""Finding runs and reading their metadata: ``run.json`` and every ``meta.json``.

This module owns discovery (the runs under the paths a user gives, the folders under
``checkpoints/`` that are not checkpoints, a sweep's broken runs reported beside the good
ones) and the checks of the metadata files, which are small and read eagerly through the
bounded readers of :mod:`ckptaudit.store.safeio`. Prediction arrays are not read here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeGuard

from ..errors import RunFormatError
from .remote import shown, url_scheme
from .runformat import (
    CHECKPOINTS_DIR,
    FORMAT,
    MAX_COUNTER,
    META_FILE,
    NO_TASK_YET,
    OUTPUTS,
    RUN_FILE,
    SPLITS,
    TASKS,
    Checkpoint,
    Run,
    SelectedBy,
    Skipped,
    is_in_progress,
)
from .safeio import read_json

#: reads and parses one JSON file (:func:`~ckptaudit.store.safeio.read_json`, or a sweep
#: book's memo of it: :class:`~ckptaudit.store.sweepcache.SweepBook`)
JsonReader = Callable[[Any], Any]


def _read_json(path: Path, reader: JsonReader = read_json) -> Any:
    try:
        return reader(path)
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


def read_run(path: str | Path, name: str | None = None, reader: JsonReader = read_json) -> Run:
    """Read a run folder: run.json and every checkpoint's meta.json (each through
    ``reader``)."""
    path = Path(path)
    run_file = path / RUN_FILE
    raw = _read_json(run_file, reader)
    if not isinstance(raw, dict):
        raise RunFormatError("must hold a JSON object", run_file)
    fmt = raw.get("format")
    if fmt != FORMAT:
        raise RunFormatError(f"unknown format {fmt!r} (this ckptaudit reads {FORMAT!r})", run_file)
    task = raw.get("task")
    # NOTE: an imported run gets its task from `predict`; until then it is a logged-metrics-only
    # run (task ""): ranked by its logged metrics, refused by every metric that needs predictions.
    logged_only = task is None and "imported_from" in raw
    if not logged_only and task not in TASKS:
        raise RunFormatError(f"'task' must be one of {', '.join(TASKS)}, got {task!r}", run_file)
    output = raw.get("output")
    if not (logged_only and output is None) and output not in OUTPUTS:
        raise RunFormatError(f"'output' must be one of {', '.join(OUTPUTS)}, got {output!r}", run_file)
    if not logged_only and (task == "regression") != (output == "value"):
        raise RunFormatError(f"output {output!r} does not fit task {task!r} (regression runs use 'value')", run_file)
    task, output = ("", str(output or "")) if logged_only else (str(task), str(output))
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
    for key in ("params", "trial"):  # a sweep's trial (import raytune/optuna): kept as written, objects only
        if raw.get(key) is not None and not isinstance(raw[key], dict):
            raise RunFormatError(f"'{key}' must be a JSON object (name -> value)", run_file)

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
                meta = reader(meta_path)
            except FileNotFoundError:
                not_a_checkpoint = _not_a_checkpoint(folder, name if name is not None else shown(path))
                if not_a_checkpoint is not None:
                    skipped.append(not_a_checkpoint)
                    continue
                raise RunFormatError(f"no {META_FILE}", folder) from None  # a dangling link named meta.json
            checkpoints.append(_checkpoint_from(folder, meta_path, meta))
    checkpoints.sort(key=lambda c: c.order_key)
    if logged_only and any(c.has_split(split) for c in checkpoints for split in SPLITS):
        raise RunFormatError(NO_TASK_YET, run_file)
    return Run(
        path=path,
        name=name if name is not None else shown(path),
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
    return Skipped(run_name, shown(folder), reason, "skipped", checkpoint=folder.name)


def _walk_runs(root: Path) -> Iterator[Path]:
    """Every folder below ``root`` holding run.json; a run's own subfolders are not
    searched, and symlinked folders are not followed."""
    for dirpath, dirnames, filenames in os.walk(root):
        if RUN_FILE in filenames:
            dirnames[:] = []
            yield Path(dirpath)
            continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))


def discover_sweep(paths: Iterable[str | Path], book: Any = None) -> tuple[list[Run], list[Skipped]]:
    """Read every run named by ``paths``, leaving out the ones that cannot be used.

    Each path may be a run, one checkpoint folder (the run is read with just that
    checkpoint) or any folder holding runs at any depth (a sweep), on disk or as a URL of
    object storage (read through a local copy, :mod:`ckptaudit.store.mirror`; runs and
    messages name the URL). A run whose run.json
    or meta.json cannot be read, or that has no checkpoint yet, is returned as a
    :class:`Skipped` record with the reason, as is each folder under checkpoints/ that is
    not a checkpoint; the other runs are read as usual. A path that does not exist or
    holds no run at all is still an error. ``book``: the sweep's
    :class:`~ckptaudit.store.sweepcache.SweepBook` when the one path is its folder (its
    runs' metadata files are read through its memo).
    """
    runs: list[Run] = []
    skipped: list[Skipped] = []
    seen: set[Path] = set()

    def add(run_path: Path, only: str | None = None, key: Path | None = None) -> None:
        key = run_path.resolve() if key is None else key
        if key in seen:
            return
        seen.add(key)
        name = shown(run_path)
        try:
            run = read_run(run_path, name, read_json if book is None else book.reader(run_path))
        except RunFormatError as exc:
            skipped.append(Skipped(name, shown(exc.path or run_path), exc.problem, "error"))
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
            skipped.append(Skipped(run.name, shown(run.path / CHECKPOINTS_DIR), reason, "skipped"))
            return
        runs.append(run)

    for given in paths:
        if isinstance(given, str) and url_scheme(given):
            from .mirror import localize

            given = localize(given)
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
