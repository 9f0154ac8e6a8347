"""``ckptaudit import raytune|optuna``: a hyper-parameter sweep becomes a sweep of runs.

One run per trial, written under ``OUT`` (``OUT/<trial>/run.json``), each with the trial's
hyper-parameters in run.json ``params`` and what identifies it in the tool in ``trial``
(docs/format.md). Every command that takes a sweep then reads ``OUT``: ``rank OUT``, and
``pick OUT --across`` names the best trial at its best checkpoint, not at its last report.

The whole sweep is assembled in a hidden folder beside ``OUT`` and renamed into place, so an
interrupted import leaves no half sweep. Weights are hard-linked as ``import files`` does
(:func:`.importers.write_run`); nothing the tool wrote is moved, changed or deleted.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .importers import ImportResult, write_run

#: where ``import raytune EXPERIMENT`` writes without OUT: inside the experiment folder, so
#: that the links are on the same file system and ``rank EXPERIMENT`` finds the runs
DEFAULT_OUT = "ckptaudit"


@dataclass(frozen=True)
class SweepImport:
    """What a sweep import wrote: the sweep folder, one :class:`ImportResult` per trial (with
    its params), and notes."""

    out: Path
    framework: str
    runs: tuple[ImportResult, ...]
    params: tuple[dict[str, Any], ...]
    notes: tuple[str, ...]


def import_sweep(
    framework: str,
    src: str | os.PathLike[str] | None,
    out: str | os.PathLike[str] | None,
    *,
    storage: str | None = None,
    study: str | None = None,
    checkpoints: str | None = None,
    task: str | None = None,
    output: str | None = None,
    classes: Sequence[str] | None = None,
    selected_by: str | None = None,
) -> SweepImport:
    """Read a Ray Tune experiment folder (``src``) or an Optuna study (``storage``, ``study``;
    ``checkpoints``: where its objective saved each step's weights, see
    :func:`.from_optuna.read_optuna`) and write one run per trial under ``out`` (which must
    not exist yet)."""
    from .importers import parse_selected_by

    sel = parse_selected_by(selected_by)
    trials: list[tuple[str, Any, dict[str, Any], dict[str, Any]]]
    if framework == "raytune":
        from .from_raytune import read_raytune

        if checkpoints is not None:
            raise UsageError("--checkpoints applies to import optuna (Ray Tune records its checkpoint folders)")
        if src is None:
            raise UsageError("import raytune needs EXPERIMENT_DIR (the folder Ray Tune wrote)")
        root = Path(src)
        found = read_raytune(root)
        trials = [(t.name, t.source, t.params, t.info) for t in found]
        notes: list[str] = []
        target = Path(out) if out is not None else root / DEFAULT_OUT
    elif framework == "optuna":
        from .from_optuna import read_optuna

        if storage is None:
            raise UsageError("import optuna needs --storage sqlite:///PATH (the study's database)")
        if out is None:
            raise UsageError("import optuna needs OUT, the new sweep folder to write")
        if selected_by is not None:
            raise UsageError("--selected-by does not apply to import optuna: the study's direction is the mode of 'value'")
        if checkpoints is None:
            for name, given in (("--task", task), ("--output", output), ("--classes", classes)):
                if given is not None:
                    raise UsageError(f"{name} applies to import optuna only with --checkpoints (without, there are no weights)")
        read = read_optuna(storage, study, checkpoints)
        trials = list(read.trials)
        notes = list(read.notes)
        target = Path(out)
    else:
        raise UsageError(f"{framework!r} is not a sweep framework")
    return _write_sweep(framework, trials, target, notes, task=task, output=output, classes=classes, selected_by=sel)


def _write_sweep(
    framework: str,
    trials: Sequence[tuple[str, Any, dict[str, Any], dict[str, Any]]],
    out: Path,
    notes: list[str],
    *,
    task: str | None,
    output: str | None,
    classes: Sequence[str] | None,
    selected_by: Mapping[str, str] | None,
) -> SweepImport:
    """Write every trial as a run under a hidden folder beside ``out``, then rename it into place."""
    if out.exists() or out.is_symlink():
        raise UsageError("already exists: import writes a new sweep (choose another OUT or remove it)", out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.mkdir()
    results = []
    try:
        for name, source, params, info in trials:
            result = write_run(
                source, tmp / name, task=task, output=output, classes=classes, selected_by=selected_by, params=params, trial=info
            )
            results.append(result)
            notes += result.notes
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # only our own hidden folder: links, never originals
        raise
    # NOTE: the results name the hidden folder they were written in; name the sweep's instead
    moved = tuple(ImportResult(out / r.run.name, r.framework, r.checkpoints, r.selected_by, r.chosen, r.notes) for r in results)
    return SweepImport(out, framework, moved, tuple(dict(t[2]) for t in trials), tuple(notes))
