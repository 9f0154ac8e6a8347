"""``ckptaudit import FRAMEWORK SRC RUN``: build a run from what a framework left on disk.

Weights are never copied, moved or deleted: each weights file is **hard-linked** into its
checkpoint folder (same bytes, no extra space; deleting the original later leaves the
run's link intact). When a hard link is impossible (the run is on another file system,
or the file system has none), meta.json records a **reference** instead:
``"source": {"weights": "reference", "path": "/abs/original"}``; ``predict`` then reads the
original, and ``pick --copy``/``prune`` see no weights in that folder.

The run is assembled in a hidden folder beside ``RUN`` and renamed into place, so an
interrupted import leaves no half run. Files are read as data only (see
:mod:`.loading`); nothing here runs code from a checkpoint unless ``trust_pickle``.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..store.reader import CHECKPOINTS_DIR, FORMAT, META_FILE, OUTPUTS, RUN_FILE, TASKS
from .from_files import read_files, read_keras
from .from_hf import read_hf
from .from_lightning import read_lightning
from .source import (
    Source,
    SourceCheckpoint,
    pattern_regex,
    read_log,
)

__all__ = [
    "FRAMEWORKS",
    "ImportResult",
    "ImportedCheckpoint",
    "Source",
    "SourceCheckpoint",
    "import_checkpoints",
    "parse_selected_by",
    "pattern_regex",
    "read_files",
    "read_hf",
    "read_keras",
    "read_lightning",
    "read_log",
    "write_run",
]

FRAMEWORKS = ("lightning", "hf", "keras", "files", "raytune", "optuna")
#: the frameworks whose import writes a sweep (one run per trial), not one run
SWEEP_FRAMEWORKS = ("raytune", "optuna")


@dataclass(frozen=True)
class ImportedCheckpoint:
    """One checkpoint as written into the run."""

    name: str
    epoch: int
    step: int | None
    weights: str  #: "hardlink", "reference" or "none" (metrics-only)
    logged: dict[str, float] = field(default_factory=dict)
    note: str | None = None


@dataclass(frozen=True)
class ImportResult:
    """What ``import`` wrote: the run folder, its checkpoints, and what training chose."""

    run: Path
    framework: str
    checkpoints: tuple[ImportedCheckpoint, ...]
    selected_by: dict[str, str] | None
    chosen: str | None
    notes: tuple[str, ...]


# --------------------------------------------------------------------------- writing the run


def _link(src: Path, dst: Path) -> str:
    """Hard-link ``src`` to ``dst``; "reference" when the file systems differ or forbid it."""
    try:
        os.link(src, dst)
        return "hardlink"
    except OSError as exc:
        if exc.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP):
            return "reference"
        raise


def parse_selected_by(text: str | None) -> dict[str, str] | None:
    """``NAME`` or ``NAME:max``/``NAME:min`` as run.json's ``selected_by``."""
    if not text:
        return None
    name, _, mode = text.partition(":")
    if mode and mode not in ("min", "max"):
        raise UsageError(f"--selected-by {text!r}: the mode after ':' must be max or min")
    return {"metric": name, **({"mode": mode} if mode else {})}


def write_run(
    source: Source,
    run: str | os.PathLike[str],
    *,
    task: str | None = None,
    output: str | None = None,
    classes: Sequence[str] | None = None,
    selected_by: Mapping[str, str] | None = None,
    params: Mapping[str, Any] | None = None,
    trial: Mapping[str, Any] | None = None,
) -> ImportResult:
    """Write ``source`` as a new run at ``run`` (which must not exist yet).

    ``params`` and ``trial`` (a sweep's trial: its hyper-parameters, and what identifies it
    in the tool that ran it) go into run.json as they are (JSON values).

    Without ``task`` the run.json holds none: weights alone cannot tell a binary model from
    a multiclass one, so ``predict`` infers it from the data (:func:`.tasks.infer_task`),
    and every other command says so until then. ``output`` defaults to ``logit`` (``value``
    for regression) when the task is given."""
    if task is not None and task not in TASKS:
        raise UsageError(f"--task must be one of {', '.join(TASKS)}, not {task!r}")
    if output is None and task is not None:
        output = "value" if task == "regression" else "logit"
    if output is not None and output not in OUTPUTS:
        raise UsageError(f"--output must be one of {', '.join(OUTPUTS)}, not {output!r}")
    if task is not None and output is not None and (task == "regression") != (output == "value"):
        raise UsageError(f"--output {output!r} does not fit --task {task!r} (regression runs use 'value')")
    if task == "binary" and classes is not None and len(classes) != 2:
        raise UsageError("a binary run has exactly 2 --classes")
    final = Path(run)
    if final.exists():
        raise UsageError("already exists: import writes a new run (choose another RUN or remove it)", final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.tmp")
    (tmp / CHECKPOINTS_DIR).mkdir(parents=True)
    written = []
    try:
        for ck in source.checkpoints:
            folder = tmp / CHECKPOINTS_DIR / ck.name
            folder.mkdir()
            modes = {_link(f.resolve(), folder / f.name) for f in ck.files}
            how = "none" if not ck.files else ("reference" if "reference" in modes else "hardlink")
            meta: dict[str, Any] = {"epoch": ck.epoch}
            if ck.step is not None:
                meta["step"] = ck.step
            if ck.logged:
                meta["logged"] = ck.logged
            if ck.metrics_only:
                meta["metrics_only"] = True
            if ck.note:
                meta["note"] = ck.note
            meta["source"] = {
                "framework": source.framework,
                "path": None if ck.origin is None else str(ck.origin.resolve()),
                "weights": how,
            }
            if how == "reference":
                # NOTE: drop any partial links so the folder consistently refers to the originals.
                for f in ck.files:
                    (folder / f.name).unlink(missing_ok=True)
                meta["source"]["files"] = [str(f.resolve()) for f in ck.files]
            (folder / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
            written.append(ImportedCheckpoint(ck.name, ck.epoch, ck.step, how, ck.logged, ck.note))
        run_json: dict[str, Any] = {"format": FORMAT}
        if task is not None:
            run_json["task"] = task
        if output is not None:
            run_json["output"] = output
        if classes is not None:
            run_json["classes"] = list(classes)
        if task == "binary":
            run_json["positive_class"] = 1
        chosen_by = dict(selected_by) if selected_by else source.selected_by
        if chosen_by:
            run_json["selected_by"] = chosen_by
        if source.chosen:
            run_json["chosen"] = source.chosen
        run_json["imported_from"] = source.framework
        if params is not None:
            run_json["params"] = dict(params)
        if trial is not None:
            run_json["trial"] = dict(trial)
        (tmp / RUN_FILE).write_text(json.dumps(run_json, indent=2) + "\n", encoding="utf-8")
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # only our own hidden folder: links, never originals
        raise
    return ImportResult(final, source.framework, tuple(written), chosen_by, source.chosen, source.notes)


def import_checkpoints(
    framework: str,
    src: str | os.PathLike[str],
    run: str | os.PathLike[str],
    *,
    task: str | None = None,
    output: str | None = None,
    classes: Sequence[str] | None = None,
    epoch_pattern: str | None = None,
    metrics_csv: str | os.PathLike[str] | None = None,
    selected_by: str | None = None,
    chosen: str | os.PathLike[str] | None = None,
    trust_pickle: bool = False,
) -> ImportResult:
    """Read ``src`` as ``framework`` left it and write a new run at ``run``.

    ``metrics_csv`` (``--log``) is a log of per-epoch metrics: a CSV (Lightning metrics.csv,
    Keras CSVLogger, a W&B CSV export), a TensorBoard event file or folder, or a W&B run's
    history (:mod:`.logs`). ``chosen`` is the file training kept (``best_model.pth``),
    matched to its checkpoint by tensor content (:mod:`.chosen`)."""
    from .chosen import identify_chosen

    sel = parse_selected_by(selected_by)
    csv_path = None if metrics_csv is None else Path(metrics_csv)
    if csv_path is not None and not csv_path.exists():
        raise UsageError("no such log file or folder", csv_path)
    if framework == "files":
        source = read_files(
            str(src), epoch_pattern=epoch_pattern, chosen=None if chosen is None else str(chosen), trust_pickle=trust_pickle
        )
        if csv_path is not None:
            source = _with_log(source, csv_path, 0)
    else:
        root = Path(src)
        if not root.is_dir():
            raise UsageError("not a folder", root)
        if framework == "lightning":
            source = read_lightning(root, metrics_csv=csv_path, trust_pickle=trust_pickle)
        elif framework == "hf":
            source = read_hf(root, selected_by=sel)
        elif framework == "keras":
            if not epoch_pattern:
                raise UsageError(
                    "keras files record no epoch: give --epoch-pattern, e.g. 'epoch{epoch:02d}-{val_accuracy:.4f}.keras'"
                )
            source = read_keras(root, epoch_pattern=epoch_pattern, metrics_csv=csv_path)
        else:
            raise UsageError(f"FRAMEWORK must be one of {', '.join(FRAMEWORKS)}, not {framework!r}")
    if chosen is not None:
        source = identify_chosen(source, chosen)
    if source.chosen is not None and sel is None and source.selected_by is None:
        source = replace(
            source,
            notes=(
                *source.notes,
                "what training selected by is unknown: give --selected-by METRIC[:min|max], "
                "or check skips its selected-by-matches rule",
            ),
        )
    return write_run(source, run, task=task, output=output, classes=classes, selected_by=sel)


def _with_log(source: Source, path: Path, offset: int) -> Source:
    """``source`` with each checkpoint's logged metrics completed from a log file."""
    logs = read_log(path, epoch_offset=offset)
    checkpoints = tuple(replace(ck, logged={**logs.get(ck.epoch, {}), **ck.logged}) for ck in source.checkpoints)
    return replace(source, checkpoints=checkpoints)
