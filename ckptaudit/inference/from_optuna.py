"""Reading an Optuna study from its sqlite storage: one trial, one run.

An Optuna trial records the objective's intermediate values (``trial.report(value, step)``)
and a final value; its weights, if any were saved, live wherever the objective put them, which
the study does not record (``--checkpoints TEMPLATE`` says where). Each trial with intermediate
values becomes a run with one checkpoint per reported step (epoch = step), whose logged metric
``value`` is the intermediate value: metrics-only unless the template finds that step's weights; the study's direction is the metric's mode (run.json ``selected_by``). A
trial that reported no intermediate value but finished with a value gets one checkpoint
(``final``) holding it, at epoch 0. Running, waiting and failed trials are left out, with a note;
pruned trials are kept (their values up to the step the pruner stopped them at are real).

Only ``sqlite:///PATH`` storages are read, and only an existing file: the database is opened
read-only (``mode=ro``), so reading never creates, migrates or changes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .source import Source, SourceCheckpoint, _counter

#: the logged metric an Optuna trial's values are recorded under
VALUE = "value"
_KEPT_STATES = ("COMPLETE", "PRUNED")


@dataclass(frozen=True)
class Study:
    """A study as read: its name, direction and trials."""

    name: str
    mode: str
    trials: tuple[tuple[str, Source, dict[str, Any], dict[str, Any]], ...]
    notes: tuple[str, ...]


def sqlite_path(storage: str) -> Path:
    """The database file of a ``sqlite:///PATH`` storage URL (which must exist)."""
    prefix = "sqlite:///"
    if not storage.startswith(prefix):
        scheme = storage.split(":", 1)[0] if ":" in storage else storage
        raise UsageError(f"--storage {storage!r}: only sqlite:///PATH storages are read (not {scheme!r})")
    path = Path(storage[len(prefix) :].split("?", 1)[0])
    if not path.name:
        raise UsageError(f"--storage {storage!r}: no database file after sqlite:///")
    if not path.exists():
        raise UsageError("no such Optuna database (--storage)", path)
    if not path.is_file():
        raise UsageError("not a regular file (--storage must name an sqlite database)", path)
    return path


def read_optuna(storage: str, study: str | None = None, checkpoints: str | None = None) -> Study:
    """The trials of ``study`` (the only study when None) in ``storage``, read-only.

    ``checkpoints`` is where the objective saved each step's weights, a template with
    ``{number}`` (the trial's number) and ``{step}``: a file, or a folder whose top-level files
    are linked. A step whose path does not exist stays metrics-only."""
    path = sqlite_path(storage)
    try:
        import optuna
    except ImportError:
        raise UsageError("import optuna needs optuna: pip install 'ckptaudit[optuna]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///file:{path.resolve()}?mode=ro&uri=true"
    try:
        rdb = optuna.storages.RDBStorage(url, skip_table_creation=True)
        names = optuna.study.get_all_study_names(storage=rdb)
    except Exception as exc:  # sqlalchemy's and optuna's errors alike: not a study database
        raise UsageError(f"not an Optuna study database: {type(exc).__name__}: {exc}", path) from None
    if study is None:
        if len(names) != 1:
            listed = ", ".join(sorted(names)) or "none"
            raise UsageError(f"the storage holds {len(names)} studies ({listed}): name one with --study", path)
        study = names[0]
    if study not in names:
        from ..errors import did_you_mean

        raise UsageError(f"no study {study!r} in this storage{did_you_mean(study, names)}", path)
    try:
        loaded = optuna.load_study(study_name=study, storage=rdb)
        found = loaded.get_trials(deepcopy=False)
    except Exception as exc:  # a damaged database
        raise UsageError(f"cannot read study {study!r}: {type(exc).__name__}: {exc}", path) from None
    if len(loaded.directions) != 1:
        raise UsageError(
            f"study {study!r} has {len(loaded.directions)} objectives: intermediate values are single-objective only", path
        )
    mode = "max" if loaded.direction.name == "MAXIMIZE" else "min"
    trials, notes = [], []
    for t in found:
        name = f"trial_{t.number:05d}"
        if t.state.name not in _KEPT_STATES:
            notes.append(f"{name}: {t.state.name.lower()}, left out")
            continue
        found_steps = _checkpoints(t, path, checkpoints)
        if not found_steps:
            notes.append(f"{name}: no intermediate or final value, left out")
            continue
        params = {k: _plain(v) for k, v in t.params.items()}
        info = {"tool": "optuna", "study": study, "number": t.number, "state": t.state.name}
        if t.value is not None and math.isfinite(t.value):
            info["value"] = float(t.value)
        selected = {"metric": VALUE, "mode": mode}
        trials.append((name, Source("optuna", tuple(found_steps), selected_by=selected), params, info))
    if not trials:
        raise UsageError(f"study {study!r} has no finished or pruned trial with values", path)
    return Study(study, mode, tuple(trials), tuple(notes))


def _saved(template: str | None, number: int, step: int) -> tuple[tuple[Path, ...], Path | None]:
    """The files the objective saved for (trial ``number``, ``step``) under ``template``, and
    where they are (``()``, None: nothing saved there)."""
    if template is None:
        return (), None
    from .from_raytune import checkpoint_files

    try:
        where = Path(template.format(number=number, trial=number, step=step))
    except (KeyError, IndexError, ValueError) as exc:
        raise UsageError(f"--checkpoints {template!r}: use the fields {{number}} and {{step}} ({exc})") from None
    if where.is_file() and not where.is_symlink():
        return (where,), where
    if where.is_dir() and not where.is_symlink():
        return checkpoint_files(where)[0], where
    return (), None


def _checkpoints(trial: Any, path: Path, template: str | None = None) -> list[SourceCheckpoint]:
    """One checkpoint per intermediate value, with the weights saved for that step where
    ``template`` finds them, else metrics-only (or one for the final value)."""
    out = []
    for step, value in sorted(trial.intermediate_values.items()):
        step = _counter(step, f"trial {trial.number}: step", path, UsageError)
        logged = {VALUE: float(value)} if value is not None and math.isfinite(value) else {}
        files, where = _saved(template, trial.number, step)
        if files:
            out.append(SourceCheckpoint(f"step_{step:06d}", step, step, logged, files, origin=where))
        else:
            out.append(SourceCheckpoint(f"step_{step:06d}", step, step, logged, metrics_only=True))
    if not out and trial.value is not None and math.isfinite(trial.value):
        note = "no intermediate values: the trial's final value"
        out.append(SourceCheckpoint("final", 0, None, {VALUE: float(trial.value)}, metrics_only=True, note=note))
    return out


def _plain(value: Any) -> Any:
    """A parameter value as JSON holds it (Optuna's are numbers, strings, bools or None)."""
    return value if value is None or isinstance(value, (bool, int, float, str)) else repr(value)
